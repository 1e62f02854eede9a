"""The one training state that both engines drive: what a run trains, its checkpoint, and the epoch rules.

:class:`TrainingState` builds everything a run trains (model on the device, optimizer, scheduler, AMP
scaler, best tracker, early stopping, loaders, counters, history), saves it (:meth:`~TrainingState.state_dict`,
the one checkpoint format; ``best.pt`` slim), restores it (:meth:`~TrainingState.restore`: the restore order,
the model and data checks of :mod:`~seglib.train.identity`, fine-tuning, one resume or "finished" line, the LR
override, seeding on a fresh start) and records each epoch (history record, TensorBoard scalars, scheduler,
best and early stopping, checkpoint copied to WORKDIR by :mod:`~seglib.train.mirror`); the recovery order and
the rule that keeps ``best.pt`` and the best record the same are :mod:`~seglib.train.recovery`'s. The loops
only call it: :class:`seglib.train.trainer.Trainer` (plain PyTorch) and the Catalyst adapter
(:mod:`seglib.integrations.catalyst_engine`), so both engines seed, restore, record and stop by one rule
and resume each other's checkpoints.

Per epoch a loop calls ``begin_train(epoch)``, ``end_batch(loss, target)`` after every optimizer step,
``begin_valid(epoch)``, ``val_mean.add(loss, target, ignore_index)`` per validation batch and
``end_epoch(epoch, metrics)``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..config import TrainConfig
from ..data.datasets import make_loader
from ..data.transforms import size_for_epoch
from ..metrics import higher_is_better
from ..runtime import Workspace, pick_device, versions
from . import distributed, faults, recovery
from .callbacks import BestTracker, EarlyStopping, LossMean, check_monitor, monitor_keys  # noqa: F401
from .checkpoint import (  # noqa: F401  (StorageError re-exported)
    BackgroundWrite,
    StorageError,
    atomic_save,
    atomic_write_json,
    rng_state,
    set_rng_state,
    snapshot,
)
from .fitresult import FitResult  # noqa: F401  (re-exported)
from .identity import BEST_KEYS, CheckpointMismatch, DataMismatch, FineTuneError, upgrade_checkpoint  # noqa: F401
from .mirror import BackgroundCopy
from .optim import (
    PER_STEP,
    build_optimizer,
    build_scheduler,
    encoder_frozen,
    set_encoder_trainable,
    stretch_schedule,
)

FORMAT = "seglib-checkpoint/1"
"""Checkpoint format. Fields added since (``engine``, ``train_acc.seen`` as a float tensor, ``world_size``, and
``ranks`` from data-parallel runs: :func:`seglib.train.distributed.add_ranks`) are optional."""
MIRRORED = ["tensorboard", "history.json", "checkpoints/last.prev.pt", "checkpoints/last.pt", "checkpoints/best.pt"]
"""What is copied from the local folder to WORKDIR (relative paths), in this order: a copy cut off anywhere
leaves WORKDIR's TensorBoard at least as far as its ``last.pt`` (:func:`~seglib.train.checkpoint.mirror` opens
every file first), and ``last.pt`` (the commit point) before ``best.pt``, as the local writes."""


def _on(callbacks, event: str, *args) -> None:
    for cb in callbacks:
        getattr(cb, event, lambda *a: None)(*args)


class TrainingState:
    """Everything a run trains and the rules of one epoch, shared by both engines.

    Args:
        config: the run configuration (saved in every checkpoint).
        model: the network; placed on ``device`` here (channels_last on CUDA when ``config.channels_last``).
        train_set, val_set: datasets indexed by ``(epoch, index)`` keys, items ``{"input", "target", "index"}``.
        workspace: checkpoints in ``local/checkpoints``, TensorBoard in ``local/tensorboard``, mirrored to
            ``workdir``.
        metrics_factory: ``() -> object`` with ``update(outputs, target)``, ``compute() -> dict`` and ``keys``
            (the scalar keys ``compute()`` returns).
        callbacks: objects with optional ``on_batch_end(state)`` / ``on_epoch_end(state, record)``.
        lr_override: after restoring, set every group's LR to this (times its ``lr_ratio``).
        device: default CUDA if available.
        engine: the engine's name, written into checkpoints and the resume message.
        data: the data fingerprint (:func:`seglib.data.fingerprint.data_fingerprint`) written into every
            checkpoint; a resume with another one is refused. None: not recorded, not checked.
        fine_tune_from: ``FINE_TUNE_FROM``: a checkpoint file or another run's WORKDIR whose weights a new run
            starts from (fresh optimizer, epoch 0); see :meth:`restore`.
        classes: ``{"names": [...], "colors": [[r, g, b], ...]}`` of the classes, written into every checkpoint
            (with the metrics' ``task``) so that :func:`seglib.deploy.load_run` needs nothing else; None: not known.

    Attributes:
        epoch: epochs completed; ``batch``: batches done in the epoch in progress; ``step``: optimizer steps.
        status: ``"fresh"``, ``"resumed"`` or ``"already finished"`` (set by :meth:`restore`).
        copier: the :class:`~seglib.train.mirror.BackgroundCopy` to WORKDIR, or None when WORKDIR is local.
        history: one record per epoch (``epoch``, ``img_size`` [px], ``lr``, ``train_loss``, ``val_<k>``,
            ``train_seconds`` and ``seconds`` [s]).
        train_mean, val_mean: the epoch loss means (:class:`~seglib.train.callbacks.LossMean`).

    Raises:
        ValueError: ``config.monitor`` is not a key the run produces (the message lists them).
        TypeError: the metrics object has no ``keys``.
    """

    BACKGROUND_COPY = True
    """Copy to WORKDIR in a background thread (False: in the training thread, as before; for measurements)."""

    def __init__(self, config: TrainConfig, model: nn.Module, train_set, val_set, workspace: Workspace, *,
                 metrics_factory: Callable, callbacks: Sequence = (), lr_override: float | None = None,
                 device: str | None = None, engine: str = "seglib", data: dict | None = None,
                 fine_tune_from=None, classes: dict | None = None):
        metrics = metrics_factory()
        check_monitor(config.monitor, metrics)
        self.task = getattr(metrics, "task", None)
        self.cfg, self.ws, self.engine, self.data, self.fine_tune = config, workspace, engine, data, fine_tune_from
        self.classes = classes
        self.dist = distributed.current()  # data-parallel: rank 0 restores and writes (seglib.train.distributed)
        self.device = self.dist.device if self.dist else pick_device(device)
        cuda = self.device.type == "cuda"
        self.amp, self.channels_last = bool(config.amp and cuda), bool(config.channels_last and cuda)
        self.model = model.to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.main = self.dist is None or self.dist.is_main
        self.metrics_factory, self.callbacks, self.lr_override = metrics_factory, list(callbacks), lr_override
        if not self.main:
            self.callbacks = []  # rank 0 alone reports
        self.optimizer = build_optimizer(config.optimizer, model, config.lr, config.weight_decay,
                                         config.encoder_lr_ratio, config.encoder_weight_decay, **config.optimizer_kwargs)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.best = BestTracker(config.monitor)
        self.early = EarlyStopping(config.monitor, config.early_stop_patience)
        # num_workers None: per loader by device and cache (runtime.default_num_workers); pinned memory on CUDA
        self.train_loader = make_loader(train_set, config.batch_size, shuffle=True, seed=config.seed,
                                        num_workers=config.num_workers, cuda=cuda,
                                        **({"rank": self.dist.rank, "world_size": self.dist.world_size} if self.dist else {}))
        self.val_loader = make_loader(val_set, config.batch_size, shuffle=False, seed=config.seed,
                                      num_workers=config.num_workers, cuda=cuda)
        self.n_batches = math.ceil(len(train_set) / config.batch_size)
        mode = "max" if higher_is_better(config.monitor) else "min"
        self.scheduler = build_scheduler(config.scheduler, self.optimizer, mode=mode,
                                         total_steps=config.epochs * self.n_batches, **config.scheduler_kwargs)
        self.per_step_scheduler = config.scheduler in PER_STEP
        self.pretrained_encoder = getattr(model, "encoder_weights_loaded", None) is not None
        self.net = distributed.wrap(self.model, self.dist, find_unused=bool(config.freeze_encoder_epochs
                                                                            and self.pretrained_encoder))
        self.epoch, self.batch, self.step = 0, 0, 0
        self.history: list[dict] = []
        self.last_val: dict = {}
        self.train_mean, self.val_mean = LossMean(self.device), LossMean(self.device)
        self.ckpt_dir, self.tb_dir = workspace.local / "checkpoints", workspace.local / "tensorboard"
        self.resumed_from: dict | None = None
        self.fine_tuned_from: dict | None = None
        self.status = "fresh"
        self.writer = BackgroundWrite()  # checkpoint files are written off the training thread
        self.copier = BackgroundCopy(workspace.local, workspace.workdir, MIRRORED, self.BACKGROUND_COPY) \
            if workspace.mirrored and self.main else None
        self.lr = config.lr
        self._t_start = self._t_epoch = self._t_train = self._last_save = time.monotonic()

    # ------------------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict:
        """The checkpoint: ``torch.load(weights_only=True)``-loadable, ``"model"`` the model's state_dict."""
        return {
            "format": FORMAT, "engine": self.engine,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch, "batch": self.batch, "step": self.step,
            "train_acc": self.train_mean.state_dict(),
            "early_stopping": self.early.state_dict(), "best": self.best.state_dict(),
            "rng": rng_state(), "history": self.history, "last_val": self.last_val, "epoch_lr": self.lr,
            "config": self.cfg.to_dict(), "versions": versions(), "saved_at": time.time(),
            "data": self.data, "fine_tuned_from": self.fine_tuned_from,
            "task": self.task, "classes": self.classes, "world_size": self.dist.world_size if self.dist else 1,
        }

    def best_state_dict(self, state: dict | None = None) -> dict:
        """``best.pt``: the :data:`~seglib.train.identity.BEST_KEYS` of :meth:`state_dict` (weights,
        configuration, metrics, data fingerprint; no optimizer or RNG state). ``torch.load(weights_only=True)``
        loadable with a ``"model"`` key; resuming always reads ``last.pt``."""
        state = self.state_dict() if state is None else state
        return {k: state[k] for k in BEST_KEYS if k in state}

    def load_state_dict(self, ckpt: dict) -> None:
        """Restore everything :meth:`state_dict` saved (format 1 and later), RNG states included. Early
        stopping keeps this configuration's patience (a resume with a larger patience trains on)."""
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt.get("scheduler") is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
            stretch_schedule(self.scheduler, self.cfg.epochs * self.n_batches)
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.batch, self.step = int(ckpt["epoch"]), int(ckpt["batch"]), int(ckpt["step"])
        self.train_mean.load_state_dict(ckpt["train_acc"])
        self.early.load_state_dict(ckpt["early_stopping"])
        self.early.patience = self.cfg.early_stop_patience
        self.best.load_state_dict(ckpt["best"])
        self.history, self.last_val = list(ckpt["history"]), dict(ckpt.get("last_val", {}))
        self.lr = float(ckpt.get("epoch_lr") or self.optimizer.param_groups[-1]["lr"])
        set_rng_state(ckpt["rng"])

    def save(self, best: bool = False) -> None:
        """Write ``last.pt`` (keeping ``last.prev.pt``) first: it is the epoch's commit point and records the
        best it expects; then ``best.pt`` (:meth:`best_state_dict`) if ``best``, ``history.json``, and ask for
        the copy to WORKDIR (in the background). A kill between the two writes is repaired on resume
        (:func:`seglib.train.recovery.reconcile_best`). Only a CPU snapshot is taken here; a thread writes the files
        (:class:`~.checkpoint.BackgroundWrite`), waited for by the next save, and here by the last (:attr:`finished`).

        Raises:
            seglib.train.checkpoint.StorageError: disk full or read-only (names the folder and the space needed;
                the previous files are intact); a background write's error is raised by the next save.
        """
        self.writer.wait()
        faults.point("save.begin")
        ranks = distributed.gather_ranks(self.dist, self) if self.dist else None
        if not self.main:
            return
        state = snapshot(self.state_dict())
        if ranks:
            state = distributed.add_ranks(state, ranks)
        self.writer.submit(lambda: self._write(state, best))
        if self.finished:
            self.writer.wait()

    def _write(self, state: dict, best: bool) -> None:
        """The files of one :meth:`save`, in commit order (run by the background writer)."""
        atomic_save(state, self.ckpt_dir / "last.pt", keep_previous=True)
        faults.point("save.between")
        if best:
            atomic_save(self.best_state_dict(state), self.ckpt_dir / "best.pt")
        atomic_write_json(self.ws.local / "history.json", state["history"])
        faults.point("save.end")
        if self.copier is not None:
            self.copier.request()

    def sync_workdir(self, raise_errors: bool = True) -> None:
        """Copy what is not yet in WORKDIR and wait for it (the end of every ``train()``, both engines).

        Raises:
            seglib.train.mirror.MirrorError: (``raise_errors``) the copy failed twice; else it is printed.
        """
        try:
            self.writer.wait()  # the checkpoint write in flight comes first
        except Exception as err:  # noqa: BLE001 - raised unless a training error is already on its way
            if raise_errors:
                raise
            print(f"the last checkpoint write failed: {type(err).__name__}: {err}")
        if self.copier is not None:
            self.copier.request()
            self.copier.wait(raise_errors)

    def restore(self) -> dict | None:
        """Resume from the most advanced readable checkpoint, else start fresh (from ``FINE_TUNE_FROM``'s
        weights if set) and seed with ``config.seed`` (:func:`seglib.train.recovery.restore`).

        Order: check the local folder is writable; delete stale temporary files (locally and in WORKDIR); pick
        local ``last.pt``, local ``last.prev.pt``, WORKDIR ``last.pt``, WORKDIR ``last.prev.pt`` (the readable
        one with the most progress; a WORKDIR file is used through a verified local copy), else warm-restart
        from a readable ``best.pt``; check it belongs to this model, this data and (with ``FINE_TUNE_FROM``)
        this fine-tuning run; load it; reconcile ``best.pt`` with the best it records; print one line (the
        resume naming the WORKDIR file, with the configuration changes, or that training already finished;
        one more line per fallback); apply the LR override. Sets :attr:`status`.

        Returns:
            The loaded checkpoint (for a warm restart: ``best.pt`` plus the RNG state), or None on a fresh start.

        Raises:
            CheckpointMismatch: the checkpoint (or the fine-tuning source) belongs to another model (it is kept).
            DataMismatch: the checkpoint was trained on other data (names both fingerprints and the ways forward).
            FineTuneError: ``FINE_TUNE_FROM`` names no checkpoint, this WORKDIR, or WORKDIR holds another run.
            CheckpointError: a checkpoint holds something else (a plain state_dict, a tensor ...) or a pickle
                that safe loading refuses; the message names the file.
            StorageError: the local checkpoint folder is read-only (before any training).
            RuntimeError: checkpoints exist but none of ``last.pt``, ``last.prev.pt``, ``best.pt`` is readable.
        """
        if self.dist:
            return distributed.restore(self, recovery.restore)
        ckpt = recovery.restore(self)
        distributed.say_world_change((ckpt or {}).get("world_size", 1), 1, self.status)
        return ckpt

    @property
    def finished(self) -> bool:
        """``config.epochs`` reached or early stopping triggered."""
        return self.epoch >= self.cfg.epochs or self.early.should_stop

    def already_finished(self) -> bool:
        """:attr:`finished` (:meth:`restore` has said so once when the loaded run had already finished)."""
        return self.finished

    # ------------------------------------------------------------------------- one epoch
    def begin_train(self, epoch: int) -> None:
        """Start epoch ``epoch`` (1-based): the train sampler skips the batches already done, the LR to record
        is read, the epoch and checkpoint clocks start."""
        self.train_loader.sampler.set_epoch(epoch, self.batch)
        self.freeze_encoder(epoch)
        if self.batch == 0:  # the LR the epoch starts at (a mid-epoch resume keeps the one its checkpoint recorded)
            self.lr = self.optimizer.param_groups[-1]["lr"]
        self._t_epoch = self._last_save = time.monotonic()

    def freeze_encoder(self, epoch: int) -> bool:
        """Freeze the encoder (``requires_grad`` False: no gradient, so the optimizer skips it) during the first
        ``config.freeze_encoder_epochs`` epochs when it starts from pretrained weights, unfreeze it after (fastai's
        ``fine_tune``); a pure function of the epoch, so a resumed run freezes exactly as an uninterrupted one.
        Returns whether the encoder is frozen in ``epoch``."""
        frozen = encoder_frozen(epoch, self.cfg.freeze_encoder_epochs, self.pretrained_encoder)
        if self.cfg.freeze_encoder_epochs:
            set_encoder_trainable(self.model, not frozen)
        return frozen

    def end_batch(self, loss: torch.Tensor, target) -> None:
        """After one optimizer step: add the batch's ``loss`` (0-dim tensor) to the epoch mean, count it, call
        the callbacks' ``on_batch_end(state)``, and write ``last.pt`` mid-epoch every ``checkpoint_minutes``."""
        self.train_mean.add(loss, target, self.cfg.ignore_index)
        self.batch += 1
        self.step += 1
        _on(self.callbacks, "on_batch_end", self)
        due = self.batch < self.n_batches and time.monotonic() - self._last_save >= self.cfg.checkpoint_minutes * 60
        if distributed.agree(self.dist, due) if self.dist else due:
            self.save()
            self._last_save = time.monotonic()

    def begin_valid(self, epoch: int) -> None:
        """Training part of ``epoch`` done: stop its clock, reset the validation loss mean, order the sampler."""
        self._t_train = time.monotonic() - self._t_epoch
        if self.dist:
            distributed.end_train_part(self.dist, self.model, self.train_mean)
        self.val_loader.sampler.set_epoch(epoch)
        self.val_mean.reset()

    def end_epoch(self, epoch: int, metrics: dict, *, extra: dict | None = None, writer=None, grid=None,
                  step_scheduler: bool = True) -> dict:
        """Record epoch ``epoch`` and decide what follows it.

        Appends the history record (``val_<k>`` from ``extra``, then ``metrics`` and ``val_loss``; the
        confusion matrix and keys with ``/`` left out), logs its numbers to ``writer`` (a TensorBoard
        ``SummaryWriter``, optional; ``grid`` an ``uint8 H x W x 3`` image), steps the scheduler (unless
        the engine does), updates best and early stopping, writes ``last.pt`` (and ``best.pt`` on
        improvement), calls the callbacks' ``on_epoch_end(state, record)``, and says when it stops early.

        Args:
            metrics: ``metrics_factory().compute()`` of the validation pass (``val_loss`` comes from
                :attr:`val_mean`).
            extra: further validation numbers of an engine (e.g. Catalyst's loss terms).

        Returns:
            The history record.
        """
        val = {**metrics, "loss": self.val_mean.value()}
        record = {"epoch": epoch, "img_size": size_for_epoch(epoch, self.cfg.img_size, self.cfg.resize_schedule),
                  "lr": self.lr, "train_loss": self.train_mean.value()}
        record.update({f"val_{k}": v for k, v in {**(extra or {}), **val}.items()
                       if k not in ("confusion_matrix", "lr", "momentum") and "/" not in k})
        record.update({"train_seconds": self._t_train, "seconds": time.monotonic() - self._t_epoch})
        self.history.append(record)
        self.last_val = val
        if writer is not None:
            for k, v in record.items():
                if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    writer.add_scalar(k.replace("_", "/", 1) if k.startswith(("train_", "val_")) else k, v, epoch)
            if grid is not None:
                writer.add_image("val/predictions", grid, epoch, dataformats="HWC")
            writer.flush()
        value = record[self.cfg.monitor]
        step_scheduler = step_scheduler and not self.per_step_scheduler  # those step after every optimizer step
        if step_scheduler and isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(value)
        elif step_scheduler and self.scheduler is not None:
            self.scheduler.step()
        improved = self.best.update(value, epoch)
        self.early.update(value, epoch)
        self.epoch, self.batch = epoch, 0
        self.train_mean.reset()
        self.save(best=improved)
        _on(self.callbacks, "on_epoch_end", self, record)
        if self.early.should_stop and self.main:
            print(f"early stopping after epoch {epoch}: no {self.cfg.monitor} improvement for "
                  f"{self.early.wait} epochs (" + ("no best yet)" if self.best.value is None else
                                                   f"best {self.best.value:.4f} at epoch {self.best.epoch})"))
        return record

    def result(self) -> FitResult:
        """The :class:`FitResult` of this fit (seconds since :meth:`restore`)."""
        ws = self.ws.workdir
        return FitResult(
            history=self.history, epochs_completed=self.epoch, resumed_from=self.resumed_from,
            best={"metric": self.best.monitor, "value": self.best.value, "epoch": self.best.epoch},
            stopped_early=self.early.should_stop, seconds=time.monotonic() - self._t_start,
            checkpoint=ws / "checkpoints" / "last.pt",
            best_checkpoint=ws / "checkpoints" / "best.pt" if (self.ckpt_dir / "best.pt").is_file() else None,
            tensorboard=ws / "tensorboard", last_val=self.last_val, status=self.status,
            fine_tuned_from=self.fine_tuned_from, data=self.data)
