"""Run one tiny hyperparameter study in this process; used by test_hparam_study.py as a subprocess.

usage: python hparam_driver.py WORKDIR STUDY OUT.json [--epochs E] [--kill-at-step N]

--kill-at-step N: SIGKILL this process right after the N-th optimizer step of this process (over all trials).
OUT.json gets {"table": run.table(), "ran": keys this worker trained}.
"""

import argparse
import json
import os
import signal

import torch

from seglib.hparam import HParamRun
from seglib.tune import worker as engine

p = argparse.ArgumentParser()
p.add_argument("workdir")
p.add_argument("study")
p.add_argument("out")
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--kill-at-step", type=int)
a = p.parse_args()

torch.set_num_threads(1)
if a.kill_at_step:
    original, count = engine.EpochReporter.on_batch_end, [0]

    def on_batch_end(self, trainer):
        count[0] += 1
        if count[0] == a.kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, trainer)

    engine.EpochReporter.on_batch_end = on_batch_end

run = HParamRun("synthetic", workdir=a.workdir, synthetic_kwargs={"n_train": 8, "n_val": 4, "size": 32}, img_size=32,
                width_divisor=32, batch_size=4, trial_epochs=a.epochs, checkpoint_minutes=0, device="cpu")
run.prepare()
run.run_studies([a.study], lrs=run.lrs("seed"), heartbeat=0.5, stale_after=3.0, poll=0.2)
with open(a.out, "w") as f:
    json.dump({"table": run.table(), "ran": run.worker.ran}, f)
