"""Optimizer and LR-scheduler registries, and the encoder/decoder parameter groups.

``radam_lookahead`` is JetCar's optimizer: ``Lookahead(RAdam(params, lr, weight_decay=3e-4))`` with
the encoder at ``lr * encoder_lr_ratio`` (0.5) and weight decay 3e-5 (catalyst
``utils.process_model_params(model, layerwise_params={"encoder*": dict(lr=LR/2, weight_decay=3e-5)})``).
RAdam is ``torch.optim.RAdam`` (Liu et al. 2020); Lookahead is ``timm.optim.Lookahead`` (Zhang et al.
2019, k=6, alpha=0.5 by timm's defaults), both maintained.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models import encoder_parameter_names
from ..registry import Registry

OPTIMIZERS = Registry("optimizer")
SCHEDULERS = Registry("scheduler")


def param_groups(model: nn.Module, lr: float, weight_decay: float = 0.0, encoder_lr_ratio: float = 1.0,
                 encoder_weight_decay: float | None = None) -> list[dict]:
    """Split trainable parameters into an encoder group and a rest group.

    Returns:
        A list of ``{"params", "lr", "weight_decay", "name", "lr_ratio"}`` dicts (empty groups dropped);
        ``lr_ratio`` is the group's LR relative to the base LR, used by LR overrides on resume.
    """
    enc = encoder_parameter_names(model) if encoder_lr_ratio != 1.0 or encoder_weight_decay is not None else set()
    groups = {"encoder": [], "rest": []}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups["encoder" if name in enc else "rest"].append(p)
    ewd = weight_decay if encoder_weight_decay is None else encoder_weight_decay
    out = []
    if groups["encoder"]:
        out.append({"params": groups["encoder"], "lr": lr * encoder_lr_ratio, "weight_decay": ewd,
                    "name": "encoder", "lr_ratio": encoder_lr_ratio})
    if groups["rest"]:
        out.append({"params": groups["rest"], "lr": lr, "weight_decay": weight_decay, "name": "rest", "lr_ratio": 1.0})
    return out


@OPTIMIZERS.register("radam_lookahead")
def radam_lookahead(groups: list[dict], lr: float, k: int = 6, alpha: float = 0.5, **kw) -> torch.optim.Optimizer:
    """``timm.optim.Lookahead(torch.optim.RAdam(groups, lr))``."""
    from .. import _torchvision_guard

    _torchvision_guard.ensure_torchvision()
    from timm.optim import Lookahead

    return Lookahead(torch.optim.RAdam(groups, lr=lr, **kw), alpha=alpha, k=k)


OPTIMIZERS.register("adam", lambda groups, lr, **kw: torch.optim.Adam(groups, lr=lr, **kw))
OPTIMIZERS.register("adamw", lambda groups, lr, **kw: torch.optim.AdamW(groups, lr=lr, **kw))
OPTIMIZERS.register("radam", lambda groups, lr, **kw: torch.optim.RAdam(groups, lr=lr, **kw))
OPTIMIZERS.register("sgd", lambda groups, lr, momentum=0.9, **kw: torch.optim.SGD(groups, lr=lr, momentum=momentum, **kw))
OPTIMIZERS.register("rmsprop", lambda groups, lr, **kw: torch.optim.RMSprop(groups, lr=lr, **kw))
OPTIMIZERS.register("adagrad", lambda groups, lr, **kw: torch.optim.Adagrad(groups, lr=lr, **kw))
OPTIMIZERS.register("adamax", lambda groups, lr, **kw: torch.optim.Adamax(groups, lr=lr, **kw))
OPTIMIZERS.register("adadelta", lambda groups, lr, **kw: torch.optim.Adadelta(groups, lr=lr, **kw))


@SCHEDULERS.register("plateau")
def plateau(optimizer, mode: str = "min", factor: float = 0.25, patience: int = 5, min_lr: float = 0.0, **kw):
    """``ReduceLROnPlateau``, stepped once per epoch with the monitored validation value."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=factor, patience=patience,
                                                      min_lr=min_lr, **kw)


@SCHEDULERS.register("step")
def step_decay(optimizer, mode: str = "min", step_size: int = 100, gamma: float = 0.1, **_):
    """``StepLR``: multiply the LR by ``gamma`` every ``step_size`` epochs."""
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)


@SCHEDULERS.register("none")
def no_scheduler(optimizer, **_):
    """No LR schedule."""
    return None


def build_optimizer(name: str, model: nn.Module, lr: float, weight_decay: float = 0.0, encoder_lr_ratio: float = 1.0,
                    encoder_weight_decay: float | None = None, **kwargs) -> torch.optim.Optimizer:
    """Registered optimizer ``name`` over :func:`param_groups`. Raises ``KeyError`` listing valid names."""
    groups = param_groups(model, lr, weight_decay, encoder_lr_ratio, encoder_weight_decay)
    return OPTIMIZERS.get(name)(groups, lr=lr, **kwargs)


def build_scheduler(name: str, optimizer: torch.optim.Optimizer, mode: str = "min", **kwargs):
    """Registered scheduler ``name`` (may return None). ``mode`` comes from the monitored metric's direction."""
    return SCHEDULERS.get(name)(optimizer, mode=mode, **kwargs)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> list[float]:
    """Set every group's LR to ``lr * group["lr_ratio"]`` (an explicit override on resume); returns the new LRs."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_ratio", 1.0)
    return [g["lr"] for g in optimizer.param_groups]
