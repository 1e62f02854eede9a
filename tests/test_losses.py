"""Losses against values computed independently (NumPy by hand, or torch's own functional ops)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seglib.losses import DiceIoUBCELoss, build_loss
from seglib.tensors import one_hot


def _np_dice_iou_bce(logits, target, n_classes, ignore=None, eps=1e-7):
    """Catalyst 20.12 semantics written out in NumPy: sigmoid per channel, sums over everything."""
    p = 1 / (1 + np.exp(-logits))
    t = np.stack([(target == c) for c in range(n_classes)], 1).astype(np.float64)
    valid = np.ones_like(target, bool) if ignore is None else target != ignore
    v = valid[:, None].astype(np.float64)
    p, t = p * v, t * v
    inter = (p * t).sum()
    dice = 1 - 2 * inter / (p.sum() + t.sum() + eps)
    iou = 1 - inter / (p.sum() + t.sum() - inter + eps)
    bce_el = np.maximum(logits, 0) - logits * t + np.log1p(np.exp(-np.abs(logits)))
    bce = (bce_el * v).sum() / (v.sum() * n_classes)
    return dice, iou, bce


@pytest.mark.parametrize("ignore", [None, 2])
def test_dice_iou_bce_matches_hand_computation(ignore):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 5, 4)).astype(np.float32)
    target = rng.integers(0, 3, size=(2, 5, 4))
    loss = DiceIoUBCELoss(3, ignore_index=ignore)
    terms = loss.terms(torch.from_numpy(logits), torch.from_numpy(target))
    d, i, b = _np_dice_iou_bce(logits.astype(np.float64), target, 3, ignore)
    assert terms["dice"].item() == pytest.approx(d, rel=1e-5)
    assert terms["iou"].item() == pytest.approx(i, rel=1e-5)
    assert terms["bce"].item() == pytest.approx(b, rel=1e-5)
    total = loss(torch.from_numpy(logits), torch.from_numpy(target)).item()
    assert total == pytest.approx(d + i + 0.8 * b, rel=1e-5)


def test_dice_iou_tiny_hand_example():
    # one pixel, two classes, target class 1; logits 0 -> p = 0.5 on both channels
    logits = torch.zeros(1, 2, 1, 1)
    target = torch.ones(1, 1, 1, dtype=torch.long)
    t = DiceIoUBCELoss(2).terms(logits, target)
    # sum(p t) = 0.5, sum(p) = 1, sum(t) = 1 -> dice = 1 - 1/2 ; iou = 1 - 0.5/1.5
    assert t["dice"].item() == pytest.approx(0.5, abs=1e-6)
    assert t["iou"].item() == pytest.approx(1 - 1 / 3, abs=1e-6)
    assert t["bce"].item() == pytest.approx(np.log(2), abs=1e-6)


def test_ignored_pixels_do_not_count():
    logits = torch.randn(1, 3, 4, 4)
    target = torch.randint(0, 3, (1, 4, 4))
    changed = target.clone()
    changed[0, 0, :] = 7  # the void label
    loss = DiceIoUBCELoss(3, ignore_index=7)
    base = loss(logits[..., 1:, :], target[..., 1:, :])
    assert loss(logits, changed).item() == pytest.approx(base.item(), rel=1e-6)


def test_perfect_prediction_is_better_than_wrong():
    target = torch.randint(0, 4, (2, 8, 8))
    good = F.one_hot(target, 4).permute(0, 3, 1, 2).float() * 20 - 10
    bad = torch.roll(good, 1, dims=1)
    for name in ("dice_iou_bce", "ce", "dice_ce"):
        loss = build_loss(name, 4)
        assert loss(good, target) < 0.05 < loss(bad, target), name


def test_ce_matches_torch_with_ignore():
    logits, target = torch.randn(2, 5, 6, 6), torch.randint(0, 5, (2, 6, 6))
    target[0, :2] = 4
    got = build_loss("ce", 5, ignore_index=4)(logits, target)
    assert torch.allclose(got, F.cross_entropy(logits, target, ignore_index=4))


def test_dice_ce_hand():
    logits, target = torch.randn(1, 3, 4, 4, dtype=torch.float64), torch.randint(0, 3, (1, 4, 4))
    p = torch.softmax(logits, 1).numpy()[0]
    t = np.stack([(target.numpy()[0] == c) for c in range(3)]).astype(float)
    dices = [2 * (p[c] * t[c]).sum() / (p[c].sum() + t[c].sum() + 1e-7) for c in range(3) if t[c].sum() > 0]
    expected = F.cross_entropy(logits, target).item() + 1 - np.mean(dices)
    assert build_loss("dice_ce", 3)(logits, target).item() == pytest.approx(expected, rel=1e-5)


def test_one_hot_valid_mask():
    target = torch.tensor([[[0, 1], [255, 2]]])
    oh, valid = one_hot(target, 3, 255)
    assert oh.shape == (1, 3, 2, 2) and valid[0, 0].tolist() == [[1, 1], [0, 1]]
    assert oh[0, :, 1, 0].sum() == 0 and oh[0, 2, 1, 1] == 1


@pytest.mark.parametrize("name", ["dice_iou_bce", "ce", "dice_ce"])
def test_all_ignored_batch_is_zero_with_a_graph(name):
    # old code: ce and dice_ce gave NaN (mean over no pixel), dice_iou_bce 2.0 (Dice and IoU of nothing = 1 each)
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.full((2, 4, 4), 255)
    loss = build_loss(name, 3, ignore_index=255)(logits, target)
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and torch.equal(logits.grad, torch.zeros_like(logits))
    # a batch with one valid pixel is unaffected by the guard
    target[0, 0, 0] = 1
    assert build_loss(name, 3, ignore_index=255)(logits, target).item() > 0


def test_dice_ce_dice_term_versus_smp():
    """The docstring's statement: smp DiceLoss(mode="multiclass") = (#present / C) x seglib's Dice term."""
    from segmentation_models_pytorch.losses import DiceLoss

    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 6, 5, generator=g, dtype=torch.float64)
    target = torch.randint(0, 2, (2, 6, 5), generator=g)  # classes 2 and 3 absent: the two differ
    target[0, 0, :2] = 255
    ours = build_loss("dice_ce", 4, ignore_index=255).dice_term(logits, target)
    smp = DiceLoss("multiclass", from_logits=True, ignore_index=255)(logits, target)
    assert smp.item() == pytest.approx(2 / 4 * ours.item(), rel=1e-6)
    assert abs(smp.item() - ours.item()) > 0.05
    full = torch.arange(4).repeat_interleave(8).view(1, 4, 8) % 4  # every class present: the two agree
    logits = torch.randn(1, 4, 4, 8, generator=g, dtype=torch.float64)
    assert DiceLoss("multiclass", from_logits=True)(logits, full).item() == pytest.approx(
        build_loss("dice_ce", 4).dice_term(logits, full).item(), rel=1e-6)
