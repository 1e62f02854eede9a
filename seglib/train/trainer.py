"""The one trainer: a plain PyTorch loop that survives any interruption and resumes exactly.

Per epoch: train over every batch (AMP and channels_last on CUDA), validate, log to TensorBoard, step
the scheduler, update best/early stopping, then write ``checkpoints/last.pt`` (and ``best.pt`` on
improvement) atomically and mirror to WORKDIR. Mid-epoch, ``last.pt`` is also written every
``checkpoint_minutes``. Running :meth:`Trainer.fit` again on the same folder resumes from ``last.pt``
at the exact batch, with model, optimizer, scheduler, AMP scaler, early stopping, best value, history
and all RNG states restored; on CPU the final weights equal an uninterrupted run's bit for bit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..config import MODEL_FIELDS, TrainConfig, config_diff
from ..data.datasets import make_loader
from ..data.transforms import size_for_epoch
from ..metrics import higher_is_better
from ..runtime import Workspace, default_num_workers, pick_device, seed_everything, versions
from .callbacks import BestTracker, EarlyStopping
from .checkpoint import (
    atomic_save,
    atomic_write_json,
    clean_stale,
    load_checkpoint,
    mirror,
    resume_message,
    rng_state,
    set_rng_state,
)
from .optim import build_optimizer, build_scheduler, set_lr

FORMAT = "seglib-checkpoint/1"
MIRRORED = ["checkpoints/last.pt", "checkpoints/best.pt", "tensorboard", "history.json"]


class CheckpointMismatch(ValueError):
    """A checkpoint belongs to a different model than the current configuration asks for."""


def check_compatible(cfg: TrainConfig, model: nn.Module, ckpt: dict, path: Path) -> None:
    """Raise :class:`CheckpointMismatch` if ``ckpt`` (loaded from ``path``) was trained with another model
    than ``cfg``/``model`` (another :data:`~seglib.config.MODEL_FIELDS` value or parameter names/shapes).
    Both engines apply this rule before resuming."""
    diff = {k: v for k, v in config_diff(ckpt.get("config", {}), cfg.to_dict()).items() if k in MODEL_FIELDS}
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in ckpt["model"].items()}
    if diff or own != theirs:
        detail = "; ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in diff.items())
        if not diff:
            bad = sorted(set(own) ^ set(theirs)) or [k for k in own if own[k] != theirs.get(k)]
            detail = f"parameter names/shapes differ (e.g. {bad[:3]})"
        raise CheckpointMismatch(
            f"checkpoint {path} belongs to a different model ({detail}). Set the model parameters back to "
            f"resume it, or give this run another EXPERIMENT/WORKDIR to start fresh; the checkpoint is kept."
        )


def config_changes(ckpt: dict, cfg: TrainConfig) -> str | None:
    """The line a resumed run prints about settings changed since ``ckpt`` was written (``lr`` aside: the
    checkpoint's optimizer state decides it), or None when nothing changed."""
    changed = {k: v for k, v in config_diff(ckpt.get("config", {}), cfg.to_dict()).items() if k != "lr"}
    if not changed:
        return None
    return "  configuration changes since the checkpoint: " + ", ".join(
        f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())


def to_device(x, device: torch.device, channels_last: bool = False):
    """Move a tensor, or dict/list/tuple of tensors, to ``device`` (non-blocking; 4-D float tensors
    optionally in channels_last)."""
    if isinstance(x, torch.Tensor):
        x = x.to(device, non_blocking=True)
        if channels_last and x.dim() == 4 and x.is_floating_point():
            x = x.contiguous(memory_format=torch.channels_last)
        return x
    if isinstance(x, dict):
        return {k: to_device(v, device, channels_last) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(to_device(v, device, channels_last) for v in x)
    return x


def _batch_size(x) -> int:
    if isinstance(x, torch.Tensor):
        return x.shape[0]
    return _batch_size(next(iter(x.values())) if isinstance(x, dict) else x[0])


def grid_indices(n: int, k: int) -> set[int]:
    """The fixed validation samples shown in the TensorBoard grid: ``k`` indices spread evenly over ``0..n-1``."""
    return set(np.linspace(0, n - 1, min(k, n)).round().astype(int).tolist()) if k > 0 and n > 0 else set()


def select_rows(x, rows: list[int]):
    """Rows ``rows`` of a (nested) batch, detached on the CPU (floating tensors as float32)."""
    if isinstance(x, torch.Tensor):
        x = x[rows].detach().cpu()
        return x.float() if x.is_floating_point() else x
    if isinstance(x, dict):
        return {k: select_rows(v, rows) for k, v in x.items()}
    return type(x)(select_rows(v, rows) for v in x)


def _cat(a, b):
    if a is None:
        return b
    if isinstance(a, torch.Tensor):
        return torch.cat([a, b])
    if isinstance(a, dict):
        return {k: _cat(a[k], b[k]) for k in a}
    return type(a)(_cat(x, y) for x, y in zip(a, b))


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` did: ``resumed_from`` is None or ``{"epoch", "batch"}`` (epoch in
    progress, batches already done); ``best`` is ``{"metric", "value", "epoch"}``."""

    history: list[dict]
    epochs_completed: int
    resumed_from: dict | None
    best: dict
    stopped_early: bool
    seconds: float
    checkpoint: Path
    best_checkpoint: Path
    tensorboard: Path
    last_val: dict = field(default_factory=dict)


class Trainer:
    """Train ``model`` on ``train_set``/``val_set`` as ``config`` says, resumably, in ``workspace.local``.

    Args:
        config: the run configuration (saved in every checkpoint).
        model: returns outputs for ``batch["input"]`` (logits ``N x C x H x W``, or a tuple for
            multi-task models).
        train_set, val_set: datasets indexed by ``(epoch, index)`` keys, items ``{"input", "target", "index"}``.
        workspace: folders; checkpoints in ``local/checkpoints``, TensorBoard in ``local/tensorboard``,
            mirrored to ``workdir``.
        loss_fn: ``(outputs, target) -> scalar tensor``.
        metrics_factory: ``() -> object`` with ``update(outputs, target)`` and ``compute() -> dict``.
        render_grid: ``(inputs, outputs, targets) -> uint8 H x W x 3`` image for TensorBoard, applied to
            the first ``config.log_images`` validation samples, or None.
        callbacks: objects with optional ``on_batch_end(trainer)`` / ``on_epoch_end(trainer, record)``.
        lr_override: set every group's LR to this (times its encoder ratio) after restoring.
        device: default CUDA if available.
        progress: show tqdm bars.

    Raises:
        CheckpointMismatch: ``last.pt`` was trained with other model fields or parameter shapes.
    """

    def __init__(self, config: TrainConfig, model: nn.Module, train_set, val_set, workspace: Workspace, *,
                 loss_fn: Callable, metrics_factory: Callable, render_grid: Callable | None = None,
                 callbacks: Sequence = (), lr_override: float | None = None, device: str | None = None,
                 progress: bool = True):
        self.cfg, self.ws = config, workspace
        self.device = pick_device(device)
        cuda = self.device.type == "cuda"
        self.amp = bool(config.amp and cuda)
        self.channels_last = bool(config.channels_last and cuda)
        self.model = model.to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loss_fn, self.metrics_factory, self.render_grid = loss_fn, metrics_factory, render_grid
        self.callbacks, self.lr_override, self.progress = list(callbacks), lr_override, progress
        self.optimizer = build_optimizer(config.optimizer, model, config.lr, config.weight_decay,
                                         config.encoder_lr_ratio, config.encoder_weight_decay, **config.optimizer_kwargs)
        mode = "max" if higher_is_better(config.monitor) else "min"
        self.scheduler = build_scheduler(config.scheduler, self.optimizer, mode=mode, **config.scheduler_kwargs)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.best = BestTracker(config.monitor)
        self.early = EarlyStopping(config.monitor, config.early_stop_patience)
        workers = default_num_workers(cuda) if config.num_workers is None else config.num_workers
        self.train_loader = make_loader(train_set, config.batch_size, shuffle=True, seed=config.seed,
                                        num_workers=workers, pin_memory=cuda)
        self.val_loader = make_loader(val_set, config.batch_size, shuffle=False, seed=config.seed,
                                      num_workers=workers, pin_memory=cuda)
        self.n_batches = math.ceil(len(train_set) / config.batch_size)
        self.epoch = 0  # epochs completed
        self.batch = 0  # batches done in the epoch in progress
        self.step = 0  # optimizer steps in total
        self.history: list[dict] = []
        self.last_val: dict = {}
        self._loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self._seen = 0
        self.ckpt_dir = workspace.local / "checkpoints"
        self.tb_dir = workspace.local / "tensorboard"
        self.resumed_from: dict | None = None

    # ----------------------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """The full training state (``weights_only``-loadable; ``"model"`` is the model's state_dict)."""
        return {
            "format": FORMAT,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch, "batch": self.batch, "step": self.step,
            "train_acc": {"loss_sum": self._loss_sum.detach().cpu(), "seen": self._seen},
            "early_stopping": self.early.state_dict(),
            "best": self.best.state_dict(),
            "rng": rng_state(),
            "history": self.history,
            "last_val": self.last_val,
            "config": self.cfg.to_dict(),
            "versions": versions(),
            "saved_at": time.time(),
        }

    def load_state_dict(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt.get("scheduler") is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.batch, self.step = int(ckpt["epoch"]), int(ckpt["batch"]), int(ckpt["step"])
        self._loss_sum = ckpt["train_acc"]["loss_sum"].to(self.device)
        self._seen = int(ckpt["train_acc"]["seen"])
        self.early.load_state_dict(ckpt["early_stopping"])
        self.early.patience = self.cfg.early_stop_patience
        self.best.load_state_dict(ckpt["best"])
        self.history = list(ckpt["history"])
        self.last_val = dict(ckpt.get("last_val", {}))
        set_rng_state(ckpt["rng"])

    def _restore(self) -> None:
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        if self.ws.mirrored:
            remote = self.ws.workdir / "checkpoints" / "last.pt"
            local = self.ckpt_dir / "last.pt"
            if remote.exists() and (not local.exists() or remote.stat().st_mtime > local.stat().st_mtime):
                mirror(self.ws.workdir, self.ws.local, MIRRORED)
        clean_stale(self.ckpt_dir)
        path = self.ckpt_dir / "last.pt"
        ckpt = load_checkpoint(path, map_location=self.device)
        if ckpt is None:
            seed_everything(self.cfg.seed)
            if self.lr_override:
                set_lr(self.optimizer, self.lr_override)
            return
        check_compatible(self.cfg, self.model, ckpt, path)
        changed = config_changes(ckpt, self.cfg)
        self.load_state_dict(ckpt)
        self.resumed_from = {"epoch": self.epoch + 1, "batch": self.batch}
        lr = self.optimizer.param_groups[-1]["lr"]
        print(resume_message(path, self.epoch, self.batch, self.n_batches, lr, self.best.state_dict()))
        if changed:
            print(changed)
        if self.lr_override:
            print(f"  LR override: {lr:.3g} -> {self.lr_override:.3g}")
            set_lr(self.optimizer, self.lr_override)

    def save(self, best: bool = False) -> None:
        """Write ``last.pt`` (keeping ``last.prev.pt``), ``best.pt`` if ``best``, ``history.json``; mirror."""
        state = self.state_dict()
        atomic_save(state, self.ckpt_dir / "last.pt", keep_previous=True)
        if best:
            atomic_save(state, self.ckpt_dir / "best.pt")
        atomic_write_json(self.ws.local / "history.json", self.history)
        mirror(self.ws.local, self.ws.workdir, MIRRORED)

    @property
    def finished(self) -> bool:
        return self.epoch >= self.cfg.epochs or self.early.should_stop

    # ----------------------------------------------------------------------------------- loop
    def fit(self) -> FitResult:
        """Train until ``config.epochs`` or early stopping; resume first if a checkpoint exists."""
        t0 = time.monotonic()
        self._restore()
        if self.finished:
            why = "early stopping" if self.early.should_stop else f"EPOCHS={self.cfg.epochs}"
            print(f"training already finished ({why}) after {self.epoch} epochs; raise EPOCHS or "
                  "EARLY_STOP_PATIENCE to train on")
        else:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.tb_dir), purge_step=self.epoch + 1)
            try:
                self._loop(writer)
            finally:
                writer.close()
                mirror(self.ws.local, self.ws.workdir, MIRRORED)
        return FitResult(
            history=self.history, epochs_completed=self.epoch, resumed_from=self.resumed_from,
            best={"metric": self.best.monitor, "value": self.best.value, "epoch": self.best.epoch},
            stopped_early=self.early.should_stop, seconds=time.monotonic() - t0,
            checkpoint=self.ws.workdir / "checkpoints" / "last.pt",
            best_checkpoint=self.ws.workdir / "checkpoints" / "best.pt",
            tensorboard=self.ws.workdir / "tensorboard", last_val=self.last_val,
        )

    def _loop(self, writer) -> None:
        epochs = tqdm(range(self.epoch + 1, self.cfg.epochs + 1), desc="epochs", initial=self.epoch,
                      total=self.cfg.epochs, disable=not self.progress)
        for epoch in epochs:
            size = size_for_epoch(epoch, self.cfg.img_size, self.cfg.resize_schedule)
            t_epoch = time.monotonic()
            train_loss = self._train_epoch(epoch, size)
            t_train = time.monotonic() - t_epoch
            val, grid = self._validate(epoch)
            record = {"epoch": epoch, "img_size": size, "lr": self.optimizer.param_groups[-1]["lr"],
                      "train_loss": train_loss}
            record.update({f"val_{k}": v for k, v in val.items() if k != "confusion_matrix"})
            record.update({"train_seconds": t_train, "seconds": time.monotonic() - t_epoch})
            self.history.append(record)
            self.last_val = val
            for k, v in record.items():
                if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    writer.add_scalar(k.replace("_", "/", 1) if k.startswith(("train_", "val_")) else k, v, epoch)
            if grid is not None:
                writer.add_image("val/predictions", grid, epoch, dataformats="HWC")
            writer.flush()
            value = record[self.cfg.monitor]
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(value)
            elif self.scheduler is not None:
                self.scheduler.step()
            improved = self.best.update(value, epoch)
            self.early.update(value, epoch)
            self.epoch, self.batch = epoch, 0
            self._loss_sum.zero_()
            self._seen = 0
            self.save(best=improved)
            epochs.set_postfix({self.cfg.monitor: f"{value:.4f}", "best": f"{self.best.value:.4f}"})
            for cb in self.callbacks:
                getattr(cb, "on_epoch_end", lambda *a: None)(self, record)
            if self.early.should_stop:
                print(f"early stopping after epoch {epoch}: no {self.cfg.monitor} improvement for "
                      f"{self.early.wait} epochs (best {self.best.value:.4f} at epoch {self.best.epoch})")
                break

    def _forward(self, batch: dict):
        """``(inputs, target, outputs, loss)`` of one batch on the device (autocast on CUDA with AMP)."""
        inputs = to_device(batch["input"], self.device, self.channels_last)
        target = to_device(batch["target"], self.device)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            outputs = self.model(inputs)
            loss = self.loss_fn(outputs, target)
        return inputs, target, outputs, loss

    def _train_epoch(self, epoch: int, size: int) -> float:
        self.model.train()
        self.train_loader.sampler.set_epoch(epoch, self.batch)
        every = max(1, self.n_batches // 20)
        last_ckpt = time.monotonic()
        bar = tqdm(total=self.n_batches, initial=self.batch, desc=f"epoch {epoch} ({size}px)", leave=False,
                   disable=not self.progress)
        for batch in self.train_loader:
            inputs, _, _, loss = self._forward(batch)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            n = _batch_size(inputs)
            self._loss_sum += loss.detach().double() * n
            self._seen += n
            self.batch += 1
            self.step += 1
            bar.update(1)
            if self.progress and self.batch % every == 0:
                bar.set_postfix(loss=f"{float(self._loss_sum) / max(self._seen, 1):.4f}")
            for cb in self.callbacks:
                getattr(cb, "on_batch_end", lambda *a: None)(self)
            if self.batch < self.n_batches and time.monotonic() - last_ckpt >= self.cfg.checkpoint_minutes * 60:
                self.save()
                last_ckpt = time.monotonic()
        bar.close()
        return float(self._loss_sum) / max(self._seen, 1)

    @torch.no_grad()
    def _validate(self, epoch: int) -> tuple[dict, np.ndarray | None]:
        self.model.eval()
        metrics = self.metrics_factory()
        self.val_loader.sampler.set_epoch(epoch)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        seen, wanted = 0, grid_indices(len(self.val_loader.dataset), self.cfg.log_images if self.render_grid else 0)
        shown = [None, None, None]
        for batch in self.val_loader:
            inputs, target, outputs, loss = self._forward(batch)
            n = _batch_size(inputs)
            loss_sum += loss.double() * n
            seen += n
            metrics.update(outputs, target)
            rows = [r for r, i in enumerate(batch["index"].tolist()) if i in wanted] if wanted else []
            if rows:
                shown = [_cat(a, select_rows(b, rows)) for a, b in zip(shown, (inputs, outputs, target))]
        out = metrics.compute()
        out["loss"] = float(loss_sum) / max(seen, 1)
        grid = self.render_grid(*shown) if self.render_grid and shown[0] is not None else None
        return out, grid
