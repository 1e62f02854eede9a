"""Resume: seconds from "Run all" to the first training step, a resumed run against a fresh one.

Each run is a new Python process doing what the JetCar notebook's cells do: import seglib, build ``cfg`` from
the parameters cell (the notebook's own cell, evaluated), create the ``SegmentationRun``, ``prepare()`` with
the full data check, the LR range test when ``LR = "find"`` (a fresh run; a resumed run takes the LR of its
checkpoint), build the trainer and ``fit()``. A callback's ``on_batch_end`` marks the end of the first optimizer
step and stops the process. The parent's clock starts when it launches the process. As on a new Colab VM, each
run gets an empty local folder; a resumed run finds its checkpoint in WORKDIR (copied to the local folder by
the restore). Fresh and resumed runs alternate; medians. The checkpoint is written by the first fresh run
(``CHECKPOINT_MINUTES=0``: a save after its first step; all runs use that setting, and every run stops before
its own first save). Phases: imports (torch, seglib, the notebook's imports and recipe), run and workspace,
data check, LR finder, trainer build (model, datasets, loaders), ``fit()`` to the first step (restore, first
batch, one step); restore = resumed minus fresh ``fit()``-to-first-step.

    python -m benchmarks.resume [--quick] [--repeats 2] [--size 96] [--out benchmarks/results/resume.json]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import (  # noqa: E402
    arg_parser,
    data_source,
    emit,
    median,
    print_machine,
    print_table,
    table,
    write_results,
)

NAME = "resume"
ROOT = Path(__file__).resolve().parents[1]
PHASES = ["imports", "run", "data_check", "lr_find", "trainer_build", "fit_to_first_step"]

CHILD = r"""
import json, sys, time
marks = {"python": time.time()}
a = json.loads(sys.argv[1])
sys.path.insert(0, a["root"])
import torch, seglib
from benchmarks.common import notebook_config
cfg, P = notebook_config(**a["params"])
marks["imports"] = time.time()
from seglib.runtime import set_cpu_threads
from seglib.segmentation import SegmentationRun
set_cpu_threads(P["CPU_THREADS"])
run = SegmentationRun(cfg, P["DATA"], workdir=a["workdir"], local=a["local"], class_names=P["CLASS_NAMES"],
                      synthetic_kwargs=P["SYNTHETIC"], notebook="jetcar_segmentation")
marks["run"] = time.time()
run.prepare()
marks["data_check"] = time.time()
if P["LR"] == "find" and not a["resumed"]:
    run.find_lr()
marks["lr_find"] = time.time()

class Stop(Exception):
    pass

class FirstStep:
    def __init__(self):
        self.n = 0
    def on_batch_end(self, state):
        self.n += 1
        if self.n == 1:
            marks["fit_to_first_step"] = time.time()
            marks["status"] = state.status
        if self.n == a["stop_after"]:
            raise Stop

tr = run.trainer(lr_override=P["LR_OVERRIDE"], callbacks=[FirstStep()], progress=False,
                 fine_tune_from=P["FINE_TUNE_FROM"])
marks["trainer_build"] = time.time()
try:
    tr.fit()
except Stop:
    pass
import threading
for t in threading.enumerate():  # the first run's checkpoint, written in the background: complete, then in WORKDIR
    if t.name == "seglib-checkpoint-write":
        t.join()
tr.sync_workdir()
print("RESULT " + json.dumps(marks), flush=True)
"""


def launch(params: dict, workdir: str, local: str, resumed: bool, stop_after: int, threads: int | None) -> dict:
    """One notebook-like process; returns the seconds of each phase (from the launch) and its status."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", SEGLIB_ENV="local")
    if threads:
        params = {**params, "CPU_THREADS": threads}
    args = {"root": str(ROOT), "params": params, "workdir": workdir, "local": local, "resumed": resumed,
            "stop_after": stop_after}
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True, env=env,
                         cwd=ROOT)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if out.returncode or line is None:
        raise RuntimeError(f"the {'resumed' if resumed else 'fresh'} run failed (exit {out.returncode}):\n"
                           f"{out.stderr[-3000:]}")
    m = json.loads(line[len("RESULT "):])
    prev, row = t0, {"variant": "resumed" if resumed else "fresh", "status": m.get("status")}
    for phase in ["python"] + PHASES:
        row[phase] = m[phase] - prev
        prev = m[phase]
    row["imports"] += row.pop("python")  # interpreter start + imports
    row["total"] = m["fit_to_first_step"] - t0
    return row


def main(argv=None) -> int:
    p = arg_parser(__doc__)
    p.add_argument("--repeats", type=int, default=None, help="runs per variant (default 1)")
    p.add_argument("--size", type=int, default=96, help="IMG_SIZE [px] (small: the LR finder's steps are timed)")
    p.add_argument("--threads", type=int, default=None, help="CPU_THREADS of the runs (default: the notebook's)")
    a = p.parse_args(argv)
    t_start = time.perf_counter()
    print_machine()
    data, over = data_source(a.quick)
    params = {"DATA": data, "IMG_SIZE": a.size, "ENCODER_WEIGHTS": None, "CHECKPOINT_MINUTES": 0, **over}
    if a.quick:
        params.update(SYNTHETIC={"n_train": 8, "n_val": 4, "n_test": 0, "size": 64}, IMG_SIZE=64, LR=1e-3)
    repeats = a.repeats or 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = f"{tmp}/resumed"
        for i in range(repeats):
            fresh_dir = work if i == 0 else f"{tmp}/fresh{i}"  # the first fresh run writes the checkpoint
            rows.append(launch(params, fresh_dir, f"{tmp}/local-f{i}", False, 2 if i == 0 else 1, a.threads))
            rows.append(launch(params, work, f"{tmp}/local-r{i}", True, 1, a.threads))
            for r in rows[-2:]:
                emit(NAME, **r)
    bad = [r for r in rows if r["status"] != ("resumed" if r["variant"] == "resumed" else "fresh")]
    if bad:
        raise RuntimeError(f"a run did not start as planned: {bad}")
    summary = []
    for variant in ("fresh", "resumed"):
        rs = [r for r in rows if r["variant"] == variant]
        summary.append({"variant": variant, "runs": len(rs), **{k: median(r[k] for r in rs) for k in PHASES + ["total"]}})
    fresh, resumed = summary
    restore = resumed["fit_to_first_step"] - fresh["fit_to_first_step"]
    cols = ["variant", "runs"] + PHASES + ["total"]
    print_table(summary, cols)
    print(f"restore (resumed minus fresh fit-to-first-step): {restore:.2f} s; resumed / fresh total "
          f"{resumed['total'] / fresh['total']:.2f}")
    md = "\n".join([
        "### Resume: Run all to the first training step (`benchmarks/resume.py`)",
        "",
        "Each run is a new process doing the JetCar notebook's cells (imports, its `cfg` cell, `prepare()` with the "
        "full data check, the LR finder when `LR = \"find\"` on a fresh run, the trainer, `fit()`) with an empty "
        "local folder as on a new Colab VM; a callback's `on_batch_end` marks the first optimizer step. Seconds "
        f"from the process launch, medians of {repeats} alternating runs each, `{Path(data).name}` at {params['IMG_SIZE']} px.",
        "",
        table(summary, cols, markdown=True),
        "",
        f"Restore (resumed minus fresh `fit()`-to-first-step): {restore:.2f} s. Resumed / fresh: "
        f"{resumed['total'] / fresh['total']:.2f}.",
    ])
    extra = {"quick": a.quick, "restore_s": restore, "resumed_over_fresh": resumed["total"] / fresh["total"]}
    write_results(NAME, rows + summary, [], md, a.out, time.perf_counter() - t_start, extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
