"""Binary metrics: epoch Dice/IoU, pixel AP, object AP@0.5 with and without objects (seglib.metrics.binary)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seglib.metrics import (
    BinaryMetrics,
    average_precision,
    higher_is_better,
    match_objects,
    voc_ap,
)
from seglib.metrics.registry import upgrade_key


def logit(p) -> torch.Tensor:
    p = torch.as_tensor(p, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
    return torch.log(p / (1 - p)).float()


def reference_ap(scores, labels) -> float:
    """Reference pixel AP: ``sum_k (R_k - R_{k-1}) P_k`` over distinct score thresholds, highest first
    (scikit-learn's ``average_precision_score``); NaN without positives."""
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each distinct score
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def test_dice_iou_accumulate_over_the_epoch():
    m = BinaryMetrics(objects=False)
    # batch 1: TP 1, FP 1, FN 0; batch 2: TP 0, FP 0, FN 2 -> epoch TP 1, FP 1, FN 2
    m.update(logit([[[[0.9, 0.8, 0.1, 0.1]]]]), torch.tensor([[[1, 0, 0, 0]]]))
    m.update(logit([[[[0.2, 0.3]]], [[[0.1, 0.1]]]]), torch.tensor([[[1, 0]], [[1, 0]]]))
    out = m.compute()
    assert out["fg_dice"] == pytest.approx(2 / (2 + 1 + 2))
    assert out["fg_iou"] == pytest.approx(1 / (1 + 1 + 2))
    assert out["precision"] == pytest.approx(0.5) and out["recall"] == pytest.approx(1 / 3)
    empty = BinaryMetrics(objects=False)
    empty.update(logit([[[[0.1, 0.2]]]]), torch.zeros(1, 1, 2, dtype=torch.long))
    assert empty.compute()["fg_dice"] == 1.0 and empty.compute()["fg_iou"] == 1.0  # the empty-mask rule
    assert math.isnan(empty.compute()["pixel_ap"])
    assert all(higher_is_better(f"val_{k}") for k in ("fg_dice", "fg_iou", "pixel_ap", "object_ap50"))
    assert m.keys == tuple(out) and BinaryMetrics().keys[-3:] == ("object_ap50", "objects_true", "objects_pred")


def test_count_keys_and_legacy_names():
    with pytest.raises(ValueError, match="count"):
        higher_is_better("val_objects_true")
    assert [upgrade_key(k, "binary") for k in ("val_dice", "best_val_dice", "hparam/train_dice", "train_iou",
                                                "bce_dice", "val_fg_dice", "dice")] == [
        "val_fg_dice", "best_val_fg_dice", "hparam/train_fg_dice", "train_fg_iou", "bce_dice", "val_fg_dice", "fg_dice"]
    assert upgrade_key("val_dice", "multiclass") == "val_dice"  # the class-mean Dice kept its name


def test_pixel_ap_by_hand():
    # thresholds 0.9 (P 1, R 1/2), 0.8 (P 1/2, R 1/2), 0.7 (P 2/3, R 1), 0.6 -> AP = 1/2 * 1 + 1/2 * 2/3
    scores, labels = [0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]
    assert reference_ap(scores, labels) == pytest.approx(0.5 + 1 / 3)
    m = BinaryMetrics(objects=False)
    m.update(logit(scores).view(1, 1, 1, 4), torch.tensor(labels).view(1, 1, 4))
    assert m.compute()["pixel_ap"] == pytest.approx(0.5 + 1 / 3, abs=1e-9)
    # ties share one threshold: both at 0.5 with labels 1, 0 -> P 1/2 at R 1
    assert reference_ap([0.5, 0.5], [1, 0]) == pytest.approx(0.5)
    assert average_precision(np.array([0.5, 0.5]), np.array([1, 0])) == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    s, y = rng.random(500), rng.random(500) < 0.3
    assert average_precision(s, y) == pytest.approx(reference_ap(s, y), abs=1e-12)


def test_pixel_ap_is_exact_for_confident_logits():
    # the old 1000-bin histogram of probabilities tied every p >= 0.999 (logits 12 and 8): AP 0.667
    m = BinaryMetrics(objects=False)
    m.update(torch.tensor([12.0, 8.0, 7.0]).view(1, 1, 1, 3), torch.tensor([1, 0, 1]).view(1, 1, 3))
    assert m.compute()["pixel_ap"] == pytest.approx(1 / 2 * 1 + 1 / 2 * 2 / 3, abs=1e-12)  # 0.8333


def _square(mask, y, x, size, value=1.0):
    mask[y:y + size, x:x + size] = value


def test_object_ap_with_and_without_objects():
    h = w = 16
    true_a = np.zeros((h, w))
    _square(true_a, 1, 1, 4)
    _square(true_a, 8, 8, 4)
    prob_a = np.zeros((h, w))
    _square(prob_a, 1, 1, 4, 0.9)  # exact match of the first object: TP, confidence 0.9
    _square(prob_a, 1, 10, 3, 0.6)  # a blob where there is nothing: FP, confidence 0.6
    conf, tp, n_true = match_objects(prob_a, true_a)
    assert n_true == 2 and sorted(zip(conf.round(3), tp)) == [(0.6, False), (0.9, True)]
    assert voc_ap(conf, tp, n_true) == pytest.approx(0.5)  # recall 1/2 at precision 1
    # an image without objects keeps its false positive (confidence 0.95, ranked first)
    prob_b = np.zeros((h, w))
    _square(prob_b, 5, 5, 3, 0.95)
    m = BinaryMetrics()
    m.update(logit(np.stack([prob_a, prob_b])[:, None]), torch.from_numpy(np.stack([true_a, np.zeros((h, w))])).long())
    out = m.compute()
    assert out["objects_true"] == 2 and out["objects_pred"] == 3
    assert out["object_ap50"] == pytest.approx(0.25)  # precision envelope 1/2 up to recall 1/2
    # IoU below 0.5 is no match: 4x4 true vs 2x4 predicted (IoU 0.5 counts, 0.25 does not)
    t = np.zeros((8, 8))
    _square(t, 0, 0, 4)
    p = np.zeros((8, 8))
    p[0:2, 0:4] = 0.8
    assert match_objects(p, t)[1].tolist() == [True]
    p[0:1, 0:4], p[1:2, 0:4] = 0.8, 0.0
    assert match_objects(p, t)[1].tolist() == [False]


def test_object_ap_never_crashes():
    m = BinaryMetrics()
    m.update(torch.full((2, 1, 8, 8), -5.0), torch.zeros(2, 8, 8, dtype=torch.long))  # nothing anywhere
    assert math.isnan(m.compute()["object_ap50"])
    m.update(torch.full((1, 1, 8, 8), 5.0), torch.zeros(1, 8, 8, dtype=torch.long))  # only false positives
    assert math.isnan(m.compute()["object_ap50"]) and m.compute()["objects_pred"] == 1
    m.update(torch.full((1, 1, 8, 8), -5.0), torch.ones(1, 8, 8, dtype=torch.long))  # objects, no prediction
    assert m.compute()["object_ap50"] == 0.0
    assert voc_ap([], [], 0) != voc_ap([], [], 0)  # NaN
    with pytest.raises(ValueError, match="N x 1 x H x W"):
        m.update(torch.zeros(1, 2, 8, 8), torch.zeros(1, 8, 8))
