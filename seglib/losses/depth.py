"""Losses of the depth + mask model, as seed 000 defines them, with invalid depth pixels left out.

Sources: shan18/Depth-Estimation-Segmentation ``loss.py`` (``RmseBceDiceLoss``, ``SsimDiceLoss``,
``RmseBceLoss``) and ``tensornet/model/loss/{rmse,dice,ssim}.py`` (torch-tensornet 0.9.0, MIT). The SSIM
is pytorch-msssim's (Gaussian window 11, sigma 1.5, K = (0.01, 0.03), data range 1, no padding), which
tensornet's ``ssim.py`` copies.

Every loss takes ``outputs = (depth_logits, mask_logits)``, each ``float N x 1 x H x W``, and
``target = {"depth": float N x 1 x H x W in [0, 1] (1 = near), "mask": float N x 1 x H x W in {0, 1},
"valid": float N x 1 x H x W in {0, 1}}`` (``valid`` optional: all pixels valid) and returns a scalar
tensor. Depth terms compare ``sigmoid(depth_logits)`` with the target depth on valid pixels only.
``n_classes``/``ignore_index`` are accepted (and unused) so :func:`seglib.losses.build_loss` can build them.
RMSE, SSIM and Dice come from :mod:`seglib.losses.functional`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .functional import masked_rmse, masked_ssim, soft_dice
from .registry import LOSSES


def dice_loss(probs: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """tensornet ``DiceLoss``: ``1 - (2 sum(p t) + smooth) / (sum(p) + sum(t) + smooth)`` over the whole batch
    (:func:`~seglib.losses.functional.soft_dice`). ``probs`` in [0, 1], ``target`` in {0, 1}, same shape
    (any); returns a 0-dim float32 tensor in [0, 1]."""
    return 1.0 - soft_dice(probs.float(), target.float(), smooth=smooth)


def _parts(outputs, target):
    depth_logits, mask_logits = outputs
    return (torch.sigmoid(depth_logits.float()), mask_logits.float(), target["depth"], target["mask"].float(),
            target.get("valid"))


class RmseBceDiceLoss(nn.Module):
    """``depth_weight x RMSE(sigmoid(depth), depth) + bce_weight x BCE(mask) + dice_weight x Dice(mask)``.

    Defaults are seed 000's "RMSE + (BCE & Dice)": 2, 1, 2 with Dice smooth 1e-6 (tensornet
    ``BCEDiceLoss``). RMSE over valid depth pixels; BCE (with logits, mean) and Dice over all pixels.
    """

    def __init__(self, depth_weight: float = 2.0, bce_weight: float = 1.0, dice_weight: float = 2.0,
                 dice_smooth: float = 1e-6, n_classes: int | None = None, ignore_index: int | None = None):
        super().__init__()
        self.w = (depth_weight, bce_weight, dice_weight)
        self.dice_smooth = dice_smooth

    def terms(self, outputs, target) -> dict[str, torch.Tensor]:
        """Unweighted ``{"rmse", "bce", "dice"}`` scalars."""
        depth, mask_logits, t_depth, t_mask, valid = _parts(outputs, target)
        return {"rmse": masked_rmse(depth, t_depth, valid),
                "bce": F.binary_cross_entropy_with_logits(mask_logits, t_mask),
                "dice": dice_loss(torch.sigmoid(mask_logits), t_mask, self.dice_smooth)}

    def forward(self, outputs, target) -> torch.Tensor:
        t = self.terms(outputs, target)
        return self.w[0] * t["rmse"] + self.w[1] * t["bce"] + self.w[2] * t["dice"]


class SsimDiceLoss(nn.Module):
    """``ssim_weight x (1 - SSIM(sigmoid(depth), depth)) + dice_weight x Dice(sigmoid(mask), mask)``.

    Defaults are seed 000's "SSIM + Dice": 2 and 1 with Dice smooth 1 (tensornet ``DiceLoss()``); SSIM
    as :func:`masked_ssim` (windows touching invalid depth pixels are left out).
    """

    def __init__(self, ssim_weight: float = 2.0, dice_weight: float = 1.0, dice_smooth: float = 1.0,
                 win_size: int = 11, win_sigma: float = 1.5, n_classes: int | None = None,
                 ignore_index: int | None = None):
        super().__init__()
        self.w = (ssim_weight, dice_weight)
        self.dice_smooth, self.win = dice_smooth, (win_size, win_sigma)

    def terms(self, outputs, target) -> dict[str, torch.Tensor]:
        """Unweighted ``{"ssim_loss": 1 - SSIM, "dice"}`` scalars."""
        depth, mask_logits, t_depth, t_mask, valid = _parts(outputs, target)
        return {"ssim_loss": 1.0 - masked_ssim(depth, t_depth.float(), valid, *self.win),
                "dice": dice_loss(torch.sigmoid(mask_logits), t_mask, self.dice_smooth)}

    def forward(self, outputs, target) -> torch.Tensor:
        t = self.terms(outputs, target)
        return self.w[0] * t["ssim_loss"] + self.w[1] * t["dice"]


class RmseBceLoss(nn.Module):
    """``depth_weight x RMSE + bce_weight x BCE`` (seed 000's rejected "RMSE + BCE"; defaults 2, 1)."""

    def __init__(self, depth_weight: float = 2.0, bce_weight: float = 1.0, n_classes: int | None = None,
                 ignore_index: int | None = None):
        super().__init__()
        self.w = (depth_weight, bce_weight)

    def forward(self, outputs, target) -> torch.Tensor:
        depth, mask_logits, t_depth, t_mask, valid = _parts(outputs, target)
        return (self.w[0] * masked_rmse(depth, t_depth, valid)
                + self.w[1] * F.binary_cross_entropy_with_logits(mask_logits, t_mask))


LOSSES.register("rmse_bce_dice", RmseBceDiceLoss)
LOSSES.register("ssim_dice", SsimDiceLoss)
LOSSES.register("rmse_bce", RmseBceLoss)

DEPTH_LOSSES = ("rmse_bce_dice", "ssim_dice", "rmse_bce")
"""The losses for ``(depth_logits, mask_logits)`` outputs: the names :class:`seglib.depthseg.DepthSegStudy` accepts."""
