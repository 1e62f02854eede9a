"""Stateful training helpers with ``state_dict``/``load_state_dict``: best tracking, early stopping and the
epoch loss mean; and the check that the monitored key is one the run produces.

The first two read the monitored metric's direction from :func:`seglib.metrics.higher_is_better`.
"""

from __future__ import annotations

import torch

from ..metrics import higher_is_better, is_improvement, upgrade_key
from ..tensors import valid_samples


class BestTracker:
    """Remembers the best value of ``monitor`` and the epoch it was reached.

    Args:
        monitor: e.g. ``"val_loss"`` (lower is better) or ``"val_miou"`` (higher is better).
        min_delta: smallest change that counts as an improvement.
    """

    def __init__(self, monitor: str, min_delta: float = 0.0):
        self.monitor, self.min_delta = monitor, min_delta
        self.higher = higher_is_better(monitor)
        self.value: float | None = None
        self.epoch: int | None = None

    def update(self, value: float, epoch: int) -> bool:
        """Record ``value`` of ``epoch``; True if it is a new best."""
        if is_improvement(value, self.value, self.higher, self.min_delta):
            self.value, self.epoch = float(value), int(epoch)
            return True
        return False

    def state_dict(self) -> dict:
        """``{"monitor", "value", "epoch"}`` (value and epoch None before the first epoch)."""
        return {"monitor": self.monitor, "value": self.value, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        """Inverse of :meth:`state_dict`; a best of another monitor is forgotten."""
        if state.get("monitor", self.monitor) != self.monitor:
            # a different metric: the old best says nothing about the new one
            self.value, self.epoch = None, None
            return
        self.value, self.epoch = state["value"], state["epoch"]


class EarlyStopping:
    """Stop after ``patience`` epochs without improvement of ``monitor`` (Keras/Lightning semantics).

    ``wait`` counts epochs since the last improvement; :attr:`should_stop` is ``wait >= max(1, patience)``
    (patience 0 stops at the first epoch without improvement), so a resumed run with a larger patience
    continues.
    """

    def __init__(self, monitor: str, patience: int | None, min_delta: float = 0.0):
        self.tracker = BestTracker(monitor, min_delta)
        self.patience = patience
        self.wait = 0

    def update(self, value: float, epoch: int) -> bool:
        """Record one epoch's value; returns :attr:`should_stop`."""
        self.wait = 0 if self.tracker.update(value, epoch) else self.wait + 1
        return self.should_stop

    @property
    def should_stop(self) -> bool:
        """True once ``wait`` reached the patience (never with patience None)."""
        return self.patience is not None and self.wait >= max(1, self.patience)

    def state_dict(self) -> dict:
        """``{"wait", "best"}``; the patience is not saved: it always comes from the configuration."""
        return {"wait": self.wait, "best": self.tracker.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Inverse of :meth:`state_dict` (keeps this object's patience)."""
        self.wait = int(state["wait"])
        self.tracker.load_state_dict(state["best"])


class LossMean:
    """Epoch mean of per-batch losses, each batch weighted by :func:`seglib.tensors.valid_samples` (its
    samples with at least one pixel not ``ignore_index``), accumulated in ``float64`` on the loss's device.

    A batch whose every pixel is ignored has weight 0 and leaves the mean unchanged (its loss, 0 or even
    NaN, is multiplied by nothing). :meth:`add` does no host synchronisation; :meth:`value` does one.

    Args:
        device: where the two running sums live (the training device).
    """

    def __init__(self, device: torch.device | str = "cpu"):
        self.sum = torch.zeros((), dtype=torch.float64, device=device)
        self.weight = torch.zeros((), dtype=torch.float64, device=device)

    def add(self, loss: torch.Tensor, target, ignore_index: int | None = None) -> None:
        """Add one batch: ``loss`` a 0-dim tensor (the batch's mean loss), ``target`` the batch target
        (``int64 N x H x W`` class ids, or a nested batch: then every sample counts)."""
        w = valid_samples(target, ignore_index).to(self.weight.device)
        self.sum += torch.where(w > 0, loss.detach().double() * w, torch.zeros_like(w))
        self.weight += w

    def value(self) -> float:
        """The weighted mean; 0.0 when nothing with weight was added."""
        return float(self.sum / self.weight.clamp(min=1.0))

    def reset(self) -> None:
        """Start a new epoch."""
        self.sum.zero_()
        self.weight.zero_()

    def state_dict(self) -> dict:
        """``{"loss_sum", "seen"}`` as CPU ``float64`` 0-dim tensors (the checkpoint's ``train_acc``)."""
        return {"loss_sum": self.sum.detach().cpu(), "seen": self.weight.detach().cpu()}

    def load_state_dict(self, state: dict) -> None:
        """Inverse of :meth:`state_dict`; also reads format-1 checkpoints, whose ``seen`` is an ``int``."""
        self.sum = torch.as_tensor(state["loss_sum"], dtype=torch.float64).to(self.sum.device).clone()
        self.weight = torch.as_tensor(state["seen"], dtype=torch.float64).to(self.weight.device).clone()


def monitor_keys(metrics) -> tuple[str, ...]:
    """The history keys a run with ``metrics`` (an object of ``metrics_factory()``) produces and may monitor:
    ``train_loss``, ``val_loss`` and ``val_<k>`` for every ``k`` in ``metrics.keys``.

    Raises:
        TypeError: ``metrics`` has no ``keys`` (the tuple of scalar keys its ``compute()`` returns).
    """
    keys = getattr(metrics, "keys", None)
    if keys is None or callable(keys):
        raise TypeError(f"{type(metrics).__name__} has no 'keys' tuple (the scalar keys compute() returns); "
                        "metric accumulators used for training must declare it")
    return ("train_loss", "val_loss", *(f"val_{k}" for k in keys if k != "loss"))


def check_monitor(monitor: str, metrics) -> None:
    """Fail before training when ``monitor`` is not a key the run produces (see :func:`monitor_keys`).

    Raises:
        ValueError: unknown ``monitor``; the message lists the keys this task produces.
    """
    keys = monitor_keys(metrics)
    if monitor not in keys:
        task = getattr(metrics, "task", None)
        renamed = upgrade_key(monitor, task) if task else monitor
        hint = f" ({monitor!r} is now called {renamed!r})" if renamed != monitor and renamed in keys else ""
        raise ValueError(f"MONITOR {monitor!r} is not produced by this task's training{hint}; choose one of "
                         f"{', '.join(keys)}")
