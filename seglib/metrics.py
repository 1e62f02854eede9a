"""Epoch-level metrics and their directions.

Segmentation scores come from a confusion matrix accumulated over the whole epoch on the device (not
a mean of per-batch means). Every scalar metric is registered in :data:`METRICS` with whether higher
is better; save-best, early stopping and ReduceLROnPlateau read :func:`higher_is_better` instead of
separate ``mode``/``minimize`` flags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .registry import Registry


@dataclass(frozen=True)
class MetricSpec:
    """A scalar metric's name, direction and meaning."""

    name: str
    higher_is_better: bool
    description: str


METRICS = Registry("metric")


def register_metric(name: str, higher_is_better: bool, description: str) -> None:
    """Add a scalar metric to :data:`METRICS`; a name already there keeps its entry (tasks share names
    such as ``iou``, and a module may be re-imported).

    Raises:
        ValueError: ``name`` is registered with the other direction.
    """
    if name in METRICS:
        if METRICS.get(name).higher_is_better != higher_is_better:
            raise ValueError(f"metric {name!r} is already registered with higher_is_better="
                             f"{not higher_is_better}; give this metric another name")
        return
    METRICS.register(name, MetricSpec(name, higher_is_better, description))


for _name, _hib, _desc in [
    ("loss", False, "training objective (mean over samples)"),
    ("miou", True, "mean IoU (Jaccard) over classes present in prediction or target, ignore_index excluded"),
    ("dice", True, "mean Dice (F1) over the same classes as miou"),
    ("pixel_accuracy", True, "correct / valid pixels"),
]:
    register_metric(_name, _hib, _desc)


def higher_is_better(monitor: str) -> bool:
    """Direction of a monitored key such as ``"val_loss"`` or ``"val_miou"`` (split prefix stripped).

    Raises:
        KeyError: unknown metric (lists the registered ones).
    """
    name = monitor
    for prefix in ("val_", "train_", "test_"):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    return METRICS.get(name).higher_is_better


def is_improvement(value: float, best: float | None, higher: bool, min_delta: float = 0.0) -> bool:
    """True if ``value`` beats ``best`` by more than ``min_delta`` in the metric's direction (NaN never improves)."""
    if value is None or math.isnan(value):
        return False
    if best is None or math.isnan(best):
        return True
    return value > best + min_delta if higher else value < best - min_delta


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, n_classes: int, ignore_index: int | None = None) -> torch.Tensor:
    """Confusion matrix of one batch, computed on the tensors' device.

    Args:
        pred: ``int64 N x H x W`` predicted class ids (argmax of logits).
        target: ``int64 N x H x W`` true class ids; pixels equal to ``ignore_index`` are skipped.
        n_classes: C.

    Returns:
        ``int64 C x C``; row = true class, column = predicted class.
    """
    valid = (target >= 0) & (target < n_classes)
    if ignore_index is not None:
        valid &= target != ignore_index
    idx = target[valid] * n_classes + pred[valid]
    return torch.bincount(idx, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def scores_from_confusion(cm: torch.Tensor, ignore_index: int | None = None) -> dict:
    """IoU, Dice and pixel accuracy from a confusion matrix.

    Per class c: ``IoU_c = TP / (TP + FP + FN)``, ``Dice_c = 2 TP / (2 TP + FP + FN)``. A class absent
    from both prediction and target (``TP + FP + FN == 0``) gets NaN and is left out of the means, as
    is ``ignore_index`` (Jaccard 1901; the usual mIoU of PASCAL VOC / Cityscapes evaluation).

    Args:
        cm: ``C x C`` counts (row = true, column = predicted).

    Returns:
        ``{"miou": float, "dice": float, "pixel_accuracy": float, "iou_per_class": list[float],
        "dice_per_class": list[float]}``, values in [0, 1] (NaN where undefined).
    """
    cm = cm.double()
    tp = cm.diag()
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    denom = tp + fp + fn
    nan = torch.full_like(tp, float("nan"))
    iou = torch.where(denom > 0, tp / denom.clamp(min=1), nan)
    dice = torch.where(denom > 0, 2 * tp / (2 * tp + fp + fn).clamp(min=1), nan)
    keep = denom > 0
    if ignore_index is not None and 0 <= ignore_index < cm.shape[0]:
        keep[ignore_index] = False
        iou[ignore_index] = float("nan")
        dice[ignore_index] = float("nan")
    total = cm.sum()
    return {
        "miou": float(iou[keep].mean()) if keep.any() else float("nan"),
        "dice": float(dice[keep].mean()) if keep.any() else float("nan"),
        "pixel_accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
        "iou_per_class": [float(v) for v in iou],
        "dice_per_class": [float(v) for v in dice],
    }


class SegmentationMetrics:
    """Accumulates a confusion matrix over an epoch; :meth:`compute` returns the scores.

    Args:
        n_classes: C.
        ignore_index: label excluded from all scores, or None.

    ``update(logits float N x C x H x W, target int64 N x H x W)`` never synchronises with the host.
    """

    def __init__(self, n_classes: int, ignore_index: int | None = None):
        self.n_classes, self.ignore_index = n_classes, ignore_index
        self.cm: torch.Tensor | None = None

    def reset(self) -> None:
        self.cm = None

    @torch.no_grad()
    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        cm = confusion_matrix(logits.argmax(1), target, self.n_classes, self.ignore_index)
        self.cm = cm if self.cm is None else self.cm + cm

    def compute(self) -> dict:
        """Scores of :func:`scores_from_confusion` plus ``"confusion_matrix"`` (nested lists of ints)."""
        cm = self.cm if self.cm is not None else torch.zeros(self.n_classes, self.n_classes, dtype=torch.long)
        out = scores_from_confusion(cm, self.ignore_index)
        out["confusion_matrix"] = cm.cpu().tolist()
        return out

# one registry for every task: the binary and depth + mask metrics register their directions here too
from . import depth_metrics as _depth_metrics  # noqa: E402,F401
from . import metrics_binary as _metrics_binary  # noqa: E402,F401
