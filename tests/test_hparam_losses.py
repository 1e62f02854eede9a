"""Binary losses of the hyperparameter study against hand-computed values (seglib.losses.binary)."""

from __future__ import annotations

import math

import pytest
import torch

from seglib.losses import BINARY_LOSSES, LOSSES, SwitchingLoss, build_loss

# p = sigmoid(logits) = [0.5, 0.75, 0.25, 0.8] on a 1 x 1 x 2 x 2 batch
LOGITS = torch.tensor([0.0, math.log(3), -math.log(3), math.log(4)]).view(1, 1, 2, 2)
FG = torch.tensor([1, 1, 0, 0]).view(1, 2, 2)  # int64 N x H x W class ids
BG = torch.zeros(1, 2, 2, dtype=torch.long)

# by hand, smoothing s = 1:
# sum p = 2.3, sum t = 2, sum p t = 1.25                  -> Dice = (2.5 + 1) / (2.3 + 2 + 1) = 3.5 / 5.3
# sum (1-p)(1-t) = 0.75 + 0.2 = 0.95, sum (1-p) = 1.7      -> inverse Dice = (1.9 + 1) / (1.7 + 2 + 1) = 2.9 / 4.7
# BCE = (ln 2 + ln 4/3 + ln 4/3 + ln 5) / 4
D, ID = 3.5 / 5.3, 2.9 / 4.7
BCE = (math.log(2) + 2 * math.log(4 / 3) + math.log(5)) / 4
# all background: sum t = 0 -> Dice = 1 / 3.3; inverse Dice = (2 * 1.7 + 1) / (1.7 + 4 + 1) = 4.4 / 6.7
D0, ID0 = 1 / 3.3, 4.4 / 6.7
BCE0 = (math.log(2) + math.log(4) + math.log(4 / 3) + math.log(5)) / 4


def value(name: str, target=FG, **kw) -> float:
    return float(build_loss(name, 2, **kw)(LOGITS, target))


@pytest.mark.parametrize("name,expected", [
    ("bce", BCE),
    ("dice", 1 - D),
    ("inverse_dice", 1 - ID),
    ("bce_dice", BCE + 1 - D),
    ("bce_inverse_dice", BCE + 1 - ID),
    ("switching", 0.8 * (1 - D) + 0.2 * (1 - ID)),  # foreground fraction 0.5 > 0.2 -> lambda = gamma = 0.8
    ("bce_switching", BCE + 0.8 * (1 - D) + 0.2 * (1 - ID)),
])
def test_losses_against_hand_values(name, expected):
    assert value(name) == pytest.approx(expected, abs=1e-6)


def test_every_loss_registered_and_float_target_equivalent():
    assert set(BINARY_LOSSES) <= set(LOSSES.names())
    for name in BINARY_LOSSES:
        a = build_loss(name, 2)(LOGITS, FG)
        b = build_loss(name, 2)(LOGITS, FG.view(1, 1, 2, 2).float())
        assert a.shape == () and a.dtype == torch.float32
        assert float(a) == pytest.approx(float(b), abs=1e-7)


def test_switching_all_background_batch():
    # f = 0 <= 0.2 -> lambda = 1 - gamma = 0.2: the background Dice dominates; finite loss and gradient
    assert value("switching", BG) == pytest.approx(0.2 * (1 - D0) + 0.8 * (1 - ID0), abs=1e-6)
    assert value("bce_switching", BG) == pytest.approx(BCE0 + 0.2 * (1 - D0) + 0.8 * (1 - ID0), abs=1e-6)
    assert value("switching", BG, log=True) == pytest.approx(-0.2 * math.log(D0) - 0.8 * math.log(ID0), abs=1e-6)
    logits = LOGITS.clone().requires_grad_(True)
    for name in BINARY_LOSSES:
        loss = build_loss(name, 2)(logits, BG)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(logits.grad).all(), name
        logits.grad = None


def test_switching_log_form_threshold_and_gamma():
    assert value("switching", log=True) == pytest.approx(-0.8 * math.log(D) - 0.2 * math.log(ID), abs=1e-6)
    # the threshold is strict: a foreground fraction equal to it gives lambda = 1 - gamma
    loss = SwitchingLoss(threshold=0.5, gamma=0.9)
    assert float(loss.weight(FG.float())) == pytest.approx(0.1)
    assert float(SwitchingLoss(threshold=0.4, gamma=0.9).weight(FG.float())) == pytest.approx(0.9)
    assert float(loss(LOGITS, FG)) == pytest.approx(0.1 * (1 - D) + 0.9 * (1 - ID), abs=1e-6)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="N x 1 x H x W"):
        build_loss("dice", 2)(torch.zeros(1, 2, 2, 2), FG)
    with pytest.raises(ValueError, match="does not match"):
        build_loss("bce", 2)(LOGITS, torch.zeros(1, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="IGNORE_INDEX"):
        build_loss("dice", 2, ignore_index=255)
    with pytest.raises(ValueError, match="N_CLASSES"):
        build_loss("dice", 5)
    with pytest.raises(ValueError, match="threshold and gamma"):
        SwitchingLoss(gamma=1.5)
    with pytest.raises(KeyError, match="bce_switching"):
        build_loss("switchingg", 2)
