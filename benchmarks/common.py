"""Shared helpers of the benchmark scripts: machine description, interleaved timing, results files.

Every speed comparison in ``benchmarks/`` is measured side by side in one process: the variants run
round-robin (A, B, A, B, ...) after one warm-up call each, and the median of the repeats is reported, so
that load from other processes on a shared machine hits every variant alike. Each script writes
``benchmarks/results/<name>.json`` (see :func:`write_results`); ``benchmarks/report.py`` composes them
into ``BENCHMARKS.md``.

A script runs both as ``python -m benchmarks.<name>`` and ``python benchmarks/<name>.py``; for the latter
it puts the repository root on ``sys.path`` before importing this module::

    if __package__ in (None, ""):
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.common import interleaved, median, write_results  # noqa: E402
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """Describe the machine and software a measurement ran on.

    Returns:
        dict with ``cores`` (logical CPUs usable by this process), ``cpu`` (model name), ``torch_threads``,
        ``load_avg`` (1, 5, 15-minute load averages, a list of 3 floats), ``python``, ``torch``, ``smp``
        (segmentation-models-pytorch), ``albumentations`` and ``seglib`` versions (None when not
        installed), ``gpu`` (CUDA device name or None), ``platform`` and ``date`` (UTC, ISO 8601).
    """
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cores": cores,
        "cpu": _cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "load_avg": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "smp": _version("segmentation-models-pytorch") or _version("segmentation_models_pytorch"),
        "albumentations": _version("albumentations"),
        "seglib": _version("seglib"),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def interleaved(named_fns: Mapping[str, Callable[[], object]], repeats: int,
                warmup: bool = True) -> dict[str, list[float]]:
    """Time several variants round-robin: one warm-up call each, then ``repeats`` rounds of A, B, ...

    Args:
        named_fns: ``{name: fn}``; each ``fn()`` is one timed unit of work (its return value is ignored).
        repeats: timed calls per variant, >= 1.
        warmup: make one untimed call of each variant first (caches, allocator, lazy init).

    Returns:
        ``{name: [seconds, ...]}`` with ``repeats`` wall-clock durations (``time.perf_counter``) per name,
        in the order they ran.

    Raises:
        ValueError: ``repeats`` < 1 or no variants given.
    """
    if repeats < 1:
        raise ValueError(f"interleaved: repeats must be >= 1, got {repeats}")
    if not named_fns:
        raise ValueError("interleaved: give at least one variant in named_fns")
    if warmup:
        for fn in named_fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in named_fns}
    for r in range(repeats):
        # alternate the order every round so neither variant always runs first after the other
        order = list(named_fns.items()) if r % 2 == 0 else list(reversed(named_fns.items()))
        for name, fn in order:
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def median(values: Iterable[float]) -> float:
    """Median of ``values`` (``statistics.median``); raises ValueError naming the problem when empty."""
    vals = list(values)
    if not vals:
        raise ValueError("median of no values: the measurement produced no samples")
    return float(statistics.median(vals))


def target(name: str, value: float | None, goal: str, met: bool, why: str | None = None) -> dict:
    """One entry of a results file's ``targets`` list.

    Args:
        name: what is measured, e.g. ``"Trainer / bare loop, 160 px"``.
        value: the measured figure (None if it could not be measured; then say why).
        goal: the target as text, e.g. ``"<= 1.03"``.
        met: whether the target is met.
        why: when not met, the measured reason (None when met).
    """
    return {"name": name, "value": value, "target": goal, "met": bool(met), "why": None if met else why}


def write_results(name: str, rows: Sequence[dict], targets: Sequence[dict], markdown: str,
                  out: str | os.PathLike | None = None, seconds: float | None = None,
                  extra: dict | None = None) -> Path:
    """Write a benchmark's results JSON atomically (temporary file, then ``os.replace``).

    The file holds ``{"bench": name, "rows": rows, "targets": targets, "markdown": markdown,
    "seconds": seconds, "machine": machine(), ...extra}``.

    Args:
        name: the benchmark's name (the script's stem).
        rows: one dict per measurement (JSON-serialisable).
        targets: entries made by :func:`target` (keys name, value, target, met, why).
        markdown: the script's BENCHMARKS.md section (### heading, method, table, target lines).
        out: output path; default ``benchmarks/results/<name>.json``.
        seconds: the script's wall time in seconds (None if not given).
        extra: further top-level keys (e.g. ``"quick": True``).

    Returns:
        The path written.

    Raises:
        ValueError: a target lacks one of the keys name, value, target, met, why.
    """
    for t in targets:
        missing = {"name", "value", "target", "met", "why"} - set(t)
        if missing:
            raise ValueError(f"write_results({name!r}): target {t!r} lacks {sorted(missing)}; build it "
                             "with benchmarks.common.target()")
    path = Path(out) if out else RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"bench": name, "rows": list(rows), "targets": list(targets), "markdown": markdown,
           "seconds": None if seconds is None else round(seconds, 2), "machine": machine()}
    doc.update(extra or {})
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    os.replace(tmp, path)
    return path


def emit(name: str, **fields) -> None:
    """Print one measurement as a JSON line ``{"bench": name, ...}`` (flushed at once)."""
    print(json.dumps({"bench": name, **fields}, default=str), flush=True)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.0f}"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return "" if v is None else str(v)


def table(rows: Sequence[Mapping], columns: Sequence[str], markdown: bool = False) -> str:
    """Render ``rows`` (dicts) as a text table of ``columns``; ``markdown=True`` gives a pipe table."""
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join(lines)
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def print_table(rows: Sequence[Mapping], columns: Sequence[str]) -> None:
    """Print ``rows`` as a readable text table of ``columns`` (see :func:`table`)."""
    print(table(rows, columns), flush=True)


def print_machine(m: dict | None = None) -> dict:
    """Print the machine line every benchmark starts with; returns the dict (``machine()`` if not given)."""
    m = m or machine()
    print(f"# machine: {m['cores']} cores, {m['cpu']}, torch {m['torch']} ({m['torch_threads']} threads), "
          f"python {m['python']}, smp {m['smp']}, albumentations {m['albumentations']}, gpu {m['gpu']}, "
          f"load {m['load_avg']}", file=sys.stderr, flush=True)
    return m


def arg_parser(doc: str | None):
    """An ``argparse.ArgumentParser`` with the options every benchmark takes.

    ``--quick``: tiny settings, seconds (a smoke check, figures not meaningful);
    ``--out PATH``: where to write the results JSON (default ``benchmarks/results/<name>.json``).
    Add the script's own options to the returned parser.
    """
    import argparse

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke check (seconds)")
    p.add_argument("--out", default=None, help="results JSON path (default benchmarks/results/<name>.json)")
    return p


NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CAMVID = Path(os.environ.get("SEGLIB_CAMVID", "/work/shared/data/camvid_segnet"))
"""The CamVid subset the benchmarks train on when present (92 train / 101 val, 12 classes, 11 = void)."""


def _code_cells(notebook: str) -> list[tuple[list, str]]:
    path = NOTEBOOKS / f"{notebook}.ipynb"
    if not path.is_file():
        raise FileNotFoundError(f"notebook {path} not found; name one of {sorted(p.stem for p in NOTEBOOKS.glob('*.ipynb'))}")
    cells = json.loads(path.read_text())["cells"]
    return [(c.get("metadata", {}).get("tags", []), "".join(c["source"])) for c in cells if c["cell_type"] == "code"]


def notebook_params(notebook: str = "jetcar_segmentation", **overrides) -> dict:
    """The parameters cell (papermill tag ``parameters``) of ``notebooks/<notebook>.ipynb``, executed, with
    ``overrides`` (upper-case names, as in the notebook) applied: the defaults a user's Run all gets.

    Raises:
        FileNotFoundError: no such notebook; KeyError: it has no parameters cell, or an override names no
            parameter of it.
    """
    cells = [src for tags, src in _code_cells(notebook) if "parameters" in tags]
    if not cells:
        raise KeyError(f"{notebook}.ipynb has no cell tagged 'parameters'")
    ns: dict = {}
    exec(compile(cells[0], f"{notebook}:parameters", "exec"), ns)  # noqa: S102 - our own notebook's assignments
    params = {k: v for k, v in ns.items() if k.isupper()}
    unknown = set(overrides) - set(params)
    if unknown:
        raise KeyError(f"{notebook}.ipynb has no parameter(s) {sorted(unknown)}; its parameters: {sorted(params)}")
    params.update(overrides)
    return params


def notebook_config(notebook: str = "jetcar_segmentation", **overrides):
    """The ``TrainConfig`` the notebook's ``cfg = ...`` cell builds from its parameters (``overrides`` applied,
    see :func:`notebook_params`): that cell's statements before ``cfg = ...`` (imports, the recipe) are run and
    its ``cfg`` expression evaluated, so a benchmark trains what Run all trains. Returns ``(cfg, params)``.

    Raises:
        KeyError: no cell assigns ``cfg``.
    """
    import ast

    params = notebook_params(notebook, **overrides)
    for _, src in _code_cells(notebook):
        code = "\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!")))
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        assign = next((n for n in tree.body if isinstance(n, ast.Assign)
                       and any(isinstance(t, ast.Name) and t.id == "cfg" for t in n.targets)), None)
        if assign is None:
            continue
        ns = dict(params)
        before = ast.Module(tree.body[:tree.body.index(assign)], [])
        exec(compile(before, f"{notebook}:before-cfg", "exec"), ns)  # noqa: S102 - imports, recipe resolution
        return eval(compile(ast.Expression(assign.value), f"{notebook}:cfg", "eval"), ns), params  # noqa: S307
    raise KeyError(f"{notebook}.ipynb has no cell assigning cfg")


def data_source(quick: bool = False) -> tuple[str, dict]:
    """``(DATA, parameter overrides)`` of the benchmark data: the CamVid subset (12 classes, void 11) when
    present and not ``quick``, else the synthetic street scenes (the notebook's default, 22 classes)."""
    if not quick and CAMVID.is_dir():
        return str(CAMVID), {"N_CLASSES": 12, "IGNORE_INDEX": 11}
    return "synthetic", {}
