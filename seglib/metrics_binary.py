"""Epoch-level scores for binary segmentation: Dice, IoU, pixel average precision and object AP@0.5.

:class:`BinaryMetrics` has the ``update(logits, target)`` / ``compute()`` contract of the trainer's
``metrics_factory``. Counts are summed over the whole epoch (not a mean of per-batch scores), so the
result does not depend on the batch size. Metric names are registered in
:data:`seglib.metrics.METRICS` (all higher-is-better), so ``monitor="val_dice"`` works.

Object AP follows PASCAL VOC (Everingham et al., IJCV 2010): objects are the connected components
(4-connectivity, ``scipy.ndimage.label``) of the thresholded prediction and of the true mask; each
predicted object's confidence is its mean probability; per image, predictions in descending
confidence are matched greedily to the unmatched true object of highest IoU if that IoU >= 0.5; all
predictions of the epoch are then pooled and AP is the area under the precision envelope (all-point
interpolation). An image without true objects adds its predictions as false positives (seed 003's
fix silently skipped them) and never raises; with no true object in the whole epoch AP is NaN.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from .losses_binary import binary_target
from .metrics import register_metric

for _name, _desc in [
    ("dice", "Dice (F1) of the positive class"),
    ("iou", "IoU (Jaccard) of the positive class over the epoch: TP / (TP + FP + FN)"),
    ("pixel_ap", "pixel-level average precision of the foreground probability (area under the PR curve)"),
    ("object_ap50", "PASCAL VOC AP of connected components at IoU 0.5"),
]:
    register_metric(_name, True, _desc)


def ap_from_histograms(pos: np.ndarray, neg: np.ndarray) -> float:
    """Exact step-wise pixel AP (scikit-learn's ``average_precision_score``: ``sum_k (R_k - R_{k-1}) P_k``
    over distinct thresholds, highest first) of scores rounded to histogram bins.

    Args:
        pos, neg: ``(B,)`` counts of positive / negative pixels per score bin, bin 0 = lowest scores.

    Returns:
        AP in [0, 1]; NaN without positives.
    """
    pos, neg = np.asarray(pos, np.float64)[::-1], np.asarray(neg, np.float64)[::-1]
    n_pos = pos.sum()
    if n_pos == 0:
        return float("nan")
    tp, fp = np.cumsum(pos), np.cumsum(neg)
    keep = (pos + neg) > 0
    tp, fp = tp[keep], fp[keep]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def voc_ap(confidences, is_tp, n_true: int) -> float:
    """PASCAL VOC all-point interpolated AP of pooled detections.

    Args:
        confidences: one score per prediction; is_tp: whether each matched a true object.
        n_true: number of true objects.

    Returns:
        AP in [0, 1]; 0.0 when there are true objects but no prediction; NaN when ``n_true == 0``.
    """
    if n_true == 0:
        return float("nan")
    conf = np.asarray(confidences, np.float64)
    tp = np.asarray(is_tp, bool)
    if conf.size == 0:
        return 0.0
    order = np.argsort(-conf, kind="stable")
    tp = tp[order]
    ctp = np.cumsum(tp)
    cfp = np.cumsum(~tp)
    recall = ctp / n_true
    precision = ctp / (ctp + cfp)
    mrec = np.r_[0.0, recall, 1.0]
    mpre = np.r_[1.0, precision, 0.0]
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def match_objects(prob: np.ndarray, target: np.ndarray, threshold: float = 0.5,
                  iou_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray, int]:
    """Objects of one image and their greedy matches.

    Args:
        prob: ``float H x W`` foreground probability in [0, 1].
        target: ``H x W`` true mask (nonzero = foreground).
        threshold: probability above which a pixel is predicted foreground.
        iou_threshold: minimum IoU of a match (0.5 for AP@0.5).

    Returns:
        ``(confidences float (P,), is_tp bool (P,), n_true)``: one entry per predicted component
        (mean probability, matched or not) and the number of true components. Empty arrays when nothing
        is predicted; never raises for empty masks.
    """
    pred_lab, n_pred = ndimage.label(prob > threshold)
    true_lab, n_true = ndimage.label(np.asarray(target) > 0)
    if n_pred == 0:
        return np.zeros(0), np.zeros(0, bool), int(n_true)
    flat_p = pred_lab.ravel()
    conf = np.bincount(flat_p, weights=prob.ravel(), minlength=n_pred + 1)[1:] / np.bincount(flat_p)[1:]
    is_tp = np.zeros(n_pred, bool)
    if n_true:
        joint = np.bincount(flat_p * (n_true + 1) + true_lab.ravel(), minlength=(n_pred + 1) * (n_true + 1))
        joint = joint.reshape(n_pred + 1, n_true + 1)
        area_p, area_t = joint.sum(1)[1:], joint.sum(0)[1:]
        inter = joint[1:, 1:].astype(np.float64)
        iou = inter / (area_p[:, None] + area_t[None, :] - inter)
        free = np.ones(n_true, bool)
        for i in np.argsort(-conf, kind="stable"):
            cand = np.where(free, iou[i], -1.0)
            j = int(np.argmax(cand))
            if cand[j] >= iou_threshold:
                is_tp[i], free[j] = True, False
    return conf, is_tp, int(n_true)


class BinaryMetrics:
    """Accumulates binary-segmentation counts over an epoch.

    Args:
        threshold: probability above which a pixel is foreground (0.5 = logit 0).
        bins: histogram bins of the probability for pixel AP (scores rounded to ``1 / bins``).
        objects: also compute object AP@0.5 (moves probabilities to the CPU each update).

    ``update(logits float N x 1 x H x W, target int N x H x W or N x 1 x H x W in {0, 1})``;
    ``compute()`` returns ``{"dice", "iou", "precision", "recall", "pixel_ap", "object_ap50",
    "objects_true", "objects_pred"}``. Dice and IoU are 1.0 when neither prediction nor target has a
    foreground pixel; precision/recall/AP are NaN when undefined. Raises ``ValueError`` on shapes.
    """

    def __init__(self, threshold: float = 0.5, bins: int = 1000, objects: bool = True):
        self.threshold, self.bins, self.objects = float(threshold), int(bins), objects
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated (start of an epoch)."""
        self.tp = self.fp = self.fn = 0
        self.pos_hist = np.zeros(self.bins, np.int64)
        self.neg_hist = np.zeros(self.bins, np.int64)
        self.obj_conf: list[np.ndarray] = []
        self.obj_tp: list[np.ndarray] = []
        self.n_true = 0

    @torch.no_grad()
    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch (shapes in the class docstring); raises ``ValueError`` on mismatched shapes."""
        t = binary_target(target, logits) > 0.5
        prob = torch.sigmoid(logits.float())
        pred = prob > self.threshold
        self.tp += int((pred & t).sum())
        self.fp += int((pred & ~t).sum())
        self.fn += int((~pred & t).sum())
        idx = (prob * self.bins).long().clamp_(0, self.bins - 1)
        self.pos_hist += torch.bincount(idx[t], minlength=self.bins).cpu().numpy()
        self.neg_hist += torch.bincount(idx[~t], minlength=self.bins).cpu().numpy()
        if self.objects:
            p_np, t_np = prob[:, 0].cpu().numpy(), t[:, 0].cpu().numpy()
            for k in range(len(p_np)):
                conf, is_tp, n_true = match_objects(p_np[k], t_np[k], self.threshold)
                self.obj_conf.append(conf)
                self.obj_tp.append(is_tp)
                self.n_true += n_true

    def compute(self) -> dict:
        """Scores of everything added since :meth:`reset` (keys in the class docstring)."""
        tp, fp, fn = self.tp, self.fp, self.fn
        out = {
            "dice": 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 1.0,
            "iou": tp / (tp + fp + fn) if (tp + fp + fn) else 1.0,
            "precision": tp / (tp + fp) if (tp + fp) else float("nan"),
            "recall": tp / (tp + fn) if (tp + fn) else float("nan"),
            "pixel_ap": ap_from_histograms(self.pos_hist, self.neg_hist),
        }
        if self.objects:
            conf = np.concatenate(self.obj_conf) if self.obj_conf else np.zeros(0)
            hit = np.concatenate(self.obj_tp) if self.obj_tp else np.zeros(0, bool)
            out["object_ap50"] = voc_ap(conf, hit, self.n_true)
            out["objects_true"], out["objects_pred"] = int(self.n_true), int(conf.size)
        return out
