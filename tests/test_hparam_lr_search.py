"""LR searches: seed 004's decade + binary search and Smith's range test (seglib.tune.lr_search)."""

from __future__ import annotations

import math

import pytest
import torch

from seglib.losses import BINARY_LOSSES, build_loss
from seglib.models import build_model
from seglib.tune.lr_search import Prober, decade_search, probe_score, range_test, suggest_lr


def test_decade_then_binary_search_on_a_known_curve():
    calls = []

    def score(lr):
        calls.append(lr)
        return (math.log10(lr) - math.log10(3e-3)) ** 2  # minimum at 3e-3

    res = decade_search(score, steps_per_probe=18)
    assert res.best_decade == -3 and res.lr == pytest.approx(3e-3)
    assert len(calls) == len(set(calls)) == len(res.probes)  # every LR trained once
    assert [lr for lr, _ in res.probes[:6]] == [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    assert len(res.probes) <= 6 + 7 and res.steps == 18 * len(res.probes)
    # a diverging probe (NaN/inf) counts as the worst
    res = decade_search(lambda lr: float("nan") if lr > 1e-3 else -lr)
    assert res.lr == pytest.approx(1e-3)


def test_probe_score():
    assert probe_score([4.0, 3.0, 2.0, 1.0]) == 1.0
    assert probe_score([8, 8, 8, 8, 8, 8, 3, 1]) == 2.0  # mean of the last quarter
    assert probe_score([1.0, float("nan")]) == math.inf and probe_score([]) == math.inf


def test_range_test_on_a_known_curve():
    def step(lr):  # loss falls until 1e-3, then rises and blows up
        x = math.log10(lr)
        return 1.0 + (x + 3) ** 2 if x < -1 else 1e3

    res = range_test(step, 1e-7, 10.0, steps=200)
    assert res.steps < 200  # stopped on divergence
    assert res.suggestion == pytest.approx(res.lr_at_min / 10)
    assert 1e-3 <= res.lr_at_min <= 1e-1 and res.steepest < res.lr_at_min
    lrs = [1e-4, 1e-3, 1e-2, 1e-1]
    assert suggest_lr(lrs, [3.0, 2.0, 1.0, 5.0])[0] == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="lr_min < lr_max"):
        range_test(step, 1.0, 0.1)


def test_prober_fresh_model_every_probe():
    assert "bce_dice" in BINARY_LOSSES
    torch.manual_seed(0)
    x = torch.randn(6, 3, 32, 32)
    t = (torch.rand(6, 32, 32) > 0.7).long()
    prober = Prober(lambda: build_model("unet", classes=1, width_divisor=32), x, t, build_loss("bce_dice", 2),
                    batch_size=4, seed=1)
    assert prober.steps_per_epoch == 2  # ceil(6 / 4): the last, short batch is not dropped
    a, b = prober.train("adam", 1e-2, 3), prober.train("adam", 1e-2, 3)
    c = prober.train("sgd", 1e-4, 3)
    assert a == b and len(a) == 3  # same initial weights and batches
    assert a[0] == pytest.approx(c[0])  # first loss is before any update: same fresh model
    rt = prober.range_test("adam", steps=8)
    assert rt.steps <= 8 and len(rt.lrs) == rt.steps and rt.lrs[0] == pytest.approx(1e-7)
    with pytest.raises(ValueError, match="non-zero"):
        Prober(lambda: None, x[:0], t[:0], None, 4)


def test_decade_search_returns_the_best_probe_when_the_bisection_is_fooled():
    # noisy, not unimodal: digit 1 of the best decade beats everything the bisection walks to
    scores = {1e-3: 1.16, 5e-3: 1.20, 6e-3: 1.27, 3e-3: 1.30, 4e-3: 1.29}
    res = decade_search(lambda lr: scores.get(float(f"{lr:.6g}"), 2.0))
    assert res.best_decade == -3 and res.lr == pytest.approx(1e-3)
