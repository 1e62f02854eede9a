"""Trial specs and the study grids of seed 004: each study is a grid (:class:`StudyGrid`) of trial specs run
by the seglib trainer (the Optuna side, one Optuna study per grid, is :mod:`seglib.tune.worker`).

A *spec* is a flat JSON-able dict that fully defines one training (model width, data handling,
optimizer, LR, scheduler, regularisation, loss, augmentation, epochs, seed); :func:`make_config` turns it
into a :class:`seglib.config.TrainConfig` and :func:`spec_key` into the trial's folder name. Every study
starts from one *base* spec and varies one factor (two for optimizer x scheduler), as the seed did; the
learning rate of each optimizer comes from the LR search (or seed 004's table when it was not run).

Scheduler settings scale with the trial length ``epochs``: step decay multiplies the LR by 0.1 every
``round(epochs / 3)`` epochs (StepLR(100, 0.1) in 300 epochs, as the EE-782 reference code); the
plateau scheduler by 0.1 after ``max(3, epochs // 8)`` epochs without val-Dice improvement (Keras'
``ReduceLROnPlateau`` factor, seed 002). ``BASE = {"scheduler": "onecycle"}`` (or ``"cosine"``: warm-up then cosine)
trains every trial with a per-step schedule over its whole length (``epochs`` x batches); they are not in the
optimizer x scheduler grid (:data:`SCHEDULER_NAMES`, seed 004's), so existing studies keep their trials. On ISBI 2012
the fastest settings measured (``benchmarks/quality.py``, ``BENCHMARKS.md``) are :data:`FAST_BASE` with BatchNorm at
256 px.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from ..config import TrainConfig

SEED_LRS = {
    "bce": {"adam": 2e-4, "adagrad": 5e-3, "adamax": 2e-3, "rmsprop": 5e-4, "sgd": 5e-3, "adadelta": 2e-2},
    "switching": {"adam": 1e-3, "adagrad": 1e-2, "adamax": 2e-2, "rmsprop": 1e-3, "sgd": 1e-1, "adadelta": 8e-2},
}
"""Seed 004's "learning rate for fast convergence" table (BCE and switching-loss columns)."""

OPTIMIZER_NAMES = ("adam", "adagrad", "adamax", "rmsprop", "sgd", "adadelta")
SCHEDULER_NAMES = ("none", "step", "plateau")
LOSS_NAMES = ("switching", "bce", "bce_dice", "inverse_dice", "bce_inverse_dice", "dice", "bce_switching")

BASE_SPEC = {
    "optimizer": "adam", "lr": None, "scheduler": "plateau", "loss": "bce_switching", "weight_decay": 0.0,
    "dropout": 0.0, "train_fraction": 1.0, "augment": "none",
}
"""The varied factors' base values: seed 004's final choice (Adam, ReduceLROnPlateau, BCE + switching)."""
FAST_BASE = {"optimizer": "adam", "lr": 3e-3, "scheduler": "onecycle", "loss": "bce_dice", "augment": "rotate_flips"}
"""A ``BASE`` that trains faster per epoch on ISBI 2012 (with ``BATCHNORM = True``, ``IMG_SIZE = 256``): Adam 3e-3
under the one-cycle schedule, BCE + Dice, rotation +-20 deg and flips. Measured in ``benchmarks/quality.py``."""


def seed_lr(optimizer: str, loss: str) -> float:
    """Seed 004's LR for ``optimizer`` under ``loss`` (switching column for switching-type losses, BCE otherwise).

    Raises:
        KeyError: an optimizer the seed did not tune (lists them).
    """
    table = SEED_LRS["switching" if "switching" in loss else "bce"]
    if optimizer not in table:
        raise KeyError(f"seed 004 has no LR for optimizer {optimizer!r}; tuned: {sorted(table)}")
    return table[optimizer]


@dataclass(frozen=True)
class StudyGrid:
    """The grid of one study: ``space`` (Optuna ``GridSampler`` search space) applied to the base spec.

    Attributes:
        name: identifier used in the notebook's ``STUDIES`` list and in folder names.
        space: ``{factor: values}``; factors are spec keys; ``optimizer`` also sets ``lr``.
    """

    name: str
    space: dict[str, tuple] = field(default_factory=dict)

    def grid(self) -> list[dict]:
        """Every combination of :attr:`space` values, first factor slowest (``[{factor: value}, ...]``)."""
        points: list[dict] = [{}]
        for factor, values in self.space.items():
            points = [{**p, factor: v} for p in points for v in values]
        return points

    def spec(self, params: dict, base: dict, lrs: dict[str, float]) -> dict:
        """The full spec of grid point ``params``: ``base`` with the factors replaced (LR per optimizer)."""
        spec = {**base, **params}
        if "optimizer" in params or spec.get("lr") is None:
            spec["lr"] = float(lrs[spec["optimizer"]])
        return spec

    def smoke(self, base: dict, n: int = 2) -> StudyGrid:
        """This grid cut for a SMOKE run: per factor at most ``n`` values, the base value first kept (when
        the grid has it), then the first others, in grid order; e.g. the loss study's 7 losses become
        ``("switching", "bce_switching")`` for the base loss ``bce_switching``. Raises ValueError for ``n < 1``."""
        if n < 1:
            raise ValueError(f"a smoke grid keeps at least 1 value per factor, got n={n}")
        space = {}
        for factor, values in self.space.items():
            keep = [v for v in values if v == base.get(factor)][:1]
            keep += [v for v in values if v not in keep][:n - len(keep)]
            space[factor] = tuple(v for v in values if v in keep)
        return StudyGrid(self.name, space)

    def label(self, params: dict) -> str:
        """A short readable name of a grid point, e.g. ``"adam-plateau"`` or ``"wd-0.01"``."""
        short = {"weight_decay": "wd", "train_fraction": "frac", "dropout": "drop", "augment": "aug"}
        parts = []
        for k, v in params.items():
            parts.append(str(v) if k in ("optimizer", "scheduler", "loss") else f"{short.get(k, k)}-{v}")
        return "-".join(parts)


STUDY_GRIDS: dict[str, StudyGrid] = {s.name: s for s in [
    # optimizer x LR scheduler (LR per optimizer from the LR search)
    StudyGrid("optimizer_scheduler", {"optimizer": OPTIMIZER_NAMES, "scheduler": SCHEDULER_NAMES}),
    # fraction of the training pool (fixed held-out validation set)
    StudyGrid("train_fraction", {"train_fraction": (0.2, 0.4, 0.6, 0.8, 1.0)}),
    # weight decay (L2 added to the gradient, torch convention)
    StudyGrid("weight_decay", {"weight_decay": (0.1, 0.01, 0.001)}),
    StudyGrid("dropout", {"dropout": (0.0, 0.2, 0.5)}),  # after every U-Net block
    StudyGrid("loss", {"loss": LOSS_NAMES}),
    # augmentation of the training data only (rotation +-20 deg, h/v flips p 0.5)
    StudyGrid("augmentation", {"augment": ("none", "rotate_flips")}),
]}
"""All studies, in the order the notebook runs them."""


def get_grids(names) -> list[StudyGrid]:
    """The :class:`StudyGrid` objects for ``names`` (a name, a list of names, or ``"all"``/None for every study).

    Raises:
        KeyError: an unknown name; the message lists the valid ones.
    """
    if names is None or names == "all":
        return list(STUDY_GRIDS.values())
    if isinstance(names, str):
        names = [names]
    out = []
    for n in names:
        if n not in STUDY_GRIDS:
            raise KeyError(f"unknown study {n!r}; valid STUDIES: {', '.join(STUDY_GRIDS)} (or 'all')")
        out.append(STUDY_GRIDS[n])
    return out


def scheduler_kwargs(name: str, epochs: int) -> dict:
    """Scheduler arguments scaled to a trial of ``epochs`` epochs (see the module docstring)."""
    if name == "step":
        return {"step_size": max(1, round(epochs / 3)), "gamma": 0.1}
    if name == "plateau":
        return {"factor": 0.1, "patience": max(3, epochs // 8)}
    if name == "onecycle":  # the trainer passes total_steps = epochs x batches
        return {"pct_start": 0.25}
    if name == "cosine":
        return {"warmup": 0.05}
    return {}


def make_config(spec: dict, experiment: str = "trial") -> TrainConfig:
    """The :class:`TrainConfig` of a full spec (U-Net with 1 logit, monitor ``val_fg_dice``).

    Spec keys used: ``width_divisor``, ``batchnorm``, ``dropout``, ``img_size``, ``augment``,
    ``batch_size``, ``num_workers``, ``loss``, ``loss_kwargs``, ``optimizer``, ``lr``, ``weight_decay``,
    ``scheduler``, ``epochs``, ``patience``, ``checkpoint_minutes``, ``seed``.

    Raises:
        KeyError: a missing spec key (named).
    """
    return TrainConfig(
        experiment=experiment, model="unet",
        model_kwargs={"width_divisor": int(spec["width_divisor"]), "batchnorm": bool(spec["batchnorm"]),
                      "dropout": float(spec["dropout"])},
        encoder_weights=None, n_classes=2, ignore_index=None, img_size=int(spec["img_size"]),
        augment=spec["augment"], batch_size=int(spec["batch_size"]), num_workers=spec.get("num_workers"),
        loss=spec["loss"], loss_kwargs=dict(spec.get("loss_kwargs") or {}), optimizer=spec["optimizer"],
        lr=float(spec["lr"]), encoder_lr_ratio=1.0, weight_decay=float(spec["weight_decay"]),
        encoder_weight_decay=None, scheduler=spec["scheduler"],
        scheduler_kwargs=scheduler_kwargs(spec["scheduler"], int(spec["epochs"])), monitor="val_fg_dice",
        early_stop_patience=spec["patience"], epochs=int(spec["epochs"]),
        checkpoint_minutes=float(spec.get("checkpoint_minutes", 5.0)), seed=int(spec["seed"]),
    )


SPEC_VERSION = 2
"""Part of every spec hash; bumped when seglib changes what a spec trains to (e.g. the U-Net's
initialisation), so results of older versions are not reused."""


def spec_hash(spec: dict, n: int = 8) -> str:
    """Stable hex digest of a spec and :data:`SPEC_VERSION` (sorted-key JSON; ``num_workers`` and
    ``checkpoint_minutes`` excluded, since they do not change the result)."""
    clean = {k: v for k, v in spec.items() if k not in ("num_workers", "checkpoint_minutes")}
    clean["_version"] = SPEC_VERSION
    return hashlib.sha1(json.dumps(clean, sort_keys=True, default=str).encode()).hexdigest()[:n]


def spec_key(study: StudyGrid, params: dict, spec: dict) -> str:
    """Folder name of a trial: readable grid-point label plus the spec hash, e.g. ``adam-plateau-1a2b3c4d``."""
    return f"{study.label(params)}-{spec_hash(spec)}"


SMOKE_SETTINGS = {"img_size": 64, "width_divisor": 16, "trial_epochs": 2, "probe_epochs": 1, "range_steps": 20,
                  "optimizers": 2, "losses": 1, "cpu_threads": 1}
"""What a SMOKE run uses: these sizes, the first 2 optimizers and first loss of the LR search, and one CPU thread
unless asked for more (on a busy 2-core CPU 2 threads made the smoke notebook 3.6x slower: 160 s against 45 s)."""


def smoke_settings(smoke: bool, **values) -> dict:
    """The notebook's settings, shrunk by :data:`SMOKE_SETTINGS` when ``smoke``.

    Args:
        smoke: False returns ``values`` unchanged.
        values: any of ``img_size``, ``width_divisor``, ``trial_epochs``, ``probe_epochs``, ``range_steps``
            (ints, replaced), ``optimizers``, ``losses`` (name lists, cut to their first 2 / 1) and
            ``cpu_threads`` (None becomes 1, a number is kept).

    Returns:
        A new dict with the keys of ``values``.

    Raises:
        ValueError: an unknown key (the message lists the known ones).
    """
    bad = sorted(set(values) - set(SMOKE_SETTINGS))
    if bad:
        raise ValueError(f"unknown settings {bad}; known: {sorted(SMOKE_SETTINGS)}")
    if not smoke:
        return dict(values)
    return {k: list(v)[:SMOKE_SETTINGS[k]] if k in ("optimizers", "losses") else
            (v or SMOKE_SETTINGS[k]) if k == "cpu_threads" else SMOKE_SETTINGS[k] for k, v in values.items()}
