"""The loss registry :data:`LOSSES` and :func:`build_loss`.

Task modules (:mod:`.multiclass`, :mod:`.binary`, :mod:`.depth`) register into it when imported;
:mod:`seglib.losses` imports all three, so ``from seglib.losses import build_loss`` sees every loss.
"""

from __future__ import annotations

from torch import nn

from ..registry import Registry

LOSSES = Registry("loss")
"""Name -> loss factory ``(n_classes=..., ignore_index=..., **kwargs) -> nn.Module``."""


def build_loss(name: str, n_classes: int, ignore_index: int | None = None, **kwargs) -> nn.Module:
    """Instantiate the registered loss ``name`` (case-insensitive).

    Args:
        name: a name in :data:`LOSSES`, e.g. ``"dice_iou_bce"``, ``"bce_dice"``, ``"rmse_bce_dice"``.
        n_classes: number of classes C of the model output (binary losses accept 1 or 2, depth losses ignore it).
        ignore_index: label excluded from the loss, or None.
        **kwargs: the loss's own arguments (term weights, smoothing, ...).

    Raises:
        KeyError: unknown ``name`` (the message lists the valid names).
        ValueError / TypeError: arguments the loss rejects.
    """
    return LOSSES.get(name)(n_classes=n_classes, ignore_index=ignore_index, **kwargs)
