"""``ENGINE="catalyst"``: the JetCar notebook's loop as the original ran it, with seglib's guarantees.

The original (StefansAI/JetCar ``jetcar_pytorch_unet_mobilenetv2_catalyst.ipynb``, catalyst 20.12) trained
with a ``SupervisedRunner``: one ``CriterionCallback`` per loss term (Dice, IoU, BCE) and a
``MetricAggregationCallback(mode="weighted_sum", {"loss_dice": 1, "loss_iou": 1, "loss_bce": 0.8})``,
``Lookahead(RAdam)`` with the encoder at LR/2, ``ReduceLROnPlateau(factor=0.25, patience=5)`` through
the scheduler callback, ``EarlyStoppingCallback(patience=10)``, Dice and IoU metric callbacks and
Catalyst's TensorBoard logger. :func:`train_catalyst` builds the same runner on Catalyst 22.4 from the
seglib run's own data, model, loss, optimizer, scheduler and metrics, so only the loop differs from
:class:`seglib.train.trainer.Trainer`. Early stopping (``EARLY_STOP_PATIENCE``, 10 in the notebook) is
seglib's :class:`~seglib.train.callbacks.EarlyStopping`, counted at the end of each epoch by
:class:`SeglibStateCallback`, which stops the runner through ``runner.need_early_stop`` as Catalyst's
``EarlyStoppingCallback`` does: the same rule (strict improvement) as ``best.pt`` and the seglib engine,
so both engines stop after the same epoch. Two seglib callbacks add what Catalyst never had:

- :class:`SeglibStateCallback` writes ``checkpoints/last.pt`` (every epoch, and mid-epoch every
  ``checkpoint_minutes``) and ``best.pt`` in the seglib Trainer's format (``weights_only``-loadable,
  key ``"model"``), atomically, mirrored to WORKDIR, plus the runner counters under ``"catalyst"``;
  a rerun resumes from it: model, optimizer, scheduler, AMP scaler, epoch and batch, early stopping,
  best value, history and RNG. The checkpoint is interchangeable with the seglib engine's.
- ``PredictionGridCallback`` (:mod:`~seglib.integrations.catalyst_callbacks`) logs the per-epoch
  validation prediction grid to TensorBoard.

Validation scores (mIoU, Dice, pixel accuracy, per class) come from seglib's confusion-matrix metrics
(``SeglibMetricsCallback``); Catalyst's own sigmoid Dice/IoU callbacks are logged as ``catalyst_dice``
and ``catalyst_iou`` (validation only: the train step does no extra work). Single device only (CPU, or one
GPU with float16 AMP); no DDP.
"""

from __future__ import annotations

import math
import time
import types
import warnings
from collections import OrderedDict

import torch

from ..data.datasets import make_loader
from ..data.transforms import size_for_epoch
from ..metrics import higher_is_better
from ..runtime import default_num_workers, versions
from ..train.callbacks import BestTracker, EarlyStopping
from ..train.checkpoint import (
    atomic_save,
    atomic_write_json,
    clean_stale,
    load_checkpoint,
    mirror,
    resume_message,
    rng_state,
    set_rng_state,
)
from ..train.optim import build_optimizer, build_scheduler, set_lr
from ..train.trainer import FORMAT, MIRRORED, FitResult, check_compatible, config_changes
from . import catalyst_compat
from .catalyst_callbacks import (  # applies the compat fixes, then imports catalyst
    CallbackOrder,
    ICheckpointCallback,
    PredictionGridCallback,
    QuietConsoleLogger,
    SeglibMetricsCallback,
    SeglibRunner,
    SeglibTensorboardLogger,
    criterion_callbacks,
    dl,
    valid_region_metrics,
)


class SeglibStateCallback(ICheckpointCallback):
    """Resume, per-epoch bookkeeping, early stopping and atomic seglib checkpoints for a Catalyst run (runs
    after every other callback, so the scheduler has stepped before early stopping counts and a save).

    Args:
        state: the :class:`CatalystState` shared with :func:`train_catalyst`.
    """

    def __init__(self, state: CatalystState):
        super().__init__()
        self.order = CallbackOrder.External + 10
        self.s = state

    def on_experiment_start(self, runner) -> None:
        s = self.s
        if s.resume is not None:  # counters are reset by the runner's own on_experiment_start: set them now
            runner.epoch_step = s.epoch
            runner.batch_step, runner.sample_step = s.resume["batch_step"], s.resume["sample_step"]

    def on_epoch_start(self, runner) -> None:
        self.s.t_epoch = time.monotonic()

    def on_loader_start(self, runner) -> None:
        s = self.s
        sampler = s.train_sampler if runner.is_train_loader else s.val_sampler
        sampler.set_epoch(runner.epoch_step, s.batch if runner.is_train_loader else 0)
        if runner.is_train_loader:
            s.lr = s.optimizer.param_groups[-1]["lr"]
            if s.batch and s.resume is not None:  # mid-epoch resume: continue the RNG stream of the killed run
                set_rng_state(s.resume["rng"])
            s.last_save = time.monotonic()

    def on_batch_end(self, runner) -> None:
        s = self.s
        if not runner.is_train_loader:
            return
        s.loss_sum += runner.batch_metrics["loss"].detach().double() * runner.batch_size
        s.seen += runner.batch_size
        s.batch += 1
        s.step += 1
        for cb in s.user_callbacks:
            getattr(cb, "on_batch_end", lambda *a: None)(s)
        if s.batch < s.n_batches and time.monotonic() - s.last_save >= s.cfg.checkpoint_minutes * 60:
            s.save(runner)
            s.last_save = time.monotonic()

    def on_loader_end(self, runner) -> None:
        if runner.is_train_loader:
            self.s.t_train = time.monotonic() - self.s.t_epoch

    def on_epoch_end(self, runner) -> None:
        s, epoch = self.s, runner.epoch_step
        val = {**runner.epoch_metrics["valid"], **s.metrics_cb.last}
        val.pop("confusion_matrix", None)
        record = {"epoch": epoch, "img_size": size_for_epoch(epoch, s.cfg.img_size, s.cfg.resize_schedule),
                  "lr": s.lr, "train_loss": float(s.loss_sum) / max(s.seen, 1)}
        record.update({f"val_{k}": v for k, v in val.items() if "/" not in k and k not in ("lr", "momentum")})
        record.update({"train_seconds": s.t_train, "seconds": time.monotonic() - s.t_epoch})
        s.history.append(record)
        s.last_val = {**s.metrics_cb.last, "loss": runner.epoch_metrics["valid"]["loss"]}
        value = record[s.cfg.monitor]
        improved = s.best.update(value, epoch)
        runner.need_early_stop = s.early.update(value, epoch)  # the runner stops before the next epoch
        s.epoch, s.batch, s.seen = epoch, 0, 0
        s.loss_sum.zero_()
        s.save(runner, best=improved)
        for cb in s.user_callbacks:
            getattr(cb, "on_epoch_end", lambda *a: None)(s, record)
        if s.early.should_stop:
            print(f"early stopping after epoch {epoch}: no {s.cfg.monitor} improvement for "
                  f"{s.early.wait} epochs (best {s.best.value:.4f} at epoch {s.best.epoch})")


class CatalystState(types.SimpleNamespace):
    """Everything :class:`SeglibStateCallback` reads and writes; also what user callbacks receive (the
    attributes a seglib ``Trainer`` callback uses: ``epoch``, ``batch``, ``step``, ``history``, ``model``,
    ``early``...). ``resume``: what :func:`_restore` kept of ``last.pt`` for later (RNG, runner counters,
    AMP scaler), or None."""

    def state_dict(self, runner) -> dict:
        """The seglib checkpoint (same keys as :meth:`Trainer.state_dict`) plus ``"catalyst"``: the runner's
        counters (``batch_step``/``sample_step`` are restored on resume; ``epoch_step`` is informational)."""
        scaler = getattr(self.engine, "scaler", None)
        return {
            "format": FORMAT, "engine": "catalyst",
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else {},
            "epoch": self.epoch, "batch": self.batch, "step": self.step,
            "train_acc": {"loss_sum": self.loss_sum.detach().cpu(), "seen": self.seen},
            "early_stopping": self.early.state_dict(),
            "best": self.best.state_dict(), "rng": rng_state(), "history": self.history, "last_val": self.last_val,
            "config": self.cfg.to_dict(), "versions": {**versions(), "catalyst": self.catalyst_version},
            "catalyst": {"epoch_step": int(runner.epoch_step), "batch_step": int(runner.batch_step),
                         "sample_step": int(runner.sample_step)},
            "saved_at": time.time(),
        }

    def save(self, runner, best: bool = False) -> None:
        """Atomic ``last.pt`` (keeping ``last.prev.pt``), ``best.pt`` if ``best``, ``history.json``; mirror."""
        state = self.state_dict(runner)
        atomic_save(state, self.ckpt_dir / "last.pt", keep_previous=True)
        if best:
            atomic_save(state, self.ckpt_dir / "best.pt")
        atomic_write_json(self.ws.local / "history.json", self.history)
        mirror(self.ws.local, self.ws.workdir, MIRRORED)


def _restore(s: CatalystState, lr_override: float | None) -> None:
    """Load ``last.pt`` (pulled from WORKDIR first when newer) into ``s``; print what was resumed. Of the
    checkpoint only ``s.resume`` is kept (RNG, runner counters, AMP scaler); the rest is freed here."""
    s.ckpt_dir.mkdir(parents=True, exist_ok=True)
    if s.ws.mirrored:
        remote, local = s.ws.workdir / "checkpoints" / "last.pt", s.ckpt_dir / "last.pt"
        if remote.exists() and (not local.exists() or remote.stat().st_mtime > local.stat().st_mtime):
            mirror(s.ws.workdir, s.ws.local, MIRRORED)
    clean_stale(s.ckpt_dir)
    path = s.ckpt_dir / "last.pt"
    ckpt = load_checkpoint(path, map_location=s.device)
    if ckpt is None:
        if lr_override:
            set_lr(s.optimizer, lr_override)
        return
    check_compatible(s.cfg, s.model, ckpt, path)  # the seglib engine's refusal rules
    changed = config_changes(ckpt, s.cfg)
    s.model.load_state_dict(ckpt["model"])
    s.optimizer.load_state_dict(ckpt["optimizer"])
    if s.scheduler is not None and ckpt.get("scheduler") is not None:
        s.scheduler.load_state_dict(ckpt["scheduler"])
    s.epoch, s.batch, s.step = int(ckpt["epoch"]), int(ckpt["batch"]), int(ckpt["step"])
    s.loss_sum = ckpt["train_acc"]["loss_sum"].to(s.device)
    s.seen = int(ckpt["train_acc"]["seen"])
    s.best.load_state_dict(ckpt["best"])
    s.early.load_state_dict(ckpt["early_stopping"])
    s.history, s.last_val = list(ckpt["history"]), dict(ckpt.get("last_val", {}))
    set_rng_state(ckpt["rng"])
    # a checkpoint of the seglib engine has no runner counters: derive them
    c = ckpt.get("catalyst") or {"batch_step": s.step, "sample_step": s.step * s.cfg.batch_size}
    s.resume = {"rng": ckpt["rng"], "batch_step": int(c["batch_step"]), "sample_step": int(c["sample_step"]),
                "scaler": ckpt.get("scaler")}
    s.resumed_from = {"epoch": s.epoch + 1, "batch": s.batch}
    lr = s.optimizer.param_groups[-1]["lr"]
    print(resume_message(path, s.epoch, s.batch, s.n_batches, lr, s.best.state_dict())
          + f"; engine catalyst (checkpoint written by the {ckpt.get('engine', 'seglib')} engine)")
    if changed:
        print(changed)
    if lr_override:
        print(f"  LR override: {lr:.3g} -> {lr_override:.3g}")
        set_lr(s.optimizer, lr_override)


def train_catalyst(run, lr_override: float | None = None, callbacks=(), progress: bool = True) -> FitResult:
    """Train ``run`` (a prepared :class:`seglib.experiment.Experiment`) with Catalyst's ``SupervisedRunner``.

    Resumes from ``WORKDIR/checkpoints/last.pt`` (written by either engine); does nothing when training
    already finished (``EPOCHS`` reached or early stopping). ``callbacks`` get ``on_batch_end(state)`` and
    ``on_epoch_end(state, record)`` like the seglib Trainer's (``state.step``, ``state.epoch``, ...).

    Returns:
        A :class:`FitResult` like :meth:`Trainer.fit`'s.

    Raises:
        RuntimeError: ``prepare()`` was not called.
        seglib.train.trainer.CheckpointMismatch: ``last.pt`` belongs to another model.
    """
    if not run.splits:
        raise RuntimeError("call prepare() first")
    t0, cfg = time.monotonic(), run.cfg
    device, cuda = run.device, run.device.type == "cuda"
    model = run.build_model().to(device)
    if cuda and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg.optimizer, model, cfg.lr, cfg.weight_decay, cfg.encoder_lr_ratio,
                                cfg.encoder_weight_decay, **cfg.optimizer_kwargs)
    higher = higher_is_better(cfg.monitor)
    scheduler = build_scheduler(cfg.scheduler, optimizer, mode="max" if higher else "min", **cfg.scheduler_kwargs)
    workers = default_num_workers(cuda) if cfg.num_workers is None else cfg.num_workers
    train_set, val_set = run.dataset("train"), run.dataset("val")
    loaders = OrderedDict(
        train=make_loader(train_set, cfg.batch_size, shuffle=True, seed=cfg.seed, num_workers=workers, pin_memory=cuda),
        valid=make_loader(val_set, cfg.batch_size, shuffle=False, seed=cfg.seed, num_workers=workers, pin_memory=cuda))
    s = CatalystState(
        cfg=cfg, ws=run.ws, device=device, model=model, optimizer=optimizer, scheduler=scheduler, engine=None,
        train_sampler=loaders["train"].sampler, val_sampler=loaders["valid"].sampler,
        n_batches=math.ceil(len(train_set) / cfg.batch_size), epoch=0, batch=0, step=0, history=[], last_val={},
        loss_sum=torch.zeros((), dtype=torch.float64, device=device), seen=0, best=BestTracker(cfg.monitor),
        early=EarlyStopping(cfg.monitor, cfg.early_stop_patience), resume=None, resumed_from=None,
        ckpt_dir=run.ws.local / "checkpoints",
        user_callbacks=list(callbacks), metrics_cb=SeglibMetricsCallback(run.metrics_factory),
        catalyst_version=catalyst_compat.require_catalyst().__version__, lr=cfg.lr, t_epoch=0.0, t_train=0.0, last_save=0.0)
    _restore(s, lr_override)
    if s.epoch >= cfg.epochs or s.early.should_stop:
        why = "early stopping" if s.early.should_stop else f"EPOCHS={cfg.epochs}"
        print(f"training already finished ({why}) after {s.epoch} epochs; raise EPOCHS or EARLY_STOP_PATIENCE "
              "to train on")
    else:
        s.engine = catalyst_compat.make_engine(device.type, amp=bool(cfg.amp and cuda))
        if s.resume is not None and s.resume["scaler"] and getattr(s.engine, "scaler", None) is not None:
            s.engine.scaler.load_state_dict(s.resume["scaler"])  # AMP loss scale of the interrupted run
        criterion, loss_cbs = criterion_callbacks(run.loss())
        cbs = [*loss_cbs, *valid_region_metrics(cfg.n_classes, cfg.ignore_index), s.metrics_cb,
               dl.BackwardCallback(metric_key="loss"), dl.OptimizerCallback(metric_key="loss"), SeglibStateCallback(s)]
        if scheduler is not None:
            monitor_key = cfg.monitor[len("val_"):] if cfg.monitor.startswith("val_") else cfg.monitor
            sched_kw = {"loader_key": "valid", "metric_key": monitor_key} if isinstance(
                scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) else {}
            cbs.append(dl.SchedulerCallback(mode="epoch", **sched_kw))
        if cfg.log_images:
            cbs.append(PredictionGridCallback(run.render_grid, cfg.log_images))
        loggers = {"tensorboard": SeglibTensorboardLogger(str(run.tensorboard_dir),
                                                          purge_step=s.epoch + 1 if s.resume is not None else None)}
        loggers["console"] = dl.ConsoleLogger() if progress else QuietConsoleLogger()
        runner = SeglibRunner(input_key="input", output_key="logits", target_key="target", loss_key="loss")
        runner.channels_last = bool(cuda and cfg.channels_last)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar")
                warnings.filterwarnings("ignore", message="distutils Version classes are deprecated")
                runner.train(model=model, engine=s.engine, criterion=criterion, optimizer=optimizer,
                             scheduler=scheduler, loaders=loaders, callbacks=cbs, loggers=loggers, seed=cfg.seed,
                             num_epochs=cfg.epochs, verbose=progress)
        finally:
            mirror(run.ws.local, run.ws.workdir, MIRRORED)
    ws = run.ws.workdir
    return FitResult(history=s.history, epochs_completed=s.epoch, resumed_from=s.resumed_from,
                     best={"metric": s.best.monitor, "value": s.best.value, "epoch": s.best.epoch},
                     stopped_early=s.early.should_stop, seconds=time.monotonic() - t0,
                     checkpoint=ws / "checkpoints" / "last.pt", best_checkpoint=ws / "checkpoints" / "best.pt",
                     tensorboard=ws / "tensorboard", last_val=s.last_val)
