"""Segmentation losses, one registry (:data:`LOSSES`) for every task.

Layout (each module imports only :mod:`.registry`, :mod:`.functional` and :mod:`seglib.tensors`, never this
package, so there is no import cycle):

* :mod:`.registry` -- :data:`LOSSES` and :func:`build_loss`;
* :mod:`.functional` -- pure functions: the one soft Dice / Jaccard / Tversky core, masked RMSE, SSIM;
* :mod:`.multiclass` -- ``dice_iou_bce``, ``ce``, ``dice_ce`` (``N x C x H x W`` logits, class-id targets);
* :mod:`.binary` -- ``bce``, ``dice``, ``inverse_dice``, ``switching``, ``bce_*`` (:data:`BINARY_LOSSES`);
* :mod:`.depth` -- ``rmse_bce_dice``, ``ssim_dice``, ``rmse_bce`` (:data:`DEPTH_LOSSES`).

Importing this package imports the three task modules, so :data:`LOSSES` is complete.

Adding a loss: write an ``nn.Module`` taking ``(n_classes, ignore_index, **kwargs)`` in the task module and
decorate it with ``@LOSSES.register("name")``.
"""

from . import binary, depth, multiclass  # noqa: F401  (fill the registry)
from .binary import BINARY_LOSSES, BCELoss, DiceLoss, InverseDiceLoss, SwitchingLoss
from .depth import DEPTH_LOSSES, RmseBceDiceLoss, RmseBceLoss, SsimDiceLoss
from .functional import masked_rmse, masked_ssim, soft_dice, soft_jaccard, ssim_map, tversky_index
from .multiclass import CrossEntropyLoss, DiceIoUBCELoss, SoftmaxDiceCELoss
from .registry import LOSSES, build_loss

__all__ = [
    "BINARY_LOSSES", "BCELoss", "CrossEntropyLoss", "DEPTH_LOSSES", "DiceIoUBCELoss", "DiceLoss", "InverseDiceLoss",
    "LOSSES", "RmseBceDiceLoss", "RmseBceLoss", "SoftmaxDiceCELoss", "SsimDiceLoss", "SwitchingLoss", "build_loss",
    "masked_rmse", "masked_ssim", "soft_dice", "soft_jaccard", "ssim_map", "tversky_index",
]
