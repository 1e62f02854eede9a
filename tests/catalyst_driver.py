"""Run one small synthetic training with the Catalyst engine in this process; used by
test_catalyst_resume.py as a subprocess (a SIGKILL must hit a real, separate process).

usage: python catalyst_driver.py WORKDIR [--engine catalyst|seglib] [--kill-at-step N] [--kill-in-save N]
       [--minutes M] [--epochs E] [--patience P]

--kill-at-step N: SIGKILL this process right after optimizer step N (before that step is checkpointed).
--kill-in-save N: SIGKILL this process in the middle of writing the N-th checkpoint (partial temp file).
"""

import argparse
import sys

import torch
from killing import KillAtStep, kill_in_save

from seglib.config import TrainConfig
from seglib.segmentation import SegmentationRun

p = argparse.ArgumentParser()
p.add_argument("workdir")
p.add_argument("--engine", default="catalyst")
p.add_argument("--kill-at-step", type=int)
p.add_argument("--kill-in-save", type=int)
p.add_argument("--minutes", type=float, default=1000.0)
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--patience", type=int, default=5)
a = p.parse_args()

torch.set_num_threads(1)
# Monitor val_miou, which peaks at epoch 1 in this tiny run, and a plateau scheduler that halves the LR whenever
# val_miou does not rise by 50%: early stopping (wait 2), best (epoch 1) and scheduler state all change between
# epochs, so any of them lost on resume would show in the final checkpoint
cfg = TrainConfig(experiment="catalyst_resume", n_classes=22, img_size=64, batch_size=4, epochs=a.epochs,
                  encoder_weights=None, num_workers=0, checkpoint_minutes=a.minutes, augment="street",
                  resize_schedule={1: 64, 3: 96}, seed=3, monitor="val_miou", early_stop_patience=a.patience,
                  scheduler_kwargs={"factor": 0.5, "patience": 0, "threshold": 0.5})


if a.kill_in_save:
    kill_in_save(a.kill_in_save)

run = SegmentationRun(cfg, "synthetic", workdir=a.workdir, smoke=True,
                      synthetic_kwargs={"n_train": 18, "n_val": 6, "n_test": 2, "size": 96})
run.prepare()
result = run.train(callbacks=[KillAtStep(a.kill_at_step)] if a.kill_at_step else [], progress=False, engine=a.engine)
print("RESUMED_FROM", result.resumed_from, "EPOCHS", result.epochs_completed)
sys.exit(0)
