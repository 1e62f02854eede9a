"""The Catalyst callbacks, runner and loggers of ``ENGINE="catalyst"``: criterion callbacks for seglib
losses, seglib metrics and the prediction grid as Catalyst callbacks, and :class:`SeglibStateCallback`, the
bridge from the runner's events to the one :class:`~seglib.train.state.TrainingState`.

Catalyst batch keys (``SupervisedRunner(input_key="input", output_key="logits", target_key="target")``):
``input`` ``float N x 3 x H x W``, ``target`` ``int64 N x H x W`` (class ids), ``logits`` ``float N x C x H x W``,
and on the ``valid`` loader only, from :class:`OneHotScoresCallback`, ``scores``/``target_onehot``
``float N x C x H x W`` (see :func:`valid_region_metrics`).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ..losses import DiceIoUBCELoss
from ..tensors import one_hot, select_rows, to_device
from ..train.checkpoint import set_rng_state
from ..train.trainer import grid_indices
from . import catalyst_compat

catalyst_compat.apply()  # raises CatalystMissing with the install recipe when Catalyst is absent
from catalyst import dl  # noqa: E402
from catalyst.core.callback import CallbackOrder, ICheckpointCallback  # noqa: E402,F401  (re-exported)


class TermLoss(nn.Module):
    """One unweighted term ``name`` of a :class:`~seglib.losses.DiceIoUBCELoss`, as a Catalyst criterion.

    The terms of one batch are computed once and shared through ``cache`` (a dict common to the three
    criteria): the three ``CriterionCallback`` calls on the same ``(logits, target)`` cost one loss
    evaluation, as the fused loss does. Each term is handed out once; the cache empties (dropping its
    references to the batch) when all have been taken.
    """

    def __init__(self, loss: nn.Module, name: str, cache: dict):
        super().__init__()
        self.loss, self.name, self.cache = loss, name, cache

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        c = self.cache
        if c.get("logits") is not logits or c.get("target") is not target or self.name not in c["terms"]:
            c.update(logits=logits, target=target, terms=self.loss.terms(logits, target))
        value = c["terms"].pop(self.name)
        if not c["terms"]:
            c.clear()
        return value


def criterion_callbacks(loss: nn.Module) -> tuple[dict | nn.Module, list]:
    """Catalyst criterion and callbacks computing ``loss`` as the original did.

    seglib's ``dice_iou_bce`` (:class:`~seglib.losses.DiceIoUBCELoss`) becomes one ``CriterionCallback`` per
    term (``loss_dice``, ``loss_iou``, ``loss_bce``) plus a weighted-sum ``MetricAggregationCallback`` into
    ``loss`` (weights ``loss.w``, default 1, 1, 0.8); any other loss is one ``CriterionCallback`` into ``loss``.

    Returns:
        ``(criterion, callbacks)``: a dict of criteria (keyed by term) or the loss itself, and the callbacks.
    """
    if isinstance(loss, DiceIoUBCELoss):
        names = ("dice", "iou", "bce")
        cache: dict = {}
        criterion = {n: TermLoss(loss, n, cache) for n in names}
        cbs = [dl.CriterionCallback(input_key="logits", target_key="target", metric_key=f"loss_{n}", criterion_key=n)
               for n in names]
        cbs.append(dl.MetricAggregationCallback(metric_key="loss", mode="weighted_sum",
                                                metrics={f"loss_{n}": float(w) for n, w in zip(names, loss.w)}))
        return criterion, cbs
    return loss, [dl.CriterionCallback(input_key="logits", target_key="target", metric_key="loss")]


class OneHotScoresCallback(dl.Callback):
    """Adds ``scores`` (sigmoid of the logits) and ``target_onehot`` to the batch for Catalyst's Dice/IoU
    callbacks (``float N x C x H x W``; ``ignore_index`` pixels zero in both, so they count nowhere)."""

    def __init__(self, n_classes: int, ignore_index: int | None):
        super().__init__(order=CallbackOrder.Internal)
        self.n_classes, self.ignore_index = n_classes, ignore_index

    def on_batch_end(self, runner) -> None:
        onehot, valid = one_hot(runner.batch["target"], self.n_classes, self.ignore_index)
        runner.batch["scores"] = torch.sigmoid(runner.batch["logits"].detach().float()) * valid
        runner.batch["target_onehot"] = onehot


def valid_region_metrics(n_classes: int, ignore_index: int | None) -> list:
    """Catalyst's sigmoid ``DiceCallback``/``IOUCallback`` (threshold 0.5, logged as ``catalyst_dice`` and
    ``catalyst_iou``) and the :class:`OneHotScoresCallback` that feeds them, all enabled on the ``valid``
    loader only (``ControlFlowCallbackWrapper(loaders="valid")``).

    Catalyst 22.4's ``RegionBasedMetric.update`` copies the whole ``N x C x H x W`` scores and one-hot
    targets to the CPU every batch; on the train loader that cost the GPU step time for numbers nobody
    read, so the train step does none of this work (seglib's own metrics give Dice/mIoU as well).
    """
    cbs = [OneHotScoresCallback(n_classes, ignore_index),
           *(m(input_key="scores", target_key="target_onehot", threshold=0.5, prefix="catalyst_", log_on_batch=False)
             for m in (dl.DiceCallback, dl.IOUCallback))]
    return [dl.ControlFlowCallbackWrapper(cb, loaders="valid") for cb in cbs]


class SeglibMetricsCallback(dl.Callback):
    """seglib's epoch-level confusion-matrix metrics on the ``valid`` loader, into ``runner.loader_metrics``
    (``miou``, ``dice``, ``pixel_accuracy``); the full result (per class, confusion matrix) in :attr:`last`."""

    def __init__(self, metrics_factory):
        super().__init__(order=CallbackOrder.Metric)
        self.metrics_factory, self.metrics, self.last = metrics_factory, None, {}

    def on_loader_start(self, runner) -> None:
        self.metrics = self.metrics_factory() if runner.is_valid_loader else None

    def on_batch_end(self, runner) -> None:
        if self.metrics is not None:
            self.metrics.update(runner.batch["logits"].detach(), runner.batch["target"])

    def on_loader_end(self, runner) -> None:
        if self.metrics is not None:
            self.last = self.metrics.compute()
            runner.loader_metrics.update({k: v for k, v in self.last.items() if isinstance(v, float)})


class PredictionGridCallback(dl.Callback):
    """Logs ``render_grid(inputs, outputs, targets)`` of ``n`` fixed validation samples (spread evenly over the
    split, as the seglib engine shows) each epoch to TensorBoard as ``predictions`` (``runner.log_image``;
    the ``valid`` folder, step = epoch)."""

    def __init__(self, render_grid, n: int):
        super().__init__(order=CallbackOrder.Metric)
        self.render_grid, self.n, self.shown, self.wanted = render_grid, n, [], set()

    def on_loader_start(self, runner) -> None:
        self.shown = []
        if runner.is_valid_loader:
            self.wanted = grid_indices(len(runner.loader.dataset), self.n)

    def on_batch_end(self, runner) -> None:
        if runner.is_valid_loader and self.wanted:
            b = runner.batch
            rows = [r for r, i in enumerate(b["index"].tolist()) if i in self.wanted]
            if rows:
                self.shown.append(tuple(select_rows(b[key], rows) for key in ("input", "logits", "target")))

    def on_loader_end(self, runner) -> None:
        if runner.is_valid_loader and self.shown:
            grid = self.render_grid(*(torch.cat(parts) for parts in zip(*self.shown)))
            if grid is not None:
                runner.log_image(tag="predictions", image=grid, scope="epoch")


class SeglibRunner(dl.SupervisedRunner):
    """``SupervisedRunner`` that keeps seglib's loaders as they are (accelerate's loader wrapper would reset
    their :class:`~seglib.data.datasets.EpochSampler` to its own epoch counter) and moves each batch to
    the engine's device itself. Single-device training only (no DDP sharding)."""

    channels_last = False  # set True to feed 4-D float inputs in channels_last (CUDA)

    def _setup_loaders(self) -> None:
        self.loaders = self.get_loaders()

    def handle_batch(self, batch) -> None:
        super().handle_batch(to_device(batch, self.engine.device, self.channels_last))


class SeglibTensorboardLogger(dl.TensorboardLogger):
    """Catalyst's TensorBoard logger (one folder per loader) that drops events from ``purge_step`` on, so a
    resumed run does not show the killed run's partial epoch twice (epoch-scope metrics only)."""

    def __init__(self, logdir: str, purge_step: int | None = None):
        super().__init__(logdir=logdir, use_logdir_postfix=False, log_batch_metrics=False, log_epoch_metrics=True)
        self.purge_step = purge_step

    def _check_loader_key(self, loader_key: str):
        if loader_key not in self.loggers:
            from tensorboardX import SummaryWriter

            self.loggers[loader_key] = SummaryWriter(os.path.join(self.logdir, loader_key), purge_step=self.purge_step)


class QuietConsoleLogger(dl.ConsoleLogger):
    """Takes the place of the ``ConsoleLogger`` that Catalyst's Runner adds by default (``progress=False``)."""

    def log_metrics(self, *args, **kwargs) -> None:
        pass


class SeglibStateCallback(ICheckpointCallback):
    """Drives the :class:`~seglib.train.state.TrainingState` from the runner's events, after every other
    callback (so Catalyst's scheduler has stepped before the state counts early stopping and saves).

    Per train batch the state counts the step (callbacks, mid-epoch ``last.pt``); per validation batch it
    adds the loss to its validation mean; at each loader's end that mean (weighted by valid samples, the
    seglib rule) replaces Catalyst's ``loss`` for the scheduler and the loggers; at the epoch's end the
    state records it and ``runner.need_early_stop`` follows its early stopping. Being an
    ``ICheckpointCallback`` keeps Catalyst from adding its own checkpointing.

    Args:
        state: the run's state (``state.runner`` is set to the runner for its checkpoint counters).
        metrics: the :class:`SeglibMetricsCallback` whose ``last`` result is the epoch's validation metrics.
        resume: None on a fresh start, else ``{"rng", "batch_step", "sample_step"}`` of the checkpoint: the
            runner counters (reset by the runner at experiment start) and, for a mid-epoch resume, the RNG
            state to continue from (Catalyst reseeds at every loader start).
    """

    def __init__(self, state, metrics: SeglibMetricsCallback, resume: dict | None):
        super().__init__()
        self.order = CallbackOrder.External + 10
        self.state, self.metrics, self.resume = state, metrics, resume

    def on_experiment_start(self, runner) -> None:
        """Give the state the runner; on resume, set the counters the runner has just reset."""
        self.state.runner = runner
        if self.resume is not None:
            runner.epoch_step = self.state.epoch
            runner.batch_step, runner.sample_step = self.resume["batch_step"], self.resume["sample_step"]

    def on_loader_start(self, runner) -> None:
        """``begin_train`` (after restoring the killed run's RNG on a mid-epoch resume) or ``begin_valid``."""
        if not runner.is_train_loader:
            self.state.begin_valid(runner.epoch_step)
            return
        if self.state.batch and self.resume is not None:  # mid-epoch resume: the killed run's RNG stream
            set_rng_state(self.resume["rng"])
        self.state.begin_train(runner.epoch_step)

    def on_batch_end(self, runner) -> None:
        """Train: ``end_batch`` (the step is done: Backward/OptimizerCallback ran before); valid: the loss mean."""
        loss, target = runner.batch_metrics["loss"], runner.batch["target"]
        if runner.is_train_loader:
            self.state.end_batch(loss, target)
        else:
            self.state.val_mean.add(loss, target, self.state.cfg.ignore_index)

    def on_loader_end(self, runner) -> None:
        """The loader's ``loss`` becomes the state's epoch mean (seen by the scheduler and the loggers)."""
        mean = self.state.train_mean if runner.is_train_loader else self.state.val_mean
        runner.loader_metrics["loss"] = mean.value()

    def on_epoch_end(self, runner) -> None:
        """``end_epoch`` (Catalyst's SchedulerCallback has stepped); stop the runner on early stopping."""
        self.state.end_epoch(runner.epoch_step, self.metrics.last, extra=runner.epoch_metrics["valid"],
                             step_scheduler=False)
        runner.need_early_stop = self.state.early.should_stop  # the runner stops before the next epoch
