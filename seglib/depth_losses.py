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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_msssim.ssim import _fspecial_gauss_1d, gaussian_filter
from torch import nn

from .losses import LOSSES


def masked_rmse(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None,
                eps: float = 1e-6) -> torch.Tensor:
    """``sqrt(sum(valid * (pred - target)^2) / sum(valid) + eps)`` over the whole batch.

    With every pixel valid this is tensornet's ``RMSELoss``: ``sqrt(MSE(pred, target) + 1e-6)``.
    Shapes: any, equal (``valid`` broadcastable, 0/1). A batch without valid pixels gives ``sqrt(eps)``.
    """
    err = (pred.float() - target.float()) ** 2
    if valid is None:
        return torch.sqrt(err.mean() + eps)
    valid = valid.float().expand_as(err)
    return torch.sqrt((err * valid).sum() / valid.sum().clamp(min=1.0) + eps)


def dice_loss(probs: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """tensornet ``DiceLoss``: ``1 - (2 sum(p t) + smooth) / (sum(p) + sum(t) + smooth)``, flattened over
    the whole batch. ``probs`` in [0, 1], ``target`` in {0, 1}, same shape; returns a scalar in [0, 1]."""
    p, t = probs.float().reshape(-1), target.float().reshape(-1)
    return 1.0 - (2.0 * (p * t).sum() + smooth) / (p.sum() + t.sum() + smooth)


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, win_size: int = 11, win_sigma: float = 1.5,
             k: tuple[float, float] = (0.01, 0.03)) -> torch.Tensor:
    """Per-window SSIM of ``x`` and ``y`` (``float N x C x H x W``), the map that ``pytorch_msssim.ssim``
    averages: ``N x C x (H - win + 1) x (W - win + 1)`` (a side shorter than the window is not filtered).

    Formula (Wang et al. 2004): ``((2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)) * ((2 s_xy + C2) / (s_x^2 +
    s_y^2 + C2))`` with ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2``, Gaussian-weighted statistics, L = data range.
    """
    x, y = x.float(), y.float()
    win = _fspecial_gauss_1d(win_size, win_sigma).repeat(x.shape[1], 1, 1, 1).to(x.device)
    c1, c2 = (k[0] * data_range) ** 2, (k[1] * data_range) ** 2
    mu_x, mu_y = gaussian_filter(x, win), gaussian_filter(y, win)
    s_x = gaussian_filter(x * x, win) - mu_x ** 2
    s_y = gaussian_filter(y * y, win) - mu_y ** 2
    s_xy = gaussian_filter(x * y, win) - mu_x * mu_y
    cs = (2 * s_xy + c2) / (s_x + s_y + c2)
    return ((2 * mu_x * mu_y + c1) / (mu_x ** 2 + mu_y ** 2 + c1)) * cs


def masked_ssim(x: torch.Tensor, y: torch.Tensor, valid: torch.Tensor | None = None, win_size: int = 11,
                win_sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM over images, each the mean of its :func:`ssim_map` over windows whose pixels are all valid.

    With every pixel valid this equals ``pytorch_msssim.ssim(x, y, data_range=1, win_size=11,
    win_sigma=1.5)`` (the original's ``SSIM(channel=1)``). Images without a fully valid window are left
    out; if none is left the result is 1 (no depth term) with the graph kept.

    Shapes: ``x``, ``y`` ``float N x 1 x H x W`` in [0, 1]; ``valid`` the same shape, 0/1, or None.
    """
    smap = ssim_map(x, y, 1.0, win_size, win_sigma)
    if valid is None:
        return smap.flatten(1).mean(1).mean()
    kh = win_size if x.shape[-2] >= win_size else 1
    kw = win_size if x.shape[-1] >= win_size else 1
    full = F.avg_pool2d(valid.float(), (kh, kw), stride=1) > 1.0 - 0.5 / (kh * kw)
    w = full.float().flatten(1)
    count = w.sum(1)
    per_image = (smap.flatten(1) * w).sum(1) / count.clamp(min=1.0)
    keep = count > 0
    if not bool(keep.any()):
        return smap.sum() * 0.0 + 1.0
    return per_image[keep].mean()


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
