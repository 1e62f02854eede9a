"""Confusion-matrix metrics against hand values and torchmetrics (an independent implementation)."""

import math

import pytest
import torch

import seglib  # noqa: F401  (torchvision guard before torchmetrics)
from seglib.metrics import (
    EMPTY_SCORE,
    SegmentationMetrics,
    confusion_matrix,
    dice_from_counts,
    iou_from_counts,
    is_improvement,
    scores_from_confusion,
    upgrade_keys,
)


def _logits(pred, c):
    return torch.nn.functional.one_hot(pred, c).permute(0, 3, 1, 2).float()


def test_hand_example_with_absent_class_and_ignore():
    # classes 0..3; class 2 absent from prediction and target; 9 = void
    target = torch.tensor([[[0, 0, 1, 1], [3, 3, 9, 9]]])
    pred = torch.tensor([[[0, 1, 1, 1], [3, 0, 2, 3]]])
    m = SegmentationMetrics(4, ignore_index=9)
    m.update(_logits(pred, 4), target)
    s = m.compute()
    # valid pixels: 6. class 0: TP1 FP1 FN1 -> 1/3 ; class 1: TP2 FP1 FN0 -> 2/3 ; class 3: TP1 FP0 FN1 -> 1/2
    assert s["iou_per_class"][0] == pytest.approx(1 / 3)
    assert s["iou_per_class"][1] == pytest.approx(2 / 3)
    assert math.isnan(s["iou_per_class"][2])  # predicted only on a void pixel -> not counted
    assert s["iou_per_class"][3] == pytest.approx(1 / 2)
    assert s["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert s["dice"] == pytest.approx((2 / 4 + 4 / 5 + 2 / 3) / 3)
    assert s["pixel_accuracy"] == pytest.approx(4 / 6)


def test_matches_torchmetrics_and_is_not_a_mean_of_batch_means():
    from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

    g = torch.Generator().manual_seed(0)
    c, ignore = 6, 5
    ours = SegmentationMetrics(c, ignore_index=ignore)
    ref = MulticlassJaccardIndex(c, average="none", ignore_index=ignore)
    acc = MulticlassAccuracy(c, average="micro", ignore_index=ignore)
    batch_mious = []
    for n in (1, 3, 2):  # unequal batches
        target = torch.randint(0, c, (n, 9, 7), generator=g)
        pred = torch.where(torch.rand(n, 9, 7, generator=g) < 0.6, target, torch.randint(0, c, (n, 9, 7), generator=g))
        ours.update(_logits(pred, c), target)
        ref.update(pred, target)
        acc.update(pred, target)
        one = SegmentationMetrics(c, ignore_index=ignore)
        one.update(_logits(pred, c), target)
        batch_mious.append(one.compute()["miou"])
    s = ours.compute()
    ref_iou = ref.compute()
    for k in range(c - 1):
        assert s["iou_per_class"][k] == pytest.approx(ref_iou[k].item(), abs=1e-6)
    assert s["miou"] == pytest.approx(ref_iou[: c - 1].mean().item(), abs=1e-6)
    assert s["pixel_accuracy"] == pytest.approx(acc.compute().item(), abs=1e-6)
    assert abs(s["miou"] - sum(batch_mious) / 3) > 1e-6


def test_confusion_matrix_layout():
    cm = confusion_matrix(torch.tensor([[1, 1, 0]]), torch.tensor([[0, 1, 0]]), 2)
    assert cm.tolist() == [[1, 1], [0, 1]]  # rows = true, cols = predicted


def test_empty_is_nan_not_crash():
    s = scores_from_confusion(torch.zeros(3, 3, dtype=torch.long))
    assert math.isnan(s["miou"]) and math.isnan(s["pixel_accuracy"])


def test_is_improvement_directions():
    assert is_improvement(0.5, None, True)
    assert is_improvement(0.6, 0.5, True) and not is_improvement(0.4, 0.5, True)
    assert is_improvement(0.4, 0.5, False) and not is_improvement(float("nan"), 0.5, False)
    assert not is_improvement(0.4999, 0.5, False, min_delta=0.01)


def test_keys_and_the_empty_mask_rule():
    m = SegmentationMetrics(3)
    m.update(_logits(torch.zeros(1, 2, 2, dtype=torch.long), 3), torch.zeros(1, 2, 2, dtype=torch.long))
    s = m.compute()
    assert SegmentationMetrics.keys == ("miou", "dice", "pixel_accuracy") and set(m.keys) <= set(s)
    # classes 1 and 2 are absent from prediction and target: left out of the means, NaN in the lists
    assert s["miou"] == 1.0 and math.isnan(s["iou_per_class"][1]) and math.isnan(s["dice_per_class"][2])
    assert iou_from_counts(0, 0, 0) == dice_from_counts(0, 0, 0) == EMPTY_SCORE == 1.0
    assert iou_from_counts(torch.tensor([0, 2]), torch.tensor([0, 1]), torch.tensor([0, 1])).tolist() == [1.0, 0.5]
    assert upgrade_keys({"val_dice": 0.5, "val_miou": 0.4}, SegmentationMetrics.task) == {"val_dice": 0.5,
                                                                                          "val_miou": 0.4}
