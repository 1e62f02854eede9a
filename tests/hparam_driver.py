"""One tiny hyperparameter study: run as a subprocess by test_hparam_study.py, test_study_faults.py and
test_study_postgres.py (two workers on a PostgreSQL server), or its functions used in the test process
(:func:`make_run`, :func:`run_study`: the same study, so the same table).

usage: python hparam_driver.py WORKDIR STUDY OUT.json [--epochs E] [--kill-at-step N] [--loss L] [--lr LR]
       [--stale-after S] [--storage URL] [--step-delay S] [--go-file PATH] [--hold-file PATH]

--kill-at-step N: SIGKILL this process right after the N-th optimizer step of this process (over all trials).
--storage URL: the study's STORAGE (default: the journal file in WORKDIR), e.g. postgresql://user@host:port/db.
--step-delay S: sleep S seconds after every optimizer step (a slower worker, to order two workers' trials).
--go-file PATH: once the data is prepared, print "ready" and wait until PATH exists (a start line for two workers).
--hold-file PATH: after this process's first optimizer step, wait until PATH exists (its trial stays RUNNING, its
heartbeat goes on: a worker busy with a long trial while the test does something to another).
--loss / --lr: the base loss and one LR for every optimizer (default: the base spec's loss, seed 004's LRs).
--stale-after S: the worker's STALE_AFTER in seconds (default 3; heartbeat 0.5 s).
SEGLIB_FAULT_AT in the environment kills at a named point (seglib.train.faults).
OUT.json gets {"table": run.table(), "ran": keys this worker trained, "log": the worker's lines as
[seconds since the study started, line]}.
"""

import argparse
import json
import os
import signal
import time

import torch
from killing import settle

from seglib.hparam import HParamRun
from seglib.tune import worker as engine


def make_run(workdir, epochs: int = 3, loss: str | None = None, lr: float | None = None) -> tuple[HParamRun, dict]:
    """``(prepared HParamRun, LR per optimizer)``: 8 + 4 synthetic 32 px images, a 1/32-width U-Net, batch 4 (2 steps
    per epoch), a checkpoint after every batch, CPU (the caller sets one torch thread)."""
    run = HParamRun("synthetic", workdir=workdir, synthetic_kwargs={"n_train": 8, "n_val": 4, "size": 32}, img_size=32,
                    width_divisor=32, batch_size=4, trial_epochs=epochs, checkpoint_minutes=0, device="cpu",
                    base={"loss": loss} if loss else None)
    run.prepare()
    return run, ({k: lr for k in run.lrs("seed")} if lr else run.lrs("seed"))


def run_study(run: HParamRun, lrs: dict, study: str, stale_after: float = 3.0, storage: str | None = None) -> list:
    """Run ``study`` (heartbeat 0.5 s) on ``storage`` (None: the journal file in WORKDIR); return the worker's lines
    as ``[seconds since the start, line]``."""
    lines, t0, init = [], time.monotonic(), engine.StudyWorker.__init__

    def timed_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        log = self.log

        def timed(line):
            lines.append([round(time.monotonic() - t0, 3), line])
            log(line)

        self.log = timed

    engine.StudyWorker.__init__ = timed_init
    try:
        run.run_studies([study], storage=storage, lrs=lrs, heartbeat=0.5, stale_after=stale_after, poll=0.2)
    finally:
        engine.StudyWorker.__init__ = init
    return lines


def wait_for(path: str, timeout: float = 300) -> None:
    """Wait until ``path`` exists (at most ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("workdir")
    p.add_argument("study")
    p.add_argument("out")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--kill-at-step", type=int)
    p.add_argument("--loss")
    p.add_argument("--lr", type=float)
    p.add_argument("--stale-after", type=float, default=3.0)
    p.add_argument("--storage")
    p.add_argument("--step-delay", type=float, default=0.0)
    p.add_argument("--go-file")
    p.add_argument("--hold-file")
    a = p.parse_args()
    torch.set_num_threads(1)
    if a.kill_at_step or a.step_delay or a.hold_file:
        original, count = engine.EpochReporter.on_batch_end, [0]

        def on_batch_end(self, trainer):
            count[0] += 1
            if count[0] == a.kill_at_step:
                settle(trainer)  # the previous checkpoint on disk, as the test expects
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(a.step_delay)
            if count[0] == 1 and a.hold_file:
                wait_for(a.hold_file)
            return original(self, trainer)

        engine.EpochReporter.on_batch_end = on_batch_end
    run, lrs = make_run(a.workdir, a.epochs, a.loss, a.lr)
    if a.go_file:
        print("ready", flush=True)
        wait_for(a.go_file)
    lines = run_study(run, lrs, a.study, a.stale_after, a.storage)
    with open(a.out, "w") as f:
        json.dump({"table": run.table(), "ran": run.worker.ran, "log": lines}, f)


if __name__ == "__main__":
    main()
