"""Stateful training helpers with ``state_dict``/``load_state_dict``: best tracking and early stopping.

Both read the monitored metric's direction from :func:`seglib.metrics.higher_is_better`.
"""

from __future__ import annotations

from ..metrics import higher_is_better, is_improvement


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
        return {"monitor": self.monitor, "value": self.value, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
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
        return self.patience is not None and self.wait >= max(1, self.patience)

    def state_dict(self) -> dict:
        return {"wait": self.wait, "best": self.tracker.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.wait = int(state["wait"])
        self.tracker.load_state_dict(state["best"])
