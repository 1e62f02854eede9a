"""Run one small CamVid-or-synthetic training in this process; used by test_resume.py as a subprocess.

usage: python resume_driver.py WORKDIR DATA [--kill-at-step N] [--kill-in-save N] [--workers W]
       [--minutes M] [--epochs E]

--kill-at-step N: SIGKILL this process right after optimizer step N (mid-epoch).
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
p.add_argument("data")
p.add_argument("--kill-at-step", type=int)
p.add_argument("--kill-in-save", type=int)
p.add_argument("--workers", type=int, default=0)
p.add_argument("--minutes", type=float, default=0.0)
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--lr-override", type=float)
p.add_argument("--recipe", default=None, help="train with this recipe's settings (seglib.recipes), e.g. fast")
a = p.parse_args()

torch.set_num_threads(1)
synthetic = a.data.startswith("synthetic")
cfg = TrainConfig(experiment="resume", n_classes=22 if synthetic else 12, ignore_index=None if synthetic else 11,
                  img_size=64, batch_size=4, epochs=a.epochs,
                  encoder_weights=None, num_workers=a.workers, checkpoint_minutes=a.minutes, augment="street",
                  resize_schedule={1: 64, 3: 96}, seed=3)
if a.recipe:  # the recipe's optimizer, loss and schedule (one-cycle, stepped every batch); this test's sizes
    from seglib.recipes import recipe_config

    kw = recipe_config(a.recipe, epochs=a.epochs, img_size=64, batch_size=4)
    kw["resize_schedule"], kw["augment"] = {1: 64, 3: 96}, "flip"
    cfg = TrainConfig(**{**cfg.to_dict(), **kw})


if a.kill_in_save:
    kill_in_save(a.kill_in_save)

run = SegmentationRun(cfg, a.data, workdir=a.workdir, smoke=True,
                      synthetic_kwargs={"n_train": 18, "n_val": 6, "n_test": 2, "size": 96})
run.prepare()
result = run.train(lr_override=a.lr_override, callbacks=[KillAtStep(a.kill_at_step)] if a.kill_at_step else [], progress=False)
print("RESUMED_FROM", result.resumed_from, "EPOCHS", result.epochs_completed)
sys.exit(0)
