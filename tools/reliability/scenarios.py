"""The three notebooks' training paths as tiny runs, and the kill hooks, executed in a child process.

A :class:`Case` describes one process run: which scenario, which folders, the checkpoint interval and at most
one kill (``kill_at_step``: SIGKILL right after the process's N-th optimizer step; ``fault``: the value of
``$SEGLIB_FAULT_AT``, e.g. ``"save.between:2"``, see :mod:`seglib.train.faults`; ``kill_in_save``: the N-th
``torch.save`` call writes half a file and SIGKILLs). :func:`run_case` runs it in the calling process (the
launcher's child): exactly what the notebook calls (``prepare``, ``train``, ``evaluate``, ``write_summary`` for
JetCar and depth; ``prepare``, ``run_studies``, ``write_summary`` for the study), plus a step log
(``steps.jsonl``: one JSON line per optimizer step and per epoch end, written with ``os.write`` so that it
survives SIGKILL) from which :mod:`~tools.reliability.checks` measures the repeated work.

Scenarios (CPU, one thread, seconds each):
    ``jetcar``: :class:`seglib.segmentation.SegmentationRun` on synthetic streets, U-Net/MobileNetV2 of the
        notebook (no pretrained weights), 8 train / 2 val images, 32 px, batch 4 (2 steps per epoch), 3 epochs.
    ``depth``: :class:`seglib.depthseg.DepthSegRun` on synthetic depth scenes, DSResNet width 2, 6 train / 2 val,
        32 px then 64 px from epoch 3, batch 3 (2 steps per epoch), 3 epochs.
    ``trial``: :class:`seglib.hparam.HParamRun`, study ``dropout`` (3 trials), 8 train / 4 val blobs, 32 px,
        batch 4 (2 steps per epoch), 3 epochs per trial; ``table.json`` holds ``run.table()``.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.utils.tensorboard  # noqa: F401  (imported here so that a fork server has it loaded)
from tqdm import tqdm

import seglib.hparam as hparam
from seglib.config import TrainConfig
from seglib.depthseg import DepthSegRun, depth_config
from seglib.segmentation import SegmentationRun
from seglib.train import faults

from .kills import StepLog, kill_in_save

PRELOAD = ("seglib.data.synthetic.blobs", "seglib.data.synthetic.depth_scenes", "seglib.data.synthetic.streets",
           "seglib.inspect.render", "seglib.inspect.plots", "seglib.inspect.widgets", "segmentation_models_pytorch",
           "torch.utils.tensorboard.writer", "optuna.storages.journal")
"""Modules a run imports lazily; imported here so that children of a fork server start with them loaded (a
name that no longer exists is skipped)."""
for _name in PRELOAD:
    try:
        importlib.import_module(_name)
    except ImportError:
        pass

SCENARIOS = ("jetcar", "depth", "trial")
EPOCHS = 3
STEPS_PER_EPOCH = {"jetcar": 2, "depth": 2, "trial": 2}
TRIALS = {"jetcar": 1, "depth": 1, "trial": 3}
MONITOR = {"jetcar": "val_loss", "depth": "val_loss", "trial": "val_fg_dice"}
ENV_KEYS = ("SEGLIB_CACHE", "SEGLIB_ENV", "HF_HUB_OFFLINE", "MPLBACKEND")


def total_steps(scenario: str) -> int:
    """Optimizer steps of one uninterrupted run of ``scenario`` (all trials of the study)."""
    return EPOCHS * STEPS_PER_EPOCH[scenario] * TRIALS[scenario]


@dataclass
class Case:
    """One process run of a scenario (picklable; see the module docstring).

    Attributes:
        scenario: ``"jetcar"``, ``"depth"`` or ``"trial"``.
        workdir: WORKDIR; ``local``: the fast local folder (None: WORKDIR itself; a different folder makes the
            run mirrored, as on Colab with Drive).
        checkpoint_minutes: ``CHECKPOINT_MINUTES`` (0: after every optimizer step; 1000: at epoch ends only).
        kill_at_step / fault / kill_in_save: at most one kill, see the module docstring.
        count: count the kill points' hits and ``torch.save`` calls into ``<workdir>/../counts.json`` (profile
            runs).
        log: the step log file; ``output``: stdout and stderr of the run (appended).
        env: environment variables for the child (``SEGLIB_CACHE`` ...), taken from the parent at creation.
    """

    scenario: str
    workdir: str
    local: str | None = None
    checkpoint_minutes: float = 1000.0
    kill_at_step: int | None = None
    fault: str | None = None
    kill_in_save: int | None = None
    count: bool = False
    log: str = ""
    output: str = ""
    env: dict = field(default_factory=lambda: {k: os.environ[k] for k in ENV_KEYS if k in os.environ})

    def __post_init__(self):
        if self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r}; known: {SCENARIOS}")
        root = Path(self.workdir).parent
        self.log = self.log or str(root / "steps.jsonl")
        self.output = self.output or str(root / "output.txt")

    def describe(self) -> str:
        """One line naming the scenario, folders and kill."""
        kill = (f"kill after step {self.kill_at_step}" if self.kill_at_step else f"SEGLIB_FAULT_AT={self.fault}"
                if self.fault else f"kill in torch.save #{self.kill_in_save}" if self.kill_in_save else "no kill")
        return (f"{self.scenario} cm={self.checkpoint_minutes:g}{' mirrored' if self.local else ''}: {kill}")


def _count_hits() -> dict:
    """Count kill-point hits and ``torch.save`` calls of this process from now on (the returned dict)."""
    counts: dict[str, int] = {}
    real_point, real_save = faults.point, torch.save

    def point(name):
        counts[name] = counts.get(name, 0) + 1
        return real_point(name)

    def save(*a, **kw):
        counts["torch.save"] = counts.get("torch.save", 0) + 1
        return real_save(*a, **kw)

    faults.point, torch.save = point, save
    return counts


def _jetcar(case: Case, log: StepLog) -> None:
    cfg = TrainConfig(experiment="faults_jetcar", n_classes=22, img_size=32, batch_size=4, epochs=EPOCHS,
                      encoder_weights=None, num_workers=0, checkpoint_minutes=case.checkpoint_minutes,
                      augment="street", seed=3, log_images=2)
    run = SegmentationRun(cfg, "synthetic", workdir=case.workdir, local=case.local, smoke=True, device="cpu",
                          synthetic_kwargs={"n_train": 8, "n_val": 2, "n_test": 1, "size": 48})
    _notebook_steps(run, log)


def _depth(case: Case, log: StepLog) -> None:
    cfg = depth_config("faults_depth", width=2, resize_schedule={1: 32, 3: 64}, img_size=64, batch_size=3,
                       epochs=EPOCHS, seed=7, num_workers=0, log_images=2, checkpoint_minutes=case.checkpoint_minutes)
    run = DepthSegRun(cfg, "synthetic", workdir=case.workdir, local=case.local, device="cpu", val_fraction=0.25,
                      synthetic_kwargs={"n_bg": 2, "n_fg": 2, "per_pair": 2, "size": 64})
    _notebook_steps(run, log)


def _notebook_steps(run, log: StepLog) -> None:
    run.prepare()
    run.train(callbacks=[log], progress=False, epoch_table=False)
    run.evaluate()
    run.write_summary()


def _trial(case: Case, log: StepLog) -> None:
    real_execute = hparam.execute

    def execute(trial, **kw):  # the study's trials get the step log as a trainer callback
        return real_execute(trial, **{**kw, "callbacks": [*kw.get("callbacks", ()), log]})

    hparam.execute = execute
    run = hparam.HParamRun("synthetic", workdir=case.workdir, local=case.local, img_size=32, width_divisor=32,
                           batch_size=4, trial_epochs=EPOCHS, checkpoint_minutes=case.checkpoint_minutes,
                           device="cpu", synthetic_kwargs={"n_train": 8, "n_val": 4, "size": 32})
    run.prepare()
    run.run_studies(["dropout"], lrs=run.lrs("seed"), heartbeat=0.5, stale_after=3.0, poll=0.2, epoch_table=False)
    run.write_summary()
    (Path(case.workdir) / "table.json").write_text(json.dumps(run.table()))


RUNNERS = {"jetcar": _jetcar, "depth": _depth, "trial": _trial}


def run_case(case: Case) -> None:
    """Run ``case`` in this process (the launcher's child): environment, one torch thread, output appended to
    ``case.output``, the kill hooks armed, then the scenario. Returns normally when the run finished; a kill
    ends the process with SIGKILL; an error propagates (exit code 1, traceback in ``case.output``)."""
    os.environ.update(case.env)
    os.environ.pop(faults.ENV, None)
    if case.fault:
        os.environ[faults.ENV] = case.fault
    torch.set_num_threads(1)
    out = os.open(case.output, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(out, f"\n===== pid {os.getpid()}: {case.describe()}\n".encode())
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(out, 1)
    os.dup2(out, 2)
    tqdm.set_lock(threading.RLock())  # not tqdm's multiprocessing lock: a SIGKILL would leak its semaphore
    counts = _count_hits() if case.count else None
    if case.kill_in_save:
        kill_in_save(case.kill_in_save)
    RUNNERS[case.scenario](case, StepLog(case.log, case.kill_at_step))
    if counts is not None:
        (Path(case.workdir).parent / "counts.json").write_text(json.dumps(counts))
    sys.stdout.flush()
    sys.stderr.flush()


def case_dict(case: Case) -> dict:
    """``case`` as JSON data (without the environment)."""
    return {k: v for k, v in asdict(case).items() if k != "env"}
