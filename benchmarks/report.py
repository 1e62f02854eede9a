"""Compose ``BENCHMARKS.md`` from ``benchmarks/results/*.json`` (written by the benchmark scripts).

The page: a header (what is measured, how: interleaved repeats and medians, the machine and versions, the
date), a summary table of every target (value, target, met, why not), then each script's own markdown
section in a fixed order (:data:`ORDER`, then any other results by name). A result not produced by the
latest ``make bench`` (``--since``: e.g. ``gpu.json`` from a GPU machine, a long quality run) is kept and
shown with its own date and machine.

    python -m benchmarks.report [--results benchmarks/results] [--out BENCHMARKS.md] [--since ISO-DATE]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import RESULTS_DIR, arg_parser  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["overhead", "loader", "checkpoint", "resume", "viewer", "onnx", "ddp", "gpu", "lr_tuning", "quality", "quality_target"]
"""Section order of BENCHMARKS.md (results of other names follow, sorted)."""


def load_results(folder: Path) -> list[dict]:
    """The results files in ``folder`` in :data:`ORDER`.

    Raises:
        ValueError: a file is not JSON or lacks ``bench``/``markdown`` (names the file and the fix: rerun its
            script).
    """
    docs = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err}); rerun its benchmark script") from err
        missing = {"bench", "markdown"} - set(doc)
        if missing:
            raise ValueError(f"{path} lacks {sorted(missing)}; rerun its benchmark script (see benchmarks/common.py)")
        docs.append(doc)
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(docs, key=lambda d: (rank.get(d["bench"], len(ORDER)), d["bench"]))


def machine_line(m: dict | None) -> str:
    """One line naming a results file's machine and versions."""
    if not m:
        return "machine not recorded"
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ""
    load = m.get("load_avg")
    return (f"{m.get('cores')} cores ({m.get('cpu')}){gpu}, torch {m.get('torch')} with {m.get('torch_threads')} "
            f"threads, Python {m.get('python')}, smp {m.get('smp')}, albumentations {m.get('albumentations')}"
            + (f", load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}" if load else ""))


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def render(docs: list[dict], since: str | None = None) -> str:
    """The BENCHMARKS.md text for ``docs`` (results dicts); ``since`` (ISO date): results dated before it are
    marked as kept from an earlier run."""
    fresh = [d for d in docs if since is None or d.get("machine", {}).get("date", "") >= since]
    ref = max(fresh or docs or [{}], key=lambda d: d.get("machine", {}).get("date", "")).get("machine")  # latest
    date = max((d.get("machine", {}).get("date", "") for d in docs), default="")
    lines = [
        "# Benchmarks",
        "",
        "What seglib costs and gains, measured by the scripts in `benchmarks/` (`make bench` runs them all, each in "
        "its own process and time budget, and rewrites this page from `benchmarks/results/*.json`). Every "
        "comparison is measured side by side in one run: the variants alternate (interleaved repeats) and the "
        "medians are compared, because a shared machine's absolute speed drifts. Each section says its method.",
        "",
        f"- Machine: {machine_line(ref)}",
        f"- Latest result: {date or 'none'}",
    ]
    kept = [d for d in docs if d not in fresh]
    if kept:
        lines.append("- Kept from earlier runs (not rerun by the latest `make bench`): "
                     + ", ".join(f"`{d['bench']}` ({d.get('machine', {}).get('date', '?')})" for d in kept))
    lines += ["", "## Targets", "", "| benchmark | target | value | goal | met | why not |", "|---|---|---|---|---|---|"]
    for d in docs:
        for t in d.get("targets", []):
            lines.append("| " + " | ".join(_cell(x) for x in (d["bench"], t["name"], t["value"], t["target"],
                                                                 t["met"], t.get("why") if not t["met"] else None))
                         + " |")
    if not any(d.get("targets") for d in docs):
        lines.append("| - | no results yet | - | - | - | - |")
    lines += ["", "## Results", ""]
    for d in docs:
        lines.append(d["markdown"].rstrip())
        m = d.get("machine")
        note = f"_Measured {m.get('date', '?') if m else '?'} on {machine_line(m)}"
        if d.get("seconds") is not None:
            note += f"; the script ran {d['seconds']:.0f} s"
        if d.get("quick"):
            note += "; QUICK settings (a smoke check: the figures mean nothing)"
        if d in kept:
            note += "; kept from an earlier run"
        lines += ["", note + "._", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_report(results: Path = RESULTS_DIR, out: Path = ROOT / "BENCHMARKS.md", since: str | None = None) -> Path:
    """Render the results in ``results`` and write ``out`` atomically; returns ``out``."""
    text = render(load_results(results), since)
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, out)
    return out


def main(argv=None) -> int:
    p = arg_parser(__doc__)
    p.add_argument("--results", default=str(RESULTS_DIR), help="folder of the results JSON files")
    p.add_argument("--since", default=None, help="ISO date of the latest make bench (older results: marked kept)")
    a = p.parse_args(argv)
    out = write_report(Path(a.results), Path(a.out) if a.out else ROOT / "BENCHMARKS.md", a.since)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
