"""Run the notebooks headless (papermill), for tests and ``make demo``.

``python -m seglib.nbrun demo`` executes every notebook in ``notebooks/`` with its demo parameters on
the embedded synthetic data; executed copies (with outputs) go to ``runs/<name>/<notebook>.ipynb`` --
the committed notebooks stay without outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"

DEMO: dict[str, dict] = {
    # the notebook's defaults (RECIPE "fast", LR "find") on 200 synthetic street scenes, 16 epochs ending at 128 px
    "jetcar_segmentation": {"EXPERIMENT": "demo_jetcar", "IMG_SIZE": 128, "EPOCHS": 16,
                            "SYNTHETIC": {"n_train": 200, "n_val": 40, "n_test": 12, "size": 128}},
    # about 1.5 minutes on a 2-core CPU: LR search for 2 optimizers, the loss and augmentation studies (8 trials)
    # on 48 synthetic cell images at 64 px; these tiny models run fastest on one thread
    "hyperparameter_study": {"EXPERIMENT": "demo_hparam", "IMG_SIZE": 64, "WIDTH_DIVISOR": 8, "BATCH_SIZE": 4,
                             "TRIAL_EPOCHS": 12, "SYNTHETIC": {"n_train": 48, "n_val": 16, "size": 64},
                             "STUDIES": ["loss", "augmentation"], "LR_SEARCH_OPTIMIZERS": ["adam", "sgd"],
                             "LR_SEARCH_LOSSES": ["bce_switching"], "PROBE_EPOCHS": 2, "RANGE_STEPS": 60,
                             "CPU_THREADS": 1},
    # about 50 s on a 2-core CPU: 256 synthetic rooms with pasted people, DSResNet width 4, 64 -> 96 px
    "depth_segmentation": {"EXPERIMENT": "demo_depth", "WIDTH": 4, "EPOCHS": 8, "BATCH_SIZE": 16, "LR": 0.01,
                           "IMG_SIZE": 96, "RESIZE_SCHEDULE": {1: 64, 4: 96}, "CPU_THREADS": 1,
                           "SYNTHETIC": {"n_bg": 8, "n_fg": 8, "per_pair": 4, "size": 128}},
}


def run_notebook(name: str, parameters: dict, out_dir: Path | None = None, timeout: int = 1800,
                 log_output: bool = False) -> Path:
    """Execute ``notebooks/<name>.ipynb`` with papermill and return the executed copy's path.

    The kernel runs in the repository root (so ``runs/`` and relative ``DATA`` paths resolve there),
    with ``SEGLIB_ENV=local`` unless set, and ``HF_HUB_OFFLINE`` left as the caller set it.

    Raises:
        papermill.PapermillExecutionError: a cell failed (the message shows the cell's traceback).
    """
    import papermill

    src = NOTEBOOKS / f"{name}.ipynb"
    if not src.exists():
        raise FileNotFoundError(f"no notebook {src}; notebooks: {[p.stem for p in NOTEBOOKS.glob('*.ipynb')]}")
    out_dir = Path(out_dir) if out_dir else ROOT / "runs" / parameters.get("EXPERIMENT", name)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}.ipynb"
    os.environ.setdefault("SEGLIB_ENV", "local")
    papermill.execute_notebook(str(src), str(out), parameters=parameters, kernel_name="python3", cwd=str(ROOT),
                               progress_bar=False, log_output=log_output, execution_timeout=timeout)
    return out


def demo(names: list[str] | None = None) -> int:
    """Run the demo of every notebook (or ``names``); print where results are; return 0 on success."""
    status = 0
    for name, params in DEMO.items():
        if names and name not in names:
            continue
        if not (NOTEBOOKS / f"{name}.ipynb").exists():
            continue
        t0 = time.monotonic()
        print(f"== {name}: running headless with {params}", flush=True)
        try:
            out = run_notebook(name, params)
        except Exception as err:  # noqa: BLE001 - report and go on with the next notebook
            print(f"!! {name} failed: {err}", file=sys.stderr)
            status = 1
            continue
        workdir = ROOT / "runs" / params["EXPERIMENT"]
        summary = json.loads((workdir / "summary.json").read_text())
        fm = {k: round(v, 4) for k, v in summary["final_metrics"].items() if isinstance(v, float)}
        print(f"== {name}: done in {time.monotonic() - t0:.0f} s; executed notebook {out}; "
              f"results in {workdir}; final metrics {fm}", flush=True)
    return status


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("command", choices=["demo"])
    p.add_argument("notebooks", nargs="*")
    a = p.parse_args(argv)
    return demo(a.notebooks or None)


if __name__ == "__main__":
    sys.exit(main())
