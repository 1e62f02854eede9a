"""Checkpoint sizes and how long the training thread waits for the copy to WORKDIR (Drive), before and after.

The JetCar model (``unet_mobilenet_v2``, 22 classes, RAdam + Lookahead) trains a few epochs on synthetic
street scenes with a fast local folder and a slow stand-in Drive: WORKDIR is another local folder whose
copies are throttled to ``--mbps`` MB/s (the ``SEGLIB_TEST_DRIVE_MBPS`` hook of
:func:`seglib.train.checkpoint.mirror`). Two modes, each in its own process:

* ``before``: what seglib did up to issue 10: ``best.pt`` a full copy of ``last.pt`` (optimizer state
  included) and the copy to WORKDIR in the training thread after every checkpoint;
* ``after``: ``best.pt`` holds weights, config, metrics and data fingerprint only, and the copy runs in the
  background (:class:`seglib.train.mirror.BackgroundCopy`), waited for once at the end of ``train()``.

Prints one JSON line per mode: checkpoint sizes (MB), epoch wall time, seconds the training thread was
blocked by the copy during the epochs (and in the final wait), and the blocked share of epoch wall time.

    python benchmarks/checkpoint_copy.py --mbps 40 --epochs 3 --n-train 32 --size 128
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, time
import torch
from seglib.config import TrainConfig
from seglib.segmentation import SegmentationRun
from seglib.train.state import TrainingState
a = json.loads(sys.argv[1])
torch.set_num_threads(a["threads"])
if a["mode"] == "before":
    TrainingState.BACKGROUND_COPY = False
    TrainingState.best_state_dict = lambda self, state=None: self.state_dict() if state is None else state
cfg = TrainConfig(experiment="copy_bench", model="unet_mobilenet_v2", n_classes=22, optimizer="radam_lookahead",
                  img_size=a["size"], batch_size=a["batch"], epochs=a["epochs"], encoder_weights=None,
                  num_workers=0, checkpoint_minutes=1e9, log_images=0, seed=0)
run = SegmentationRun(cfg, "synthetic", workdir=a["drive"], local=a["local"],
                      synthetic_kwargs={"n_train": a["n_train"], "n_val": a["n_val"], "n_test": 0, "size": a["size"]})
run.prepare(check=False)
marks = {}
real_sync = TrainingState.sync_workdir
def sync(self, raise_errors=True):
    marks["epochs_end"], marks["blocked_epochs"] = time.monotonic(), self.copier.blocked
    real_sync(self, raise_errors)
    marks["end"] = time.monotonic()
TrainingState.sync_workdir = sync
class Clock:
    def on_batch_end(self, state):
        marks.setdefault("first_batch", time.monotonic())
    def on_epoch_end(self, state, record):
        marks.setdefault("epoch1_end", time.monotonic())
tr = run.trainer(progress=False, callbacks=[Clock()])
t0 = time.monotonic()
r = tr.fit()
ck = run.ws.local / "checkpoints"
epochs_wall = marks["epochs_end"] - t0
print("RESULT", json.dumps({
    "mode": a["mode"], "mbps": a["mbps"], "epochs": r.epochs_completed,
    "last_pt_mb": round((ck / "last.pt").stat().st_size / 1e6, 1),
    "best_pt_mb": round((ck / "best.pt").stat().st_size / 1e6, 1),
    "epoch_wall_s": round(epochs_wall / r.epochs_completed, 2),
    "blocked_in_epochs_s": round(marks["blocked_epochs"], 2),
    "blocked_share_of_epoch_time": round(marks["blocked_epochs"] / epochs_wall, 3),
    "final_wait_s": round(marks["end"] - marks["epochs_end"], 2),
    "copies": tr.copier.copies, "drive_last_pt_equal": (run.ws.workdir / "checkpoints" / "last.pt").read_bytes()
    == (ck / "last.pt").read_bytes()}))
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mbps", type=float, default=40.0, help="stand-in Drive write speed, MB/s")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--n-train", type=int, default=32)
    p.add_argument("--n-val", type=int, default=8)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--modes", nargs="+", default=["before", "after"])
    a = p.parse_args(argv)
    env = dict(os.environ, HF_HUB_OFFLINE="1", SEGLIB_ENV="local", SEGLIB_TEST_DRIVE_MBPS=str(a.mbps))
    for mode in a.modes:
        with tempfile.TemporaryDirectory() as tmp:
            args = {"mode": mode, "mbps": a.mbps, "epochs": a.epochs, "n_train": a.n_train, "n_val": a.n_val,
                    "size": a.size, "batch": a.batch, "threads": a.threads, "drive": f"{tmp}/drive",
                    "local": f"{tmp}/local"}
            out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True,
                                 env=env)
            line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if out.returncode or line is None:
                print(json.dumps({"mode": mode, "error": out.stderr[-2000:]}), flush=True)
                return 1
            print(line[len("RESULT "):], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
