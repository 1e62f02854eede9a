"""Multi-class segmentation losses: ``dice_iou_bce`` (JetCar), ``ce`` and ``dice_ce``.

Every loss takes ``logits`` ``float N x C x H x W`` and ``target`` ``int64 N x H x W`` (class ids in
``0..C-1`` or ``ignore_index``) and returns a 0-dim ``float32`` tensor. Pixels equal to ``ignore_index``
count in no term. A batch whose every pixel is ``ignore_index`` gives exactly 0 with the autograd graph
kept (gradient 0), never NaN: the trainer weights each batch's loss by :func:`seglib.tensors.valid_samples`,
so such a batch leaves the epoch mean unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..tensors import one_hot
from .functional import soft_dice, soft_jaccard
from .registry import LOSSES


@LOSSES.register("dice_iou_bce")
class DiceIoUBCELoss(nn.Module):
    """JetCar's loss: ``w_dice * Dice + w_iou * IoU + w_bce * BCE`` on one-hot targets (defaults 1, 1, 0.8).

    Each term treats the C output channels as independent sigmoid probabilities ``p`` against the one-hot
    target ``t``, summed over every element of the batch (micro):

    * Dice ``1 - 2 sum(p t) / (sum(p) + sum(t) + 1e-7)`` (:func:`~seglib.losses.functional.soft_dice`),
    * IoU ``1 - sum(p t) / (sum(p) + sum(t) - sum(p t) + 1e-7)`` (:func:`~seglib.losses.functional.soft_jaccard`),
    * BCE with logits, mean over valid pixels x C.

    Source: catalyst 20.12 ``DiceLoss``/``IoULoss``/``BCEWithLogitsLoss`` on one-hot masks, aggregated with
    ``MetricAggregationCallback(mode="weighted_sum", {"loss_dice": 1, "loss_iou": 1, "loss_bce": 0.8})``
    in StefansAI/JetCar ``jetcar_pytorch_unet_mobilenetv2_catalyst.ipynb``. A batch without a valid pixel
    gives 0 for every term (Catalyst's Dice/IoU of empty masks), not 1.

    Shape:
        logits ``float N x C x H x W``; target ``int64 N x H x W``; returns a scalar.
    """

    def __init__(self, n_classes: int, ignore_index: int | None = None, dice_weight: float = 1.0,
                 iou_weight: float = 1.0, bce_weight: float = 0.8):
        super().__init__()
        self.n_classes, self.ignore_index = n_classes, ignore_index
        self.w = (dice_weight, iou_weight, bce_weight)

    def terms(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The three unweighted terms ``{"dice", "iou", "bce"}`` (0-dim float32 tensors, each in [0, 1] but BCE >= 0)."""
        onehot, valid = one_hot(target, self.n_classes, self.ignore_index)
        logits = logits.float()
        probs = torch.sigmoid(logits)
        bce = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
        n_valid = valid.sum()
        has_valid = (n_valid > 0).float()
        return {
            "dice": has_valid * (1.0 - soft_dice(probs, onehot, weight=valid, eps=1e-7)),
            "iou": has_valid * (1.0 - soft_jaccard(probs, onehot, weight=valid, eps=1e-7)),
            "bce": (bce * valid).sum() / (n_valid * self.n_classes).clamp(min=1),
        }

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The weighted sum of :meth:`terms`."""
        t = self.terms(logits, target)
        return self.w[0] * t["dice"] + self.w[1] * t["iou"] + self.w[2] * t["bce"]


@LOSSES.register("ce")
class CrossEntropyLoss(nn.CrossEntropyLoss):
    """Softmax cross-entropy over C classes, mean over the pixels that are not ``ignore_index``.

    ``sum(CE) / max(#valid, 1)``: equal to ``F.cross_entropy(..., ignore_index=...)`` when some pixel is
    valid, and 0 (not NaN, graph kept) when none is.

    Shape: logits ``float N x C x H x W``; target ``int64 N x H x W``; returns a scalar.
    """

    def __init__(self, n_classes: int, ignore_index: int | None = None, **_):
        super().__init__(ignore_index=-100 if ignore_index is None else ignore_index)
        self.n_classes = n_classes

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The mean cross-entropy over valid pixels (see the class docstring)."""
        total = F.cross_entropy(logits.float(), target, ignore_index=self.ignore_index, reduction="sum")
        return total / (target != self.ignore_index).sum().clamp(min=1)


@LOSSES.register("dice_ce")
class SoftmaxDiceCELoss(nn.Module):
    """Cross-entropy (:class:`CrossEntropyLoss`) + soft Dice loss on softmax probabilities.

    Dice of class c over the batch: ``D_c = 2 sum(p_c t_c) / (sum(p_c) + sum(t_c) + eps)`` (Milletari et al.
    2016, V-Net, linear form; ignored pixels removed from ``p`` and ``t``). The Dice term is the mean of
    ``1 - D_c`` over the classes **present in the target** of the batch (0 when none is).

    Difference from smp: ``segmentation_models_pytorch.losses.DiceLoss(mode="multiclass")`` computes the same
    per-class terms (absent classes set to 0) but divides their sum by **all C classes**, so
    ``smp = (#present / C) x seglib`` (up to ``eps``: smp clamps the denominator at ``eps``, seglib adds it).
    The two agree only when every class occurs in the batch.

    Shape: logits ``float N x C x H x W``; target ``int64 N x H x W``; returns a scalar.
    """

    def __init__(self, n_classes: int, ignore_index: int | None = None, eps: float = 1e-7):
        super().__init__()
        self.ce = CrossEntropyLoss(n_classes, ignore_index)
        self.n_classes, self.ignore_index, self.eps = n_classes, ignore_index, eps

    def dice_term(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean over present classes of ``1 - D_c`` (a 0-dim tensor in [0, 1]; 0 when no class is present)."""
        onehot, valid = one_hot(target, self.n_classes, self.ignore_index)
        probs = torch.softmax(logits.float(), 1)
        dice = soft_dice(probs, onehot, dims=(0, 2, 3), weight=valid, eps=self.eps)
        present = (onehot.sum((0, 2, 3)) > 0).float()
        n_present = present.sum()
        return (n_present > 0).float() * (1 - (dice * present).sum() / n_present.clamp(min=1))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy + :meth:`dice_term`."""
        return self.ce(logits, target) + self.dice_term(logits, target)
