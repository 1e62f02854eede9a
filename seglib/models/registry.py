"""The model registry :data:`MODELS` and :func:`build_model`; each model module registers its factories here.

Every registered model maps a normalised input (``float32 N x 3 x H x W``, or the dict of inputs a model
documents) to logits (``float N x C x H x W``, or the tuple of outputs it documents).
"""

from __future__ import annotations

from torch import nn

from ..registry import Registry

MODELS = Registry("model")


def build_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model ``name`` with ``kwargs``.

    Raises:
        KeyError: an unknown name (the message lists the valid ones); whatever the factory raises for bad
            arguments.
    """
    return MODELS.get(name)(**kwargs)
