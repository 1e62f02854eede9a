"""Pure loss functions: the one soft Dice / Jaccard / Tversky core, masked RMSE and SSIM.

Every region loss of seglib (multi-class, binary, depth) calls :func:`soft_dice`, :func:`soft_jaccard` or
:func:`tversky_index`, all three on the soft counts of :func:`overlap_stats`; nothing else in
:mod:`seglib.losses` writes an overlap formula. Dice and Jaccard are Tversky's ``alpha = beta = 0.5`` and ``1``;
they are written in their own (algebraically equal) form so that their floating-point results stay those of the
original projects' formulas bit for bit (checkpoints of earlier seglib versions resume to identical weights). All functions are differentiable, take ``float`` tensors and never synchronise with the host.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_msssim.ssim import _fspecial_gauss_1d, gaussian_filter


def overlap_stats(probs: torch.Tensor, target: torch.Tensor, dims=None,
                  weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft counts ``(I, P, T) = (sum(p t), sum(p), sum(t))`` over ``dims``.

    Args:
        probs: ``float`` probabilities in [0, 1], any shape.
        target: same shape as ``probs``, values in [0, 1] (usually {0, 1}).
        dims: axes summed over; None = every axis (one scalar for the whole batch).
        weight: optional 0/1 tensor broadcastable to ``probs`` (e.g. the valid-pixel mask ``N x 1 x H x W``);
            elements with weight 0 count in no sum.

    Returns:
        Three tensors of the reduced shape, dtype of ``probs``.
    """
    if weight is not None:
        probs, target = probs * weight, target * weight
    dims = tuple(range(probs.dim())) if dims is None else dims
    return (probs * target).sum(dims), probs.sum(dims), target.sum(dims)


def tversky_index(probs: torch.Tensor, target: torch.Tensor, alpha: float, beta: float, *, dims=None,
                  weight: torch.Tensor | None = None, smooth: float = 0.0, eps: float = 0.0) -> torch.Tensor:
    """Soft Tversky index ``(I + s) / (I + alpha FP + beta FN + s + eps)``, ``FP = P - I``, ``FN = T - I``.

    Source: A. Tversky, "Features of similarity", Psychological Review 1977; as a segmentation loss
    S. S. M. Salehi et al., "Tversky loss function for image segmentation", MLMI 2017. ``alpha = beta = 0.5``
    is the Dice coefficient and ``alpha = beta = 1`` the Jaccard index (IoU), see :func:`soft_dice`,
    :func:`soft_jaccard`. ``I, P, T`` from :func:`overlap_stats` (same ``dims`` and ``weight``).

    Args:
        probs, target: as in :func:`overlap_stats`.
        alpha, beta: weights of false positives and false negatives (>= 0).
        smooth: added to numerator and denominator (``s``); eps: added to the denominator only.

    Returns:
        The index, in [0, 1] for probabilities and non-negative ``smooth``; shape reduced over ``dims``.
        With ``smooth = eps = 0`` and nothing in ``probs`` or ``target`` the result is NaN (0 / 0): callers
        pass ``eps`` or ``smooth`` (every seglib loss does).
    """
    inter, p, t = overlap_stats(probs, target, dims, weight)
    return (inter + smooth) / (inter + alpha * (p - inter) + beta * (t - inter) + smooth + eps)


def soft_dice(probs: torch.Tensor, target: torch.Tensor, *, dims=None, weight: torch.Tensor | None = None,
              smooth: float = 0.0, eps: float = 0.0) -> torch.Tensor:
    """Soft Dice ``(2 I + s) / (P + T + s + eps)`` (Milletari, Navab, Ahmadi, "V-Net", 3DV 2016, linear form).

    Equal to :func:`tversky_index` with ``alpha = beta = 0.5`` (and ``s / 2``, ``eps / 2``). Arguments, shapes and
    range as there.
    """
    inter, p, t = overlap_stats(probs, target, dims, weight)
    return (2.0 * inter + smooth) / (p + t + smooth + eps)


def soft_jaccard(probs: torch.Tensor, target: torch.Tensor, *, dims=None, weight: torch.Tensor | None = None,
                 smooth: float = 0.0, eps: float = 0.0) -> torch.Tensor:
    """Soft Jaccard (IoU) ``(I + s) / (P + T - I + s + eps)``: :func:`tversky_index` with ``alpha = beta = 1``.

    Source: P. Jaccard 1901; as a loss on probabilities, catalyst 20.12 ``IoULoss`` (``eps = 1e-7``) and
    tensornet ``Learner._iou`` (``s = 1e-6``). Equal to :func:`tversky_index` with ``alpha = beta = 1``;
    arguments, shapes and range as there.
    """
    inter, p, t = overlap_stats(probs, target, dims, weight)
    return (inter + smooth) / (p + t - inter + smooth + eps)


def masked_rmse(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None,
                eps: float = 1e-6) -> torch.Tensor:
    """``sqrt(sum(valid (pred - target)^2) / sum(valid) + eps)`` over the whole batch (a 0-dim float32 tensor).

    With every pixel valid this is tensornet's ``RMSELoss``: ``sqrt(MSE(pred, target) + 1e-6)``.

    Args:
        pred, target: any equal shapes, e.g. ``float N x 1 x H x W`` depths in [0, 1].
        valid: 0/1 tensor broadcastable to ``pred``, or None (all valid). A batch without valid pixels
            gives ``sqrt(eps)`` (gradient 0).
    """
    err = (pred.float() - target.float()) ** 2
    if valid is None:
        return torch.sqrt(err.mean() + eps)
    valid = valid.float().expand_as(err)
    return torch.sqrt((err * valid).sum() / valid.sum().clamp(min=1.0) + eps)


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, win_size: int = 11, win_sigma: float = 1.5,
             k: tuple[float, float] = (0.01, 0.03)) -> torch.Tensor:
    """Per-window SSIM of ``x`` and ``y`` (``float N x C x H x W``), the map that ``pytorch_msssim.ssim``
    averages: ``N x C x (H - win + 1) x (W - win + 1)`` (a side shorter than the window is not filtered).

    Formula (Z. Wang et al., "Image quality assessment: from error visibility to structural similarity",
    IEEE TIP 2004): ``((2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)) * ((2 s_xy + C2) / (s_x^2 + s_y^2 + C2))``
    with ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2``, Gaussian-weighted statistics (window ``win_size``, sigma
    ``win_sigma``), ``L = data_range``. Values in [-1, 1].
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
    win_sigma=1.5)`` (seed 000's ``SSIM(channel=1)``). Images without a fully valid window are left
    out; if none is left the result is 1 (no depth term) with the graph kept.

    Args:
        x, y: ``float N x 1 x H x W`` in [0, 1]; valid: the same shape, 0/1, or None.

    Returns:
        A 0-dim float32 tensor in [-1, 1].
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
