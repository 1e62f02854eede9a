"""Notebook viewers: seconds per action (Python side) of ``SegmentationViewer``, ``DepthSegViewer`` and
``StudyExplorer``.

An action is what a click or slider release in the browser runs in the kernel: set a widget's value, which
redraws the viewer's picture and writes it as a PNG into its ``Output`` widget (``output.outputs``). Timed per
action and viewer, at 224 px (the issue's size; ``--sizes 224 64`` adds the smoke size): 8 random samples (random images,
random masks over the JetCar notebook's 22 classes, so every class is in every legend and the pictures compress
worst; depth viewer: random binary masks, depths and valid pixels). Actions: ``slider`` (next sample),
``opacity`` (0.5 <-> 0.3), ``toggle`` (segmentation: prediction <-> ground truth; depth: depth prediction <->
error map), ``both`` (next sample with ground truth | prediction side by side; depth: mask true <-> pred) and
``worst first`` (the ordering check box on <-> off). The viewer before issue 13 (``seglib/inspect`` at commit
:data:`BEFORE`, loaded from git when the repository has it) runs interleaved with the current one: one warm-up
action each, then ``--repeats`` alternating actions, medians reported. Study explorer (:class:`FakeRun`: one
study, a 2-epoch or 40-epoch history, 4 validation predictions of 224 px): the first visit of a config (its
curves and predictions drawn; later visits are cached). Targets: every current viewer action's median <= 0.15 s
at 224 px and an explorer's first visit <= 0.3 s (the browser adds the comm round trip and the PNG decode).

    python -m benchmarks.viewer [--quick] [--repeats 5] [--sizes 224 64] [--out benchmarks/results/viewer.json]
"""

from __future__ import annotations

import subprocess
import sys
import time
import types
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import (  # noqa: E402
    arg_parser,
    emit,
    interleaved,
    median,
    print_machine,
    print_table,
    table,
    target,
    write_results,
)
from seglib.data.classes import JETCAR_CLASS_NAMES  # noqa: E402
from seglib.inspect import study_plots, widgets  # noqa: E402

NAME = "viewer"
ROOT = Path(__file__).resolve().parents[1]
BEFORE = "1171fd9ef642d91cc14b2539e649acdfeca70239"
"""The commit whose ``seglib/inspect/{render,widgets}.py`` are the viewers before issue 13."""
GOAL_S = 0.15
EXPLORER_GOAL_S = 0.3


def before_modules():
    """``seglib/inspect/{render,widgets,plots,study_plots}.py`` as of :data:`BEFORE`, loaded as modules
    ``seglib.inspect._before_<name>`` (their relative imports of each other redirected); ``{name: module}``, or
    None when git or that commit is not there."""
    names = ("render", "widgets", "plots", "study_plots")
    mods = {}
    for name in names:
        try:
            src = subprocess.run(["git", "show", f"{BEFORE}:seglib/inspect/{name}.py"], cwd=ROOT, check=True,
                                 capture_output=True, text=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return None
        for other in names:
            src = src.replace(f"from .{other} import", f"from ._before_{other} import")
        mod = types.ModuleType(f"seglib.inspect._before_{name}")
        mod.__package__ = "seglib.inspect"
        sys.modules[mod.__name__] = mod
        exec(compile(src, f"{BEFORE[:7]}:{name}.py", "exec"), mod.__dict__)  # noqa: S102 - this repository's code
        mods[name] = mod
    return mods


def samples(n: int, size: int, seed: int = 0) -> dict:
    """Random viewer inputs: images, 22-class masks, binary masks, depths and valid pixels (``n`` of each)."""
    rng = np.random.default_rng(seed)
    img = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]
    k = len(JETCAR_CLASS_NAMES)
    return {"images": img, "true": [rng.integers(0, k, (size, size)) for _ in range(n)],
            "pred": [rng.integers(0, k, (size, size)) for _ in range(n)],
            "tmask": [rng.integers(0, 2, (size, size)) for _ in range(n)],
            "pmask": [rng.integers(0, 2, (size, size)) for _ in range(n)],
            "tdepth": [rng.random((size, size)).astype(np.float32) for _ in range(n)],
            "pdepth": [rng.random((size, size)).astype(np.float32) for _ in range(n)],
            "valid": [rng.random((size, size)) > 0.1 for _ in range(n)]}


def _flip(w, a, b):
    return lambda: setattr(w, "value", b if w.value == a else a)


def _next(v):
    return lambda: setattr(v.slider, "value", (v.slider.value + 1) % v.n)


def seg_actions(mod, d: dict) -> dict:
    """``{action: (setup, act)}`` of a SegmentationViewer built by ``mod`` over ``d``."""
    v = mod.SegmentationViewer(d["images"], d["true"], d["pred"], class_names=JETCAR_CLASS_NAMES)
    pred = lambda: setattr(v.view, "value", "pred")  # noqa: E731
    return {"slider": (pred, _next(v)), "opacity": (pred, _flip(v.opacity, 0.5, 0.3)),
            "toggle": (pred, _flip(v.view, "pred", "true")),
            "both": (lambda: setattr(v.view, "value", "both"), _next(v)),
            "worst first": (pred, _flip(v.worst_first, False, True))}


def depth_actions(mod, d: dict) -> dict:
    """``{action: (setup, act)}`` of a DepthSegViewer built by ``mod`` over ``d``."""
    v = mod.DepthSegViewer(d["images"], d["tmask"], d["pmask"], d["tdepth"], d["pdepth"], d["valid"])
    none = lambda: None  # noqa: E731
    return {"slider": (none, _next(v)), "opacity": (none, _flip(v.opacity, 0.5, 0.3)),
            "toggle": (none, _flip(v.depth_view, "pred", "error")), "both": (none, _flip(v.mask_view, "pred", "true")),
            "worst first": (none, _flip(v.worst_first, False, True))}


def measure(viewer: str, size: int, n: int, repeats: int, variants: dict) -> list[dict]:
    """One row per action: median seconds per action of each variant (interleaved), and the PNG size."""
    d = samples(n, size)
    build = seg_actions if viewer == "segmentation" else depth_actions
    acts = {name: build(mod, d) for name, mod in variants.items()}
    rows = []
    for action in acts["current"]:
        for setup, _ in (a[action] for a in acts.values()):
            setup()
        times = interleaved({name: a[action][1] for name, a in acts.items()}, repeats)
        row = {"viewer": viewer, "px": size, "action": action, "repeats": repeats,
               "current_s": round(median(times["current"]), 4)}
        if "before" in times:
            row["before_s"] = round(median(times["before"]), 4)
            row["speedup"] = round(row["before_s"] / row["current_s"], 2)
        emit(NAME, **row)
        rows.append(row)
    return rows


class FakeRun:
    """What :class:`~seglib.inspect.study_plots.StudyExplorer` reads of an ``HParamRun``: ``configs`` finished
    trials of one study, each with an ``epochs``-epoch history, and ``n`` validation predictions of ``size`` px."""

    def __init__(self, configs: int, epochs: int, size: int = 224, n: int = 4) -> None:
        rng = np.random.default_rng(1)
        self._results = []
        for k in range(configs):  # curves and scales differ between configs
            s = 1 + k / 3
            hist = [{"epoch": e, "lr": 1e-3 * s * 0.93 ** e, "train_loss": s / e, "val_loss": 1.2 * s / e + 0.01 * rng.random(),
                     "train_fg_dice": 1 - 1 / (e + s), "val_fg_dice": 0.9 - 1 / (e + 2 * s),
                     "train_fg_iou": 0.8 - 1 / (e + 2), "val_fg_iou": 0.7 - 1 / (e + 3)} for e in range(1, epochs + 1)]
            final = {m: hist[-1][m] for m in ("val_fg_dice", "val_fg_iou", "val_loss", "train_fg_dice")}
            self._results.append({"study": "optimizer", "key": f"adamw-cosine-lr{k}-{k:08x}", "history": hist,
                                  "final": final, "best_epoch": epochs, "epochs_completed": epochs, "state": "done"})
        yy, xx = np.mgrid[0:size, 0:size]
        self._preds = {"images": [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)],
                       "true": [((xx - size / 2) ** 2 + (yy - size / 2 - k) ** 2 < (size / 3) ** 2) for k in range(n)],
                       "pred": [((xx - size / 2 - 9) ** 2 + (yy - size / 2) ** 2 < (size / 3) ** 2) for k in range(n)]}

    def results(self) -> list[dict]:
        """The finished trials."""
        return self._results

    def predictions(self, result: dict, n: int) -> dict:
        """``n`` validation predictions (the same for every config)."""
        return {k: v[:n] for k, v in self._preds.items()}


def measure_explorer(epochs: int, repeats: int, variants: dict) -> dict:
    """Median seconds of a first visit of a config in the study explorer (pick the next config in the drop-down:
    its curves and predictions drawn and written as two PNGs), per variant, interleaved."""
    explorers = {name: mod.StudyExplorer(FakeRun(repeats + 2, epochs)) for name, mod in variants.items()}

    def visit(e):
        return lambda: setattr(e.config, "value", e.config.value + 1)  # a config not shown before

    times = interleaved({name: visit(e) for name, e in explorers.items()}, repeats)
    row = {"viewer": "study explorer", "px": 224, "action": f"first visit ({epochs} epochs)", "repeats": repeats,
           "current_s": round(median(times["current"]), 4)}
    if "before" in times:
        row["before_s"] = round(median(times["before"]), 4)
        row["speedup"] = round(row["before_s"] / row["current_s"], 2)
    emit(NAME, **row)
    return row


def main(argv=None) -> int:
    p = arg_parser(__doc__)
    p.add_argument("--repeats", type=int, default=None, help="timed actions per variant (default 5, quick 3)")
    p.add_argument("--sizes", type=int, nargs="+", default=[224], help="image sizes [px] (the issue's case: 224)")
    p.add_argument("--samples", type=int, default=8, help="samples in each viewer")
    p.add_argument("--no-before", action="store_true", help="time the current viewers only")
    a = p.parse_args(argv)
    t_start = time.perf_counter()
    print_machine()
    repeats, sizes = (a.repeats or 3, [64]) if a.quick else (a.repeats or 5, a.sizes)
    variants = {"current": widgets}
    old = None if a.no_before else before_modules()
    if old is not None:
        variants["before"] = old["widgets"]
    rows = [r for viewer in ("segmentation", "depth") for s in sizes
            for r in measure(viewer, s, 4 if a.quick else a.samples, repeats, variants)]
    explorers = {"current": study_plots} | ({"before": old["study_plots"]} if old else {})
    rows += [measure_explorer(epochs, repeats, explorers) for epochs in (2, 40)]
    cols = ["viewer", "px", "action", "repeats", "current_s"] + (["before_s", "speedup"] if old else [])
    print_table(rows, cols)
    targets = []
    for viewer in ("segmentation", "depth"):
        big = [r for r in rows if r["viewer"] == viewer and r["px"] == max(sizes)]
        worst = max(big, key=lambda r: r["current_s"])
        targets.append(target(f"{viewer} viewer, slowest action at {worst['px']} px [s]", worst["current_s"],
                              f"<= {GOAL_S}", worst["current_s"] <= GOAL_S,
                              f"'{worst['action']}' takes {worst['current_s']:.3f} s (median of {worst['repeats']})"))
    worst = max((r for r in rows if r["viewer"] == "study explorer"), key=lambda r: r["current_s"])
    targets.append(target("study explorer, first visit of a config [s]", worst["current_s"], f"<= {EXPLORER_GOAL_S}",
                          worst["current_s"] <= EXPLORER_GOAL_S,
                          f"'{worst['action']}' takes {worst['current_s']:.3f} s (median of {worst['repeats']})"))
    md = "\n".join([
        "### Notebook viewers: seconds per action (`benchmarks/viewer.py`)",
        "",
        "One action = set a widget's value (next sample, opacity, view toggle, worst-first box) and redraw the "
        "viewer's PNG into its `Output` widget, Python side only (the browser adds the comm round trip and the "
        f"PNG decode). {a.samples if not a.quick else 4} random samples of 22 classes (every class in the legend, "
        "pictures that compress worst); `before` is `seglib/inspect` at commit "
        f"`{BEFORE[:7]}` (new Figure with constrained layout and a matplotlib legend on every action, PNG at zlib "
        "level 6), interleaved with the current viewers (one Figure per layout updated in place, fixed layout, "
        "legend entries drawn once and cached as pixels, Pillow PNG at zlib level 1); medians. Study explorer: the "
        "first visit of a config (training curves and 4 validation predictions of 224 px drawn, two PNGs); "
        "`before` draws them with constrained layout and one axes per prediction panel, `current` with fixed "
        "margins, plain-text log ticks and the predictions pasted into one picture.",
        "",
        table(rows, cols, markdown=True),
    ])
    write_results(NAME, rows, targets, md, a.out, time.perf_counter() - t_start,
                  {"quick": a.quick, "before_commit": BEFORE if old else None})
    return 0


if __name__ == "__main__":
    sys.exit(main())
