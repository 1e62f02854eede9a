"""seglib's losses and metrics against independent implementations: torchmetrics, scikit-learn, smp.

Random and edge-case inputs (absent classes, ignored pixels, empty masks, tied and saturated scores). The
figures of the issue-9 check (largest absolute difference per comparison) are asserted at 1e-6 or tighter.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seglib  # noqa: F401  (torchvision guard before torchmetrics)
from seglib.losses import build_loss, soft_dice, soft_jaccard, tversky_index
from seglib.metrics import BinaryMetrics, SegmentationMetrics, average_precision, confusion_matrix, mask_iou

sklearn_metrics = pytest.importorskip("sklearn.metrics")
tm = pytest.importorskip("torchmetrics.classification")
smp_losses = pytest.importorskip("segmentation_models_pytorch.losses")

SEEDS = range(5)


def _multiclass_batch(seed: int, c: int = 5, ignore: int = 255, absent: int | None = 3):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, c, (3, 11, 9), generator=g)
    if absent is not None:
        target[target == absent] = 0
    logits = torch.randn(3, c, 11, 9, generator=g) + 2 * torch.nn.functional.one_hot(target, c).permute(0, 3, 1, 2)
    if absent is not None:
        logits[:, absent] -= 100  # absent from prediction and target
    target[torch.rand(3, 11, 9, generator=g) < 0.1] = ignore
    return logits, target


@pytest.mark.parametrize("seed", SEEDS)
def test_multiclass_scores_match_torchmetrics_and_sklearn(seed):
    c, ignore = 5, 255
    logits, target = _multiclass_batch(seed, c, ignore, absent=3 if seed % 2 else None)
    ours = SegmentationMetrics(c, ignore_index=ignore)
    ours.update(logits, target)
    s = ours.compute()
    pred = logits.argmax(1)
    iou = tm.MulticlassJaccardIndex(c, average="none", ignore_index=ignore)(pred, target)
    f1 = tm.MulticlassF1Score(c, average="none", ignore_index=ignore)(pred, target)
    acc = tm.MulticlassAccuracy(c, average="micro", ignore_index=ignore)(pred, target)
    ours_iou, ours_dice = (torch.tensor(s[k], dtype=torch.float64) for k in ("iou_per_class", "dice_per_class"))
    present = ~torch.isnan(ours_iou)
    assert torch.allclose(ours_iou[present], iou[present].double(), atol=1e-6)
    assert torch.allclose(ours_dice[present], f1[present].double(), atol=1e-6)
    assert present.sum() == (c - 1 if seed % 2 else c)  # the absent class is NaN, left out of the means
    assert s["miou"] == pytest.approx(iou[present].mean().item(), abs=1e-6)
    assert s["pixel_accuracy"] == pytest.approx(acc.item(), abs=1e-6)
    keep = target != ignore
    ref_cm = sklearn_metrics.confusion_matrix(target[keep].numpy(), pred[keep].numpy(), labels=list(range(c)))
    assert confusion_matrix(pred, target, c, ignore).numpy().tolist() == ref_cm.tolist()


def _binary_batch(seed: int, scale: float = 3.0):
    g = torch.Generator().manual_seed(seed)
    target = (torch.rand(4, 1, 10, 12, generator=g) < 0.3).long()
    logits = scale * torch.randn(4, 1, 10, 12, generator=g) + 2 * (2 * target - 1)
    return logits, target


@pytest.mark.parametrize("seed", SEEDS)
def test_binary_scores_match_torchmetrics_and_sklearn(seed):
    logits, target = _binary_batch(seed, scale=3.0 if seed < 3 else 20.0)  # 20: saturated sigmoids
    m = BinaryMetrics(objects=False)
    for sl in (slice(0, 1), slice(1, 4)):
        m.update(logits[sl], target[sl, 0])
    out = m.compute()
    prob = torch.sigmoid(logits)
    assert out["fg_iou"] == pytest.approx(tm.BinaryJaccardIndex()(prob, target).item(), abs=1e-6)
    assert out["fg_dice"] == pytest.approx(tm.BinaryF1Score()(prob, target).item(), abs=1e-6)
    assert out["precision"] == pytest.approx(tm.BinaryPrecision()(prob, target).item(), abs=1e-6)
    assert out["recall"] == pytest.approx(tm.BinaryRecall()(prob, target).item(), abs=1e-6)
    y, pred = target.flatten().numpy(), (prob > 0.5).flatten().numpy()
    assert out["fg_iou"] == pytest.approx(sklearn_metrics.jaccard_score(y, pred), abs=1e-12)
    assert out["fg_dice"] == pytest.approx(sklearn_metrics.f1_score(y, pred), abs=1e-12)
    # exact pixel AP: the ranking of the logits, also where float32 sigmoids tie at 1.0
    ref_ap = sklearn_metrics.average_precision_score(y, logits.flatten().double().numpy())
    assert out["pixel_ap"] == pytest.approx(ref_ap, abs=1e-12)
    # torchmetrics works in float32 (a sigmoid of large logits ties at 1.0): give it the logits' dense ranks in [0, 1]
    values, rank = torch.unique(logits.flatten(), return_inverse=True)
    ref_tm = tm.BinaryAveragePrecision()(rank.float() / len(values), target.flatten()).item()
    assert out["pixel_ap"] == pytest.approx(ref_tm, abs=1e-6)


def test_pixel_ap_edge_cases_match_sklearn():
    cases = [([12.0, 8.0, 7.0], [1, 0, 1]),  # the example: 0.833 (the old 1000 bins gave 0.667)
             ([1.0, 1.0, 1.0, 0.0], [1, 0, 1, 1]),  # ties share one threshold
             ([0.0, 0.0], [1, 1]),  # every score equal
             ([-3.0, 5.0, 2.0, 2.0, 9.0], [1, 0, 1, 0, 0])]  # positives ranked last
    for scores, labels in cases:
        ref = sklearn_metrics.average_precision_score(labels, scores)
        assert average_precision(np.array(scores), np.array(labels)) == pytest.approx(ref, abs=1e-12), scores
    rng = np.random.default_rng(0)
    s = np.round(rng.normal(size=2000), 1)  # many ties
    y = rng.random(2000) < 0.2
    assert average_precision(s, y) == pytest.approx(sklearn_metrics.average_precision_score(y, s), abs=1e-12)


def test_empty_masks_follow_one_rule_like_torchmetrics_zero_division_1():
    empty = torch.zeros(3, 1, 4, 4)
    pred = empty.clone()
    pred[1, 0, 0, 0] = 1  # image 1: a false positive on an empty mask -> 0
    ref = [tm.BinaryJaccardIndex(zero_division=1)(pred[i], empty[i].long()).item() for i in range(3)]
    assert mask_iou(pred, empty).tolist() == ref == [1.0, 0.0, 1.0]
    m = BinaryMetrics(objects=False)
    m.update(torch.full((2, 1, 4, 4), -9.0), torch.zeros(2, 4, 4, dtype=torch.long))
    assert m.compute()["fg_iou"] == tm.BinaryJaccardIndex(zero_division=1)(empty[:2], empty[:2].long()).item() == 1.0


@pytest.mark.parametrize("seed", SEEDS)
def test_soft_overlap_core_matches_smp_losses(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64)
    target = (torch.rand(2, 1, 8, 8, generator=g) < 0.4).double()
    p = torch.sigmoid(logits)
    # smp 0.6 computes Dice as Tversky(0.5, 0.5) without doubling the smoothing: (I + s) / ((P + T) / 2 + s),
    # i.e. V-Net's (2 I + s') / (P + T + s') with s' = 2 s. seglib's "dice" (s' = 1) is smp's DiceLoss(smooth=0.5).
    assert build_loss("dice", 2)(logits, target.long()[:, 0]).item() == pytest.approx(
        smp_losses.DiceLoss("binary", smooth=0.5)(logits, target).item(), abs=1e-6)
    assert (1 - soft_dice(p, target, smooth=1.0)).item() == pytest.approx(
        smp_losses.DiceLoss("binary", smooth=0.5)(logits, target).item(), abs=1e-12)
    assert (1 - soft_jaccard(p, target, smooth=1.0)).item() == pytest.approx(
        smp_losses.JaccardLoss("binary", smooth=1.0)(logits, target).item(), abs=1e-12)
    assert (1 - tversky_index(p, target, 0.3, 0.7, smooth=1.0)).item() == pytest.approx(
        smp_losses.TverskyLoss("binary", alpha=0.3, beta=0.7, smooth=1.0)(logits, target).item(), abs=1e-12)


def test_ce_matches_torch_and_dice_ce_matches_smp_where_every_class_is_present():
    logits, target = _multiclass_batch(7, 5, 255, absent=None)
    ce = build_loss("ce", 5, ignore_index=255)(logits, target)
    assert ce.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, target, ignore_index=255).item(),
                                      rel=1e-6)
    ours = build_loss("dice_ce", 5, ignore_index=255)(logits, target)
    smp = smp_losses.DiceLoss("multiclass", ignore_index=255)(logits, target) + ce
    assert ours.item() == pytest.approx(smp.item(), rel=1e-6)
