"""``ENGINE="catalyst"``: the JetCar notebook's loop as the original ran it, over seglib's one training state.

The original (StefansAI/JetCar ``jetcar_pytorch_unet_mobilenetv2_catalyst.ipynb``, catalyst 20.12) trained
with a ``SupervisedRunner``: one ``CriterionCallback`` per loss term (Dice, IoU, BCE) and a
``MetricAggregationCallback(mode="weighted_sum", {"loss_dice": 1, "loss_iou": 1, "loss_bce": 0.8})``,
``Lookahead(RAdam)`` with the encoder at LR/2, ``ReduceLROnPlateau(factor=0.25, patience=5)`` through
the scheduler callback, early stopping, Dice and IoU metric callbacks and Catalyst's TensorBoard logger.
:func:`train_catalyst` builds the same runner on Catalyst 22.4 around a
:class:`~seglib.train.state.TrainingState`, the object the seglib :class:`~seglib.train.trainer.Trainer`
loops over: model, optimizer, scheduler, loaders, seeding, restore, epoch record, best and early stopping
(seglib's rule, through ``runner.need_early_stop``) and checkpoints are the same code, so only the loop
differs and either engine resumes the other's ``last.pt``. Catalyst's parts are in
:mod:`~seglib.integrations.catalyst_callbacks`: :class:`~.catalyst_callbacks.SeglibStateCallback` drives the
state from the runner's events; ``PredictionGridCallback`` logs the validation prediction grid.

Validation scores (mIoU, Dice, pixel accuracy, per class) come from seglib's metrics
(``SeglibMetricsCallback``); Catalyst's own sigmoid Dice/IoU callbacks are logged as ``catalyst_dice``
and ``catalyst_iou`` (validation only). Single device only (CPU, or one GPU with float16 AMP); no DDP.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict

import torch

from ..train.state import FitResult, TrainingState
from . import catalyst_compat
from .catalyst_callbacks import (  # applies the compat fixes, then imports catalyst
    PredictionGridCallback,
    QuietConsoleLogger,
    SeglibMetricsCallback,
    SeglibRunner,
    SeglibStateCallback,
    SeglibTensorboardLogger,
    criterion_callbacks,
    dl,
    valid_region_metrics,
)


class CatalystState(TrainingState):
    """The :class:`~seglib.train.state.TrainingState` of a Catalyst run: its checkpoint adds ``"catalyst"``,
    the runner's counters (``batch_step``/``sample_step`` are restored on resume; ``epoch_step`` is
    informational), and the Catalyst version. User callbacks receive this object."""

    runner = None  # set by SeglibStateCallback at experiment start

    def state_dict(self) -> dict:
        """:meth:`TrainingState.state_dict` plus ``"catalyst"`` (the runner's counters, all ``int``)."""
        state = super().state_dict()
        state["versions"]["catalyst"] = catalyst_compat.require_catalyst().__version__
        r = self.runner
        if r is not None:
            state["catalyst"] = {"epoch_step": int(r.epoch_step), "batch_step": int(r.batch_step),
                                 "sample_step": int(r.sample_step)}
        return state


def train_catalyst(run, lr_override: float | None = None, callbacks=(), progress: bool = True,
                   fine_tune_from=None) -> FitResult:
    """Train ``run`` (a prepared :class:`seglib.experiment.Experiment`) with Catalyst's ``SupervisedRunner``.

    Resumes from ``WORKDIR/checkpoints/last.pt`` (written by either engine); does nothing when training
    already finished (``EPOCHS`` reached or early stopping). ``callbacks`` get ``on_batch_end(state)`` and
    ``on_epoch_end(state, record)`` as the seglib Trainer's do. The run's data fingerprint
    (``run.data_fingerprint()``) and ``fine_tune_from`` go to the state as in the seglib engine; the copy to
    WORKDIR is waited for before this returns.

    Returns:
        A :class:`~seglib.train.state.FitResult` like :meth:`Trainer.fit`'s.

    Raises:
        RuntimeError: ``prepare()`` was not called.
        ValueError: ``MONITOR`` is not a key this task produces (before any training).
        seglib.train.state.CheckpointMismatch, DataMismatch, FineTuneError: see ``TrainingState.restore``.
        seglib.train.mirror.MirrorError: the copy to WORKDIR failed twice.
    """
    if not run.splits:
        raise RuntimeError("call prepare() first")
    cfg = run.cfg
    s = CatalystState(cfg, run.build_model(), run.dataset("train"), run.dataset("val"), run.ws,
                      metrics_factory=run.metrics_factory, callbacks=callbacks, lr_override=lr_override,
                      device=str(run.device), engine="catalyst", data=run.data_fingerprint(),
                      fine_tune_from=fine_tune_from, classes=run.class_info())
    ckpt = s.restore()
    resume = None
    if ckpt is not None:  # a checkpoint of the seglib engine has no runner counters: derive them
        c = ckpt.get("catalyst") or {"batch_step": s.step, "sample_step": s.step * cfg.batch_size}
        resume = {"rng": ckpt["rng"], "batch_step": int(c["batch_step"]), "sample_step": int(c["sample_step"])}
    if s.already_finished():
        s.sync_workdir()  # what an earlier, failed copy left out
        return s.result()
    engine = catalyst_compat.make_engine(s.device.type, amp=s.amp)
    if getattr(engine, "scaler", None) is not None:  # the engine's AMP scaler is the one that steps
        if ckpt is not None and ckpt.get("scaler"):
            engine.scaler.load_state_dict(ckpt["scaler"])
        s.scaler = engine.scaler
    del ckpt
    criterion, loss_cbs = criterion_callbacks(run.loss())
    metrics_cb = SeglibMetricsCallback(run.metrics_factory)
    cbs = [*loss_cbs, *valid_region_metrics(cfg.n_classes, cfg.ignore_index), metrics_cb,
           dl.BackwardCallback(metric_key="loss"), dl.OptimizerCallback(metric_key="loss"),
           SeglibStateCallback(s, metrics_cb, resume)]
    if s.scheduler is not None:
        monitor_key = cfg.monitor[len("val_"):] if cfg.monitor.startswith("val_") else cfg.monitor
        sched_kw = {"loader_key": "valid", "metric_key": monitor_key} if isinstance(
            s.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) else {}
        cbs.append(dl.SchedulerCallback(mode="batch" if s.per_step_scheduler else "epoch", **sched_kw))
    if cfg.log_images:
        cbs.append(PredictionGridCallback(run.render_grid, cfg.log_images))
    loggers = {"tensorboard": SeglibTensorboardLogger(str(s.tb_dir), purge_step=s.epoch + 1 if resume else None),
               "console": dl.ConsoleLogger() if progress else QuietConsoleLogger()}
    runner = SeglibRunner(input_key="input", output_key="logits", target_key="target", loss_key="loss")
    runner.channels_last = s.channels_last
    ok = False
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar")
            warnings.filterwarnings("ignore", message="distutils Version classes are deprecated")
            runner.train(model=s.model, engine=engine, criterion=criterion, optimizer=s.optimizer,
                         scheduler=s.scheduler, loaders=OrderedDict(train=s.train_loader, valid=s.val_loader),
                         callbacks=cbs, loggers=loggers, seed=cfg.seed, num_epochs=cfg.epochs, verbose=progress)
        ok = True
    finally:
        s.sync_workdir(raise_errors=ok)
    return s.result()
