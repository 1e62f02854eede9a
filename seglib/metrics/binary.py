"""Epoch metrics of binary segmentation: foreground Dice and IoU, precision, recall, pixel AP, object AP@0.5.

:class:`BinaryMetrics` has the ``update(logits, target)`` / ``compute()`` contract of the trainer's
``metrics_factory``. Counts are summed over the whole epoch (not a mean of per-batch scores), so the
result does not depend on the batch size.

Object AP follows PASCAL VOC (Everingham et al., IJCV 2010): see
:func:`seglib.metrics.functional.match_objects` and :func:`~seglib.metrics.functional.voc_ap`. All
predictions of the epoch are pooled; an image without true objects adds its predictions as false positives
(seed 003's fix silently skipped them) and never raises; with no true object in the epoch AP is NaN.

Keys ``fg_dice`` and ``fg_iou`` were ``dice`` and ``iou`` before issue 9 (see
:data:`seglib.metrics.registry.LEGACY_KEYS`).
"""

from __future__ import annotations

import numpy as np
import torch

from ..tensors import binary_target
from .functional import average_precision, dice_from_counts, iou_from_counts, match_objects, voc_ap
from .registry import register_metric

PIXEL_KEYS = (
    register_metric("fg_dice", True, "Dice (F1) of the foreground (positive class), counts pooled over the epoch"),
    register_metric("fg_iou", True, "IoU (Jaccard) of the foreground, counts pooled over the epoch: "
                                    "TP / (TP + FP + FN)"),
    register_metric("precision", True, "foreground precision TP / (TP + FP), pooled over the epoch"),
    register_metric("recall", True, "foreground recall TP / (TP + FN), pooled over the epoch"),
    register_metric("pixel_ap", True, "exact pixel-level average precision of the foreground logit "
                                      "(scikit-learn's average_precision_score)"),
)
"""Scalar keys of :meth:`BinaryMetrics.compute` always present."""
OBJECT_KEYS = (
    register_metric("object_ap50", True, "PASCAL VOC AP of connected components at IoU 0.5"),
    register_metric("objects_true", None, "number of true connected components in the epoch"),
    register_metric("objects_pred", None, "number of predicted connected components in the epoch"),
)
"""Scalar keys :meth:`BinaryMetrics.compute` adds when ``objects=True``."""


class BinaryMetrics:
    """Accumulates binary-segmentation counts over an epoch.

    Args:
        threshold: probability above which a pixel is foreground (0.5 = logit 0).
        objects: also compute object AP@0.5 (moves probabilities to the CPU each update).

    ``update(logits float N x 1 x H x W, target int N x H x W or N x 1 x H x W in {0, 1})``. Pixel AP is
    exact: every pixel's logit (float32) and label are kept on the CPU until :meth:`compute` (5 bytes per
    pixel: 33 MB for 100 images of 256 x 256).

    Attributes:
        keys: scalar keys of :meth:`compute`: :data:`PIXEL_KEYS`, plus :data:`OBJECT_KEYS` when ``objects``.
        task: ``"binary"`` (for :func:`seglib.metrics.upgrade_keys`).
    """

    task = "binary"

    def __init__(self, threshold: float = 0.5, objects: bool = True):
        self.threshold, self.objects = float(threshold), bool(objects)
        self.reset()

    @property
    def keys(self) -> tuple[str, ...]:
        """The scalar keys :meth:`compute` returns (depends on ``objects``)."""
        return PIXEL_KEYS + (OBJECT_KEYS if self.objects else ())

    def reset(self) -> None:
        """Forget everything accumulated (start of an epoch)."""
        self.tp = self.fp = self.fn = 0
        self.scores: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.obj_conf: list[np.ndarray] = []
        self.obj_tp: list[np.ndarray] = []
        self.n_true = 0

    @torch.no_grad()
    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch (shapes in the class docstring).

        Raises:
            ValueError: logits not ``N x 1 x H x W`` or a target of another shape (:func:`seglib.tensors.binary_target`).
        """
        t = binary_target(target, logits) > 0.5
        logits = logits.float()
        prob = torch.sigmoid(logits)
        pred = prob > self.threshold
        self.tp += int((pred & t).sum())
        self.fp += int((pred & ~t).sum())
        self.fn += int((~pred & t).sum())
        self.scores.append(logits.flatten().cpu())
        self.labels.append(t.flatten().cpu())
        if self.objects:
            p_np, t_np = prob[:, 0].cpu().numpy(), t[:, 0].cpu().numpy()
            for k in range(len(p_np)):
                conf, is_tp, n_true = match_objects(p_np[k], t_np[k], self.threshold)
                self.obj_conf.append(conf)
                self.obj_tp.append(is_tp)
                self.n_true += n_true

    def compute(self) -> dict:
        """Scores of everything added since :meth:`reset`: a dict with :attr:`keys`.

        ``fg_dice``/``fg_iou`` are 1 when neither prediction nor target has a foreground pixel (the empty-mask
        rule of :mod:`seglib.metrics.functional`); precision, recall and AP are NaN when undefined.
        """
        tp, fp, fn = self.tp, self.fp, self.fn
        scores = torch.cat(self.scores) if self.scores else torch.zeros(0)
        labels = torch.cat(self.labels) if self.labels else torch.zeros(0, dtype=torch.bool)
        out = {
            "fg_dice": dice_from_counts(tp, fp, fn),
            "fg_iou": iou_from_counts(tp, fp, fn),
            "precision": tp / (tp + fp) if (tp + fp) else float("nan"),
            "recall": tp / (tp + fn) if (tp + fn) else float("nan"),
            "pixel_ap": average_precision(scores, labels),
        }
        if self.objects:
            conf = np.concatenate(self.obj_conf) if self.obj_conf else np.zeros(0)
            hit = np.concatenate(self.obj_tp) if self.obj_tp else np.zeros(0, bool)
            out["object_ap50"] = voc_ap(conf, hit, self.n_true)
            out["objects_true"], out["objects_pred"] = int(self.n_true), int(conf.size)
        return out
