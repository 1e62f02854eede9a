"""Pure metric functions: the one overlap (IoU / Dice) formula, confusion matrix, per-image IoU, AP, objects.

Stateful accumulators (:mod:`.multiclass`, :mod:`.binary`, :mod:`.depth`) and the viewers of
:mod:`seglib.inspect` call these; no other module writes an IoU or Dice formula (torchmetrics' split:
functional core, thin accumulators).

**Empty masks, one rule.** IoU and Dice of a mask (a class, the foreground) that is absent from both the
prediction and the target are :data:`EMPTY_SCORE` = 1: nothing to find and nothing found is a perfect
prediction (torchmetrics ``zero_division=1``; the same value as seed 000's smoothed per-image IoU). This
holds per image (:func:`mask_iou`, the viewers) and per epoch (binary ``fg_iou``/``fg_dice``). Class
means (``miou``, ``dice``) average only the classes present in the prediction or the target (the PASCAL VOC
/ Cityscapes mIoU), so a class absent from both neither raises nor lowers the mean; per-class lists mark it
NaN ("not present"). Where no pixel is valid at all there is nothing to score and the result is NaN.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

EMPTY_SCORE = 1.0
"""IoU / Dice of a mask absent from both prediction and target (see the module docstring)."""


def tversky_from_counts(tp, fp, fn, alpha: float, beta: float, smooth: float = 0.0):
    """Overlap score ``(tp + s) / (tp + alpha fp + beta fn + s)``: IoU for ``alpha = beta = 1``, Dice
    (``2 tp / (2 tp + fp + fn)``) for ``alpha = beta = 0.5``; :data:`EMPTY_SCORE` where the denominator is 0.

    Source: A. Tversky, "Features of similarity", Psychological Review 1977 (Jaccard 1901 and Dice 1945 as
    special cases). The soft, differentiable form for losses is :func:`seglib.losses.functional.tversky_index`.

    Args:
        tp, fp, fn: counts (or soft sums) >= 0 of equal shapes: torch tensors, numpy arrays or numbers.
        alpha, beta: weights of false positives and false negatives; smooth: added to numerator and denominator.

    Returns:
        Scores in [0, 1]: a floating tensor for tensor input, else a numpy array (a float for scalar input).
    """
    denom = tp + alpha * fp + beta * fn + smooth
    if isinstance(denom, torch.Tensor):
        denom = denom.double() if not denom.is_floating_point() else denom
        ok = denom > 0
        return torch.where(ok, (tp + smooth) / torch.where(ok, denom, torch.ones_like(denom)), EMPTY_SCORE)
    denom = np.asarray(denom, np.float64)
    ok = denom > 0
    out = np.where(ok, (np.asarray(tp, np.float64) + smooth) / np.where(ok, denom, 1.0), EMPTY_SCORE)
    return float(out) if out.ndim == 0 else out


def iou_from_counts(tp, fp, fn, smooth: float = 0.0):
    """IoU (Jaccard) ``(tp + s) / (tp + fp + fn + s)``, :data:`EMPTY_SCORE` for an empty union
    (:func:`tversky_from_counts` with ``alpha = beta = 1``; same argument and return types)."""
    return tversky_from_counts(tp, fp, fn, 1.0, 1.0, smooth)


def dice_from_counts(tp, fp, fn):
    """Dice (F1) ``2 tp / (2 tp + fp + fn)``, :data:`EMPTY_SCORE` for an empty union
    (:func:`tversky_from_counts` with ``alpha = beta = 0.5``; same argument and return types)."""
    return tversky_from_counts(tp, fp, fn, 0.5, 0.5)


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, n_classes: int,
                     ignore_index: int | None = None) -> torch.Tensor:
    """Confusion matrix of one batch, computed on the tensors' device (no host synchronisation).

    Args:
        pred: ``int64`` predicted class ids (e.g. ``N x H x W``, the argmax of logits), values in ``0..C-1``.
        target: ``int64`` true class ids of the same shape; pixels equal to ``ignore_index`` or outside
            ``0..C-1`` are skipped.
        n_classes: C.

    Returns:
        ``int64 C x C`` counts; row = true class, column = predicted class.
    """
    valid = (target >= 0) & (target < n_classes)
    if ignore_index is not None:
        valid &= target != ignore_index
    idx = target[valid] * n_classes + pred[valid]
    return torch.bincount(idx, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def scores_from_confusion(cm: torch.Tensor, ignore_index: int | None = None) -> dict:
    """Class-mean IoU, Dice and pixel accuracy from a confusion matrix.

    Per class c (:func:`iou_from_counts`, :func:`dice_from_counts`): ``IoU_c = TP / (TP + FP + FN)``,
    ``Dice_c = 2 TP / (2 TP + FP + FN)``. Means run over the classes present in prediction or target
    (``TP + FP + FN > 0``), ``ignore_index`` excluded (PASCAL VOC / Cityscapes mIoU); absent classes are NaN
    in the per-class lists (see the module docstring for the empty-mask rule).

    Args:
        cm: ``C x C`` counts (row = true, column = predicted), any integer or float dtype, any device.
        ignore_index: class left out of the means and set NaN in the lists, or None.

    Returns:
        ``{"miou", "dice", "pixel_accuracy": float, "iou_per_class", "dice_per_class": list[float]}``, values in
        [0, 1]; the means and the accuracy are NaN for an all-zero matrix (no valid pixel).
    """
    cm = cm.double()
    tp = cm.diag()
    fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
    present = tp + fp + fn > 0
    if ignore_index is not None and 0 <= ignore_index < cm.shape[0]:
        present[ignore_index] = False
    nan = torch.full_like(tp, float("nan"))
    iou = torch.where(present, iou_from_counts(tp, fp, fn), nan)
    dice = torch.where(present, dice_from_counts(tp, fp, fn), nan)
    total = cm.sum()
    return {
        "miou": float(iou[present].mean()) if present.any() else float("nan"),
        "dice": float(dice[present].mean()) if present.any() else float("nan"),
        "pixel_accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
        "iou_per_class": [float(v) for v in iou],
        "dice_per_class": [float(v) for v in dice],
    }


def image_miou(pred, target, n_classes: int, ignore_index: int | None = None) -> float:
    """Mean IoU of one image over the classes present in its prediction or target (:func:`scores_from_confusion`).

    Args:
        pred, target: integer ``H x W`` class ids (torch tensors or numpy arrays), ``0..C-1``; target pixels
            equal to ``ignore_index`` are excluded. Values are not checked here (the viewers check them).

    Returns:
        mIoU in [0, 1]; NaN when no pixel is valid.
    """
    pred, target = (torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).long()
                    for x in (pred, target))
    return scores_from_confusion(confusion_matrix(pred, target, n_classes, ignore_index), ignore_index)["miou"]


def mask_iou(probs, target, threshold: float | None = 0.5, smooth: float = 0.0) -> torch.Tensor:
    """Foreground IoU of each image (:func:`iou_from_counts`), hard or soft.

    Args:
        probs: foreground probabilities in [0, 1] (or a 0/1 / bool mask), ``N x ...`` (e.g. ``N x 1 x H x W``),
            a torch tensor or numpy array.
        target: the true mask, same shape, values in {0, 1} (or bool).
        threshold: ``p > threshold`` is foreground; None = soft IoU on the probabilities themselves, seed 000's
            ``(sum(p t) + s) / (sum(p) + sum(t) - sum(p t) + s)`` (tensornet ``Learner._iou``, ``s = 1e-6``).
        smooth: ``s``.

    Returns:
        ``float64 (N,)`` in [0, 1] on the input's device; an image whose prediction and target are both
        empty scores :data:`EMPTY_SCORE` = 1.
    """
    p, t = (torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x) for x in (probs, target))
    p = (p > threshold) if threshold is not None else p
    p, t = p.double().flatten(1), t.double().flatten(1)
    inter = (p * t).sum(1)
    return iou_from_counts(inter, p.sum(1) - inter, t.sum(1) - inter, smooth)


def average_precision(scores, target) -> float:
    """Exact average precision ``sum_k (R_k - R_{k-1}) P_k`` over distinct score thresholds, highest first.

    The definition of scikit-learn's ``average_precision_score`` (no interpolation; tied scores form one
    threshold). AP depends only on the ranking, so logits give the same value as probabilities (and keep
    ranks that float32 sigmoids would tie at 1.0).

    Args:
        scores: any-shape float scores (torch tensor or numpy array), higher = more likely positive.
        target: same number of elements, nonzero / True = positive.

    Returns:
        AP in [0, 1]; NaN without positives. Cost: one sort of all elements (O(n log n)).
    """
    s = torch.as_tensor(np.asarray(scores) if not isinstance(scores, torch.Tensor) else scores).flatten().cpu()
    y = torch.as_tensor(np.asarray(target) if not isinstance(target, torch.Tensor) else target).flatten().cpu() != 0
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    s, order = torch.sort(s.double(), descending=True, stable=True)
    y = y[order]
    last = torch.cat([torch.nonzero(s[1:] != s[:-1]).flatten(), torch.tensor([len(s) - 1])])
    tp = torch.cumsum(y.double(), 0)[last]
    precision, recall = tp / (last + 1).double(), tp / n_pos
    return float((torch.diff(recall, prepend=recall.new_zeros(1)) * precision).sum())


def voc_ap(confidences, is_tp, n_true: int) -> float:
    """PASCAL VOC all-point interpolated AP of pooled detections (Everingham et al., IJCV 2010).

    Args:
        confidences: one score per prediction, ``(P,)``; is_tp: ``bool (P,)``, whether each matched a true object.
        n_true: number of true objects.

    Returns:
        AP in [0, 1] (area under the precision envelope); 0.0 with true objects but no prediction; NaN when
        ``n_true == 0``.
    """
    if n_true == 0:
        return float("nan")
    conf = np.asarray(confidences, np.float64)
    tp = np.asarray(is_tp, bool)
    if conf.size == 0:
        return 0.0
    tp = tp[np.argsort(-conf, kind="stable")]
    ctp, cfp = np.cumsum(tp), np.cumsum(~tp)
    mrec = np.r_[0.0, ctp / n_true, 1.0]
    mpre = np.r_[1.0, ctp / (ctp + cfp), 0.0]
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def match_objects(prob: np.ndarray, target: np.ndarray, threshold: float = 0.5,
                  iou_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray, int]:
    """Objects of one image and their greedy matches (the matching of PASCAL VOC detection).

    Objects are the connected components (4-connectivity, ``scipy.ndimage.label``) of ``prob > threshold``
    and of the true mask; a predicted object's confidence is its mean probability; in descending confidence
    each is matched to the unmatched true object of highest IoU (:func:`iou_from_counts`) if that IoU
    >= ``iou_threshold``.

    Args:
        prob: ``float H x W`` foreground probability in [0, 1].
        target: ``H x W`` true mask (nonzero = foreground).
        threshold: probability above which a pixel is predicted foreground.
        iou_threshold: minimum IoU of a match (0.5 for AP@0.5).

    Returns:
        ``(confidences float (P,), is_tp bool (P,), n_true)``: one entry per predicted component and the
        number of true components. Empty arrays when nothing is predicted; never raises for empty masks.
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
        iou = iou_from_counts(inter, area_p[:, None] - inter, area_t[None, :] - inter)
        free = np.ones(n_true, bool)
        for i in np.argsort(-conf, kind="stable"):
            cand = np.where(free, iou[i], -1.0)
            j = int(np.argmax(cand))
            if cand[j] >= iou_threshold:
                is_tp[i], free[j] = True, False
    return conf, is_tp, int(n_true)
