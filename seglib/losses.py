"""Segmentation losses (registry :data:`LOSSES`), as the original projects define them.

Multi-class losses take ``logits`` ``float N x C x H x W`` and ``target`` ``int64 N x H x W`` (class
ids, ``ignore_index`` pixels excluded) and return a scalar tensor. Binary losses take ``logits`` and a
``float`` target of the same ``N x 1 x H x W`` shape with values in {0, 1}.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import Registry

LOSSES = Registry("loss")


def one_hot(target: torch.Tensor, n_classes: int, ignore_index: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot encode class ids and build the valid-pixel mask.

    Args:
        target: ``int64 N x H x W`` class ids in ``0..C-1`` or ``ignore_index``.
        n_classes: C.
        ignore_index: label excluded from the loss, or None.

    Returns:
        ``(onehot float32 N x C x H x W, valid float32 N x 1 x H x W)``; ignored pixels are all-zero in
        ``onehot`` and 0 in ``valid``.

    Raises:
        RuntimeError: (from ``F.one_hot``) a value outside ``0..C-1`` that is not ``ignore_index``; datasets
            validate masks on load, so this is not re-checked here (no host synchronisation per step).
    """
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    t = torch.where(valid, target, torch.zeros_like(target))
    onehot = F.one_hot(t, n_classes).permute(0, 3, 1, 2).float()
    valid = valid.unsqueeze(1).float()
    return onehot * valid, valid


def soft_dice_loss(probs: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-7) -> torch.Tensor:
    """``1 - 2 sum(p t) / (sum(p) + sum(t) + eps)`` over all elements (micro, whole batch).

    Source: catalyst 20.12 ``catalyst.contrib.nn.DiceLoss`` (``metrics.dice``, sigmoid activation),
    as used by the JetCar notebook. ``weight`` (broadcastable, 0/1) removes ignored pixels.
    """
    if weight is not None:
        probs, target = probs * weight, target * weight
    inter = (probs * target).sum()
    return 1.0 - 2.0 * inter / (probs.sum() + target.sum() + eps)


def soft_jaccard_loss(probs: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-7) -> torch.Tensor:
    """``1 - sum(p t) / (sum(p) + sum(t) - sum(p t) + eps)`` over all elements (IoU loss).

    Source: catalyst 20.12 ``catalyst.contrib.nn.IoULoss`` (``metrics.iou``, sigmoid activation), as
    used by the JetCar notebook.
    """
    if weight is not None:
        probs, target = probs * weight, target * weight
    inter = (probs * target).sum()
    union = probs.sum() + target.sum() - inter
    return 1.0 - inter / (union + eps)


class DiceIoUBCELoss(nn.Module):
    """JetCar's loss: ``w_dice * Dice + w_iou * IoU + w_bce * BCE`` on one-hot targets (defaults 1, 1, 0.8).

    Each term treats the C output channels as independent sigmoid probabilities (catalyst 20.12
    ``DiceLoss``/``IoULoss``/``BCEWithLogitsLoss`` on one-hot masks; aggregated with
    ``MetricAggregationCallback(mode="weighted_sum", {"loss_dice": 1, "loss_iou": 1, "loss_bce": 0.8})``
    in StefansAI/JetCar ``jetcar_pytorch_unet_mobilenetv2_catalyst.ipynb``). Pixels equal to
    ``ignore_index`` count in no term.

    Shape:
        logits ``float N x C x H x W``; target ``int64 N x H x W``; returns a scalar.
    """

    def __init__(self, n_classes: int, ignore_index: int | None = None, dice_weight: float = 1.0,
                 iou_weight: float = 1.0, bce_weight: float = 0.8):
        super().__init__()
        self.n_classes, self.ignore_index = n_classes, ignore_index
        self.w = (dice_weight, iou_weight, bce_weight)

    def terms(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The three unweighted terms ``{"dice", "iou", "bce"}`` (scalars)."""
        onehot, valid = one_hot(target, self.n_classes, self.ignore_index)
        logits = logits.float()
        probs = torch.sigmoid(logits)
        bce = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
        n_valid = (valid.sum() * self.n_classes).clamp(min=1)
        return {
            "dice": soft_dice_loss(probs, onehot, valid),
            "iou": soft_jaccard_loss(probs, onehot, valid),
            "bce": (bce * valid).sum() / n_valid,
        }

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = self.terms(logits, target)
        return self.w[0] * t["dice"] + self.w[1] * t["iou"] + self.w[2] * t["bce"]


class CrossEntropyLoss(nn.CrossEntropyLoss):
    """Softmax cross-entropy over C classes with ``ignore_index`` (mean over valid pixels).

    Shape: logits ``float N x C x H x W``; target ``int64 N x H x W``; returns a scalar.
    """

    def __init__(self, n_classes: int, ignore_index: int | None = None, **_):
        super().__init__(ignore_index=-100 if ignore_index is None else ignore_index)
        self.n_classes = n_classes

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(logits.float(), target)


class SoftmaxDiceCELoss(nn.Module):
    """Cross-entropy + (1 - mean soft Dice over classes) on softmax probabilities (a common multiclass default).

    Dice per class c: ``2 sum(p_c t_c) / (sum(p_c) + sum(t_c) + eps)`` over the batch, averaged over
    classes present in the target (Milletari et al. 2016, V-Net; smp ``DiceLoss(mode="multiclass")``).

    Shape: logits ``float N x C x H x W``; target ``int64 N x H x W``; returns a scalar.
    """

    def __init__(self, n_classes: int, ignore_index: int | None = None, eps: float = 1e-7):
        super().__init__()
        self.ce = CrossEntropyLoss(n_classes, ignore_index)
        self.n_classes, self.ignore_index, self.eps = n_classes, ignore_index, eps

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        onehot, valid = one_hot(target, self.n_classes, self.ignore_index)
        probs = torch.softmax(logits.float(), 1) * valid
        inter = (probs * onehot).sum((0, 2, 3))
        denom = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
        dice = 2 * inter / (denom + self.eps)
        present = (onehot.sum((0, 2, 3)) > 0).float()
        dice_loss = 1 - (dice * present).sum() / present.sum().clamp(min=1)
        return self.ce(logits, target) + dice_loss


LOSSES.register("dice_iou_bce", DiceIoUBCELoss)
LOSSES.register("ce", CrossEntropyLoss)
LOSSES.register("dice_ce", SoftmaxDiceCELoss)


def build_loss(name: str, n_classes: int, ignore_index: int | None = None, **kwargs) -> nn.Module:
    """Instantiate the registered loss ``name``. Raises ``KeyError`` listing valid names."""
    return LOSSES.get(name)(n_classes=n_classes, ignore_index=ignore_index, **kwargs)

# one registry for every task: the binary (issue 4) and depth + mask (issue 3) losses register here too
from . import depth_losses as _depth_losses  # noqa: E402,F401
from . import losses_binary as _losses_binary  # noqa: E402,F401
