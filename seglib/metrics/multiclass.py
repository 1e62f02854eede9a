"""Epoch metrics of multi-class segmentation: a confusion matrix accumulated on the device.

Scores come from the confusion matrix of the whole epoch (not a mean of per-batch means), through
:func:`seglib.metrics.functional.scores_from_confusion`.
"""

from __future__ import annotations

import torch

from .functional import confusion_matrix, scores_from_confusion
from .registry import register_metric

MULTICLASS_KEYS = (
    register_metric("miou", True, "mean IoU (Jaccard) over classes present in prediction or target, "
                                  "ignore_index excluded (PASCAL VOC mIoU)"),
    register_metric("dice", True, "mean Dice (F1) over the classes of miou"),
    register_metric("pixel_accuracy", True, "correct / valid pixels"),
)
"""The scalar keys of :meth:`SegmentationMetrics.compute`."""


class SegmentationMetrics:
    """Accumulates a confusion matrix over an epoch; :meth:`compute` returns the scores.

    Args:
        n_classes: C.
        ignore_index: label excluded from all scores, or None.

    ``update(logits float N x C x H x W, target int64 N x H x W)`` never synchronises with the host.

    Attributes:
        keys: the scalar keys of :meth:`compute` (:data:`MULTICLASS_KEYS`); task: ``"multiclass"`` (for
            :func:`seglib.metrics.upgrade_keys`).
    """

    task = "multiclass"
    keys = MULTICLASS_KEYS

    def __init__(self, n_classes: int, ignore_index: int | None = None):
        self.n_classes, self.ignore_index = n_classes, ignore_index
        self.cm: torch.Tensor | None = None

    def reset(self) -> None:
        """Forget everything accumulated (start of an epoch)."""
        self.cm = None

    @torch.no_grad()
    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch: the confusion matrix of ``logits.argmax(1)`` against ``target``."""
        cm = confusion_matrix(logits.argmax(1), target, self.n_classes, self.ignore_index)
        self.cm = cm if self.cm is None else self.cm + cm

    def compute(self) -> dict:
        """``{"miou", "dice", "pixel_accuracy": float in [0, 1], "iou_per_class", "dice_per_class": list[float],
        "confusion_matrix": C x C nested lists of ints}`` (:func:`~seglib.metrics.functional.scores_from_confusion`;
        NaN where nothing was seen)."""
        cm = self.cm if self.cm is not None else torch.zeros(self.n_classes, self.n_classes, dtype=torch.long)
        out = scores_from_confusion(cm, self.ignore_index)
        out["confusion_matrix"] = cm.cpu().tolist()
        return out
