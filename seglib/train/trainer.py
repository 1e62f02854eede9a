"""The seglib engine: a plain PyTorch loop over :class:`~seglib.train.state.TrainingState`.

Per epoch: train over every batch (AMP and channels_last on CUDA), validate, then let the state record
the epoch (history, TensorBoard, scheduler, best/early stopping, ``checkpoints/last.pt`` and ``best.pt``
written atomically and copied to WORKDIR in the background; :meth:`Trainer.fit` waits for the copy). Mid-epoch, ``last.pt`` is also written every
``checkpoint_minutes``. Running :meth:`Trainer.fit` again on the same folder resumes from ``last.pt``
at the exact batch, with model, optimizer, scheduler, AMP scaler, early stopping, best value, history
and all RNG states restored; on CPU the final weights equal an uninterrupted run's bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..config import TrainConfig
from ..data.transforms import size_for_epoch
from ..runtime import Workspace
from ..tensors import concat_rows, select_rows, to_device
from .state import CheckpointMismatch, FitResult, TrainingState  # noqa: F401  (CheckpointMismatch re-exported)


def grid_indices(n: int, k: int) -> set[int]:
    """The fixed validation samples shown in the TensorBoard grid: ``k`` indices spread evenly over ``0..n-1``."""
    return set(np.linspace(0, n - 1, min(k, n)).round().astype(int).tolist()) if k > 0 and n > 0 else set()


class Trainer(TrainingState):
    """Train ``model`` on ``train_set``/``val_set`` as ``config`` says, resumably, in ``workspace.local``.

    Args:
        config, model, train_set, val_set, workspace, metrics_factory, callbacks, lr_override, device, data,
            fine_tune_from: see
            :class:`~seglib.train.state.TrainingState` (callbacks receive this trainer).
        loss_fn: ``(outputs, target) -> 0-dim tensor``, the batch's mean loss; ``outputs`` are the model's for
            ``batch["input"]`` (logits ``float N x C x H x W``, or a tuple for multi-task models).
        render_grid: ``(inputs, outputs, targets) -> uint8 H x W x 3`` image for TensorBoard, applied to
            ``config.log_images`` validation samples spread over the split, or None.
        progress: show tqdm bars.

    Raises:
        ValueError: ``config.monitor`` is not a key this run produces (raised here, before any training).
        CheckpointMismatch, DataMismatch, FineTuneError: (from :meth:`fit`) see
            :meth:`~seglib.train.state.TrainingState.restore`.
        seglib.train.mirror.MirrorError: (from :meth:`fit`) the copy to WORKDIR failed twice.
    """

    def __init__(self, config: TrainConfig, model: nn.Module, train_set, val_set, workspace: Workspace, *,
                 loss_fn: Callable, metrics_factory: Callable, render_grid: Callable | None = None,
                 callbacks: Sequence = (), lr_override: float | None = None, device: str | None = None,
                 progress: bool = True, data: dict | None = None, fine_tune_from=None, classes: dict | None = None):
        super().__init__(config, model, train_set, val_set, workspace, metrics_factory=metrics_factory,
                         callbacks=callbacks, lr_override=lr_override, device=device, engine="seglib", data=data,
                         fine_tune_from=fine_tune_from, classes=classes)
        self.loss_fn, self.render_grid, self.progress = loss_fn, render_grid, progress and self.main

    def fit(self) -> FitResult:
        """Train until ``config.epochs`` or early stopping; resume first if a checkpoint exists; do nothing
        (but say so) when the run already finished."""
        self.restore()
        if self.already_finished():
            self.sync_workdir()  # what an earlier, failed copy left out
            return self.result()
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(self.tb_dir), purge_step=self.epoch + 1) if self.main else None  # rank 0 writes
        ok = False
        try:
            epochs = tqdm(range(self.epoch + 1, self.cfg.epochs + 1), desc="epochs", initial=self.epoch,
                          total=self.cfg.epochs, disable=not self.progress)
            for epoch in epochs:
                self._train_epoch(epoch)
                metrics, grid = self._validate(epoch)
                record = self.end_epoch(epoch, metrics, writer=writer, grid=grid)
                epochs.set_postfix({self.cfg.monitor: f"{record[self.cfg.monitor]:.4f}",
                                    "best": "-" if self.best.value is None else f"{self.best.value:.4f}"})
                if self.early.should_stop:
                    break
            ok = True
        finally:
            if writer is not None:
                writer.close()
            self.sync_workdir(raise_errors=ok)  # wait for the copy to WORKDIR (reported, not raised, on an error)
        return self.result()

    def _forward(self, batch: dict, net: nn.Module | None = None):
        """``(inputs, target, outputs, loss)`` of one batch on the device (autocast on CUDA with AMP) through ``net``
        (training: the DDP wrapper in data-parallel training; default the model)."""
        inputs = to_device(batch["input"], self.device, self.channels_last)
        target = to_device(batch["target"], self.device)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            outputs = (self.model if net is None else net)(inputs)
            loss = self.loss_fn(outputs, target)
        return inputs, target, outputs, loss

    def _train_epoch(self, epoch: int) -> None:
        self.model.train()
        self.begin_train(epoch)
        size = size_for_epoch(epoch, self.cfg.img_size, self.cfg.resize_schedule)
        every = max(1, self.n_batches // 20)
        bar = tqdm(total=self.n_batches, initial=self.batch, desc=f"epoch {epoch} ({size}px)", leave=False,
                   disable=not self.progress)
        for batch in self.train_loader:
            _, target, _, loss = self._forward(batch, self.net)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.per_step_scheduler:
                self.scheduler.step()
            self.end_batch(loss, target)
            bar.update(1)
            if self.progress and self.batch % every == 0:
                bar.set_postfix(loss=f"{self.train_mean.value():.4f}")
        bar.close()

    @torch.no_grad()
    def _validate(self, epoch: int) -> tuple[dict, np.ndarray | None]:
        """``(metrics_factory().compute(), grid)`` of one validation pass; the loss goes to ``val_mean``."""
        self.model.eval()
        self.begin_valid(epoch)
        metrics = self.metrics_factory()
        wanted = grid_indices(len(self.val_loader.dataset), self.cfg.log_images if self.render_grid and self.main else 0)
        shown = [None, None, None]
        for batch in self.val_loader:
            inputs, target, outputs, loss = self._forward(batch)
            self.val_mean.add(loss, target, self.cfg.ignore_index)
            metrics.update(outputs, target)
            rows = [r for r, i in enumerate(batch["index"].tolist()) if i in wanted] if wanted else []
            if rows:
                shown = [concat_rows(a, select_rows(b, rows)) for a, b in zip(shown, (inputs, outputs, target))]
        grid = self.render_grid(*shown) if self.render_grid and shown[0] is not None else None
        return metrics.compute(), grid
