"""Binary segmentation losses of seed 004, registered in :data:`seglib.losses.LOSSES`.

Every loss takes ``logits`` ``float N x 1 x H x W`` (one logit per pixel) and a target of class ids
``int64 N x H x W`` in {0, 1} (what :class:`seglib.data.datasets.SegmentationDataset` gives with
``n_classes=2``) or a ``float N x 1 x H x W`` target in {0, 1}, and returns a scalar ``float32`` tensor.
``p = sigmoid(logits)``, ``t`` the target; sums run over the whole mini-batch (every pixel of every
image), as the Keras ``dice_coef`` of the seed's era did.

* ``dice``: ``L_D = 1 - (2 sum(p t) + s) / (sum(p) + sum(t) + s)``, smoothing ``s = 1`` (soft Dice,
  Milletari, Navab and Ahmadi, "V-Net", 3DV 2016, there with squared sums in the denominator;
  the linear form and ``s = 1`` are those of the same EE-782 assignment's ``utility/loss.py``).
* ``inverse_dice``: the Dice loss of the background, ``L_ID = L_D(1 - p, 1 - t)``.
* ``switching``: ``L_S = lambda L_D + (1 - lambda) L_ID`` with ``lambda = gamma`` if the mini-batch's
  foreground fraction ``sum(t) / #pixels > threshold`` else ``1 - gamma`` (D. Anand, G. Patel, Y. Dang,
  A. Sethi, "Switching Loss for Generalized Nucleus Detection in Histopathology", MICCAI 2020,
  arXiv:2008.03750). Defaults ``threshold = 0.2``, ``gamma = 0.8`` and the ``-log`` form
  ``-lambda log(D) - (1 - lambda) log(ID)`` (``log=True``) follow the authors' lab code
  (MEDAL-IITB/Lung-Segmentation, ``int_custom_loss``); the paper's own values could not be checked.
* ``bce``: mean binary cross-entropy with logits; ``bce_dice``, ``bce_inverse_dice`` and
  ``bce_switching`` add ``bce_weight x BCE`` (default 1) to the Dice-type term. Seed 004's "switching
  loss" values above 1 (1.41-1.51) can only come from such a BCE + switching sum.

Every Dice term is :func:`seglib.losses.functional.soft_dice` (the one soft overlap core). Constructors raise
``ValueError`` for ``n_classes`` other than 1 or 2 or a non-None ``ignore_index``; ``forward`` raises
``ValueError`` (from :func:`seglib.tensors.binary_target`) for logits that are not ``N x 1 x H x W`` or a
target of another shape.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..tensors import binary_target
from .functional import soft_dice
from .registry import LOSSES

BINARY_LOSSES = ("bce", "dice", "bce_dice", "inverse_dice", "bce_inverse_dice", "switching", "bce_switching")
"""The losses for one-logit (``N x 1 x H x W``) outputs, in seed 004's order."""


class _BinaryLoss(nn.Module):
    """Shared argument handling: ``n_classes`` must be 1 or 2 and ``ignore_index`` None."""

    def __init__(self, n_classes: int = 2, ignore_index: int | None = None, bce_weight: float = 0.0,
                 smooth: float = 1.0):
        super().__init__()
        if n_classes not in (1, 2):
            raise ValueError(f"binary loss {type(self).__name__} needs N_CLASSES 1 or 2, got {n_classes}")
        if ignore_index is not None:
            raise ValueError(f"binary losses do not support IGNORE_INDEX (got {ignore_index}); set it to None")
        self.bce_weight, self.smooth = float(bce_weight), float(smooth)

    def region(self, p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The Dice-type term on probabilities ``p`` and float target ``t`` (``N x 1 x H x W``)."""
        raise NotImplementedError

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss of ``logits`` ``N x 1 x H x W`` against ``target`` (see the module docstring)."""
        logits = logits.float()
        t = binary_target(target, logits)
        loss = self.region(torch.sigmoid(logits), t)
        if self.bce_weight:
            loss = loss + self.bce_weight * F.binary_cross_entropy_with_logits(logits, t)
        return loss


class BCELoss(_BinaryLoss):
    """``mean(-(t log p + (1 - t) log(1 - p)))``, computed stably from logits."""

    def __init__(self, n_classes: int = 2, ignore_index: int | None = None):
        super().__init__(n_classes, ignore_index, bce_weight=1.0)

    def region(self, p, t):
        """No region term: BCE only."""
        return p.new_zeros(())


class DiceLoss(_BinaryLoss):
    """``L_D = 1 - (2 sum(p t) + s) / (sum(p) + sum(t) + s)`` (+ ``bce_weight`` x BCE); see the module docstring."""

    def region(self, p, t):
        """``L_D``."""
        return 1.0 - soft_dice(p, t, smooth=self.smooth)


class InverseDiceLoss(_BinaryLoss):
    """``L_ID = 1 - (2 sum((1-p)(1-t)) + s) / (sum(1-p) + sum(1-t) + s)``: the Dice loss of the background."""

    def region(self, p, t):
        """``L_ID``."""
        return 1.0 - soft_dice(1.0 - p, 1.0 - t, smooth=self.smooth)


class SwitchingLoss(_BinaryLoss):
    """Anand et al. 2020: ``lambda L_D + (1 - lambda) L_ID``, ``lambda`` switched per mini-batch.

    Args:
        threshold: foreground fraction ``f = sum(t) / #pixels`` of the mini-batch above which
            ``lambda = gamma``; at or below it ``lambda = 1 - gamma`` (an all-background batch gives
            ``f = 0``, so the background Dice gets weight ``gamma``).
        gamma: the larger of the two weights.
        log: use ``-lambda log(D) - (1 - lambda) log(ID)`` (D, ID the soft Dice scores), the form of the
            authors' lab code, instead of the linear ``lambda (1 - D) + (1 - lambda)(1 - ID)``.
        bce_weight: add ``bce_weight x BCE`` (0 for the pure switching loss).
        smooth: Dice smoothing ``s``.

    Raises:
        ValueError: ``threshold`` outside [0, 1] or ``gamma`` outside [0, 1].
    """

    def __init__(self, n_classes: int = 2, ignore_index: int | None = None, threshold: float = 0.2,
                 gamma: float = 0.8, log: bool = False, bce_weight: float = 0.0, smooth: float = 1.0):
        super().__init__(n_classes, ignore_index, bce_weight, smooth)
        if not (0.0 <= threshold <= 1.0 and 0.0 <= gamma <= 1.0):
            raise ValueError(f"switching loss needs threshold and gamma in [0, 1], got {threshold}, {gamma}")
        self.threshold, self.gamma, self.log = float(threshold), float(gamma), bool(log)

    def weight(self, t: torch.Tensor) -> torch.Tensor:
        """``lambda`` of this mini-batch (a 0-dim tensor, no host synchronisation)."""
        frac = t.sum() / max(t.numel(), 1)
        return torch.where(frac > self.threshold, t.new_tensor(self.gamma), t.new_tensor(1.0 - self.gamma))

    def region(self, p, t):
        """``lambda L_D + (1 - lambda) L_ID`` (or the ``-log`` form)."""
        lam = self.weight(t)
        d, inv = soft_dice(p, t, smooth=self.smooth), soft_dice(1.0 - p, 1.0 - t, smooth=self.smooth)
        if self.log:
            return -lam * torch.log(d) - (1.0 - lam) * torch.log(inv)
        return lam * (1.0 - d) + (1.0 - lam) * (1.0 - inv)


def _with_bce(cls):
    def make(n_classes: int = 2, ignore_index: int | None = None, bce_weight: float = 1.0, **kwargs):
        return cls(n_classes, ignore_index, bce_weight=bce_weight, **kwargs)

    make.__doc__ = f"``bce_weight`` x BCE + :class:`{cls.__name__}` (``bce_weight`` default 1)."
    return make


def _register() -> None:
    entries = {
        "bce": BCELoss, "dice": DiceLoss, "inverse_dice": InverseDiceLoss, "switching": SwitchingLoss,
        "bce_dice": _with_bce(DiceLoss), "bce_inverse_dice": _with_bce(InverseDiceLoss),
        "bce_switching": _with_bce(SwitchingLoss),
    }
    for name, factory in entries.items():
        LOSSES.register(name, factory)


_register()
