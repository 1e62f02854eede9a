"""Learning-rate search, two ways, each probe from a fresh seeded model; costs counted in optimizer steps.

(a) :func:`decade_search`, seed 004's procedure: one short training per decade 1e-5 ... 1e0, then a
    binary search on the leading digit (1..9) inside the best decade. The score of a probe is its mean
    training loss over the last quarter of its steps (lower is better; NaN, inf or a collapsed network
    whose output is constant counts as worst, see :meth:`Prober._step`). The
    digit search assumes the score is unimodal in the digit: compare digits ``m`` and ``m + 1`` and keep
    the half that holds the smaller; the answer is the best LR probed in the decade. Every distinct LR
    is trained once (cached).
(b) :func:`range_test`, the LR range test (L. N. Smith, "Cyclical Learning Rates for Training Neural
    Networks", WACV 2017; the "LR finder" of fastai): one training whose LR grows exponentially from
    ``lr_min`` to ``lr_max``, loss smoothed by a bias-corrected exponential moving average (beta 0.98),
    stopped when the smoothed loss exceeds 4x its minimum. Suggestion rule: the LR at the minimum of
    the smoothed loss divided by 10 (fastai's ``lr_min``, "one order of magnitude before the loss
    blows up"); the steepest descent point is reported too.

:class:`Prober` runs both on real data: every probe rebuilds the model with the same seed and replays
the same batch order, so probes differ only in the LR.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..runtime import seed_everything
from ..train.lr_finder import RangeTestResult, range_test, suggest_lr  # noqa: F401  (the one range test)
from ..train.optim import build_optimizer

DECADES = (-5, -4, -3, -2, -1, 0)
COLLAPSE_STD = 1e-3
"""A probe's network counts as collapsed (diverged) when the logit std over a batch falls below this
fraction of the fresh model's."""
SCORE_VERSION = 4
"""Bumped when probe scores change (score rule, collapse test, model initialisation), so cached LR-search
results are not reused across versions."""


def _finite(score: float) -> float:
    return score if score is not None and math.isfinite(score) else math.inf


def probe_score(losses) -> float:
    """Mean of the last quarter (at least one) of a probe's per-step losses; inf if any is NaN/inf."""
    losses = np.asarray(losses, np.float64)
    if losses.size == 0 or not np.all(np.isfinite(losses)):
        return math.inf
    k = max(1, len(losses) // 4)
    return float(losses[-k:].mean())


@dataclass
class DecadeResult:
    """Outcome of :func:`decade_search`: ``lr`` found, every probe ``[(lr, score)]`` in the order run,
    ``best_decade`` exponent, and ``steps`` = probes x ``steps_per_probe``."""

    lr: float
    probes: list = field(default_factory=list)
    best_decade: int = 0
    steps: int = 0

    def to_dict(self) -> dict:
        """Plain JSON-able dict of the fields."""
        return asdict(self)


def decade_search(score: Callable[[float], float], decades=DECADES, steps_per_probe: int = 1) -> DecadeResult:
    """Seed 004's search: best decade, then binary search on the leading digit.

    Args:
        score: ``lr -> probe score`` (lower is better); called once per distinct LR.
        decades: exponents k of the first-stage LRs ``10**k``.
        steps_per_probe: optimizer steps one probe costs (for the cost report).

    Returns:
        A :class:`DecadeResult`; ``lr = digit x 10**best_decade``: the best-scoring LR probed in that
        decade. The bisection decides which digits are probed; with noisy probes its end point can
        score worse than a digit it passed (e.g. the decade's own 1 x 10**k), so the best probed wins.

    Raises:
        ValueError: no decades.
    """
    if not decades:
        raise ValueError("decade_search needs at least one decade exponent, e.g. (-5, ..., 0)")
    cache: dict[float, float] = {}
    order: list[tuple[float, float]] = []

    def f(lr: float) -> float:
        lr = float(f"{lr:.6g}")
        if lr not in cache:
            cache[lr] = _finite(score(lr))
            order.append((lr, cache[lr]))
        return cache[lr]

    best_k = min(decades, key=lambda k: (f(10.0 ** k), k))
    lo, hi = 1, 9
    while lo < hi:
        mid = (lo + hi) // 2
        if f(mid * 10.0 ** best_k) <= f((mid + 1) * 10.0 ** best_k):
            hi = mid
        else:
            lo = mid + 1
    inside = [(lr, sc) for lr, sc in order if 10.0 ** best_k <= lr < 10.0 ** (best_k + 1) * (1 - 1e-9)]
    lr = min(inside, key=lambda p: (p[1], p[0]))[0]  # best probed, not just the bisection's end point
    return DecadeResult(lr=lr, probes=order, best_decade=int(best_k), steps=len(order) * int(steps_per_probe))


class Prober:
    """Short trainings on in-memory batches for the LR searches.

    Args:
        build_model: ``() -> nn.Module``, called after seeding, so every probe starts from the same weights.
        inputs: ``float N x C x H x W`` training images (not augmented); targets: matching targets.
        loss_fn: ``(logits, targets) -> scalar``.
        batch_size: images per step; one epoch = ``ceil(N / batch_size)`` steps (covers every image).
        seed: seed of the initial weights and the batch order.
        device: where to train.

    Raises:
        ValueError: no training images, or inputs and targets of different lengths.
    """

    def __init__(self, build_model, inputs: torch.Tensor, targets: torch.Tensor, loss_fn, batch_size: int,
                 seed: int = 0, device: str | torch.device = "cpu"):
        if len(inputs) == 0 or len(inputs) != len(targets):
            raise ValueError(f"need the same non-zero number of inputs ({len(inputs)}) and targets ({len(targets)})")
        self.build_model, self.loss_fn = build_model, loss_fn
        self.inputs, self.targets = inputs, targets
        self.batch_size, self.seed, self.device = int(batch_size), int(seed), torch.device(device)
        self.steps_per_epoch = math.ceil(len(inputs) / self.batch_size)
        self._ref_std: float | None = None

    def batches(self):
        """Endless ``(inputs, targets)`` batches: epoch e is the permutation ``default_rng([seed, e])``."""
        epoch = 0
        while True:
            epoch += 1
            order = torch.from_numpy(np.random.default_rng([self.seed, epoch]).permutation(len(self.inputs)))
            for i in range(0, len(order), self.batch_size):
                idx = order[i:i + self.batch_size]
                yield self.inputs[idx].to(self.device), self.targets[idx].to(self.device)

    def _fresh(self, optimizer: str, lr: float):
        self._ref_std = None
        seed_everything(self.seed)
        model = self.build_model().to(self.device).train()
        return model, build_optimizer(optimizer, model, lr)

    def _step(self, model, opt, x, t) -> float:
        """One optimizer step; returns the batch loss, or inf when the network has *collapsed*: its
        outputs on the batch are (nearly) constant -- logit std below ``COLLAPSE_STD`` times the std of
        the fresh model's first batch, e.g. every ReLU dead after a too-large step. A collapsed network
        only predicts the class prior, which a short probe's loss cannot tell from learning, so it counts
        as diverged."""
        out = model(x)
        loss = self.loss_fn(out, t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        std = float(out.detach().float().std())
        if self._ref_std is None:
            self._ref_std = std
        if not std > COLLAPSE_STD * self._ref_std:
            return math.inf
        return float(loss.detach())

    def train(self, optimizer: str, lr: float, steps: int) -> list[float]:
        """Per-step training losses of ``steps`` steps at constant ``lr`` from a fresh model."""
        model, opt = self._fresh(optimizer, lr)
        out, batches = [], self.batches()
        for _ in range(int(steps)):
            loss = self._step(model, opt, *next(batches))
            out.append(loss)
            if not math.isfinite(loss):
                break
        return out

    def range_test(self, optimizer: str, steps: int = 100, lr_min: float = 1e-7, lr_max: float = 10.0) -> RangeTestResult:
        """:func:`range_test` from a fresh model."""
        model, opt = self._fresh(optimizer, lr_min)
        batches = self.batches()

        def step(lr: float) -> float:
            for g in opt.param_groups:
                g["lr"] = lr
            return self._step(model, opt, *next(batches))

        return range_test(step, lr_min, lr_max, steps)
