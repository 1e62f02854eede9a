"""Optimizer and LR-scheduler registries, and the encoder/decoder parameter groups.

``radam_lookahead`` is JetCar's optimizer: ``Lookahead(RAdam(params, lr, weight_decay=3e-4))`` with
the encoder at ``lr * encoder_lr_ratio`` (0.5) and weight decay 3e-5 (catalyst
``utils.process_model_params(model, layerwise_params={"encoder*": dict(lr=LR/2, weight_decay=3e-5)})``).
RAdam is ``torch.optim.RAdam`` (Liu et al. 2020); Lookahead is ``timm.optim.Lookahead`` (Zhang et al.
2019, k=6, alpha=0.5 by timm's defaults), both maintained.
"""

from __future__ import annotations

import math
import warnings

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


class WarmupCosine:
    """LR multiplier of step ``s`` (0-based): linear from ``1 / warmup_steps`` to 1 over ``warmup_steps``, then
    cosine to ``min_ratio`` at ``total_steps`` (I. Loshchilov and F. Hutter, "SGDR", ICLR 2017; warm-up as
    P. Goyal et al., "Accurate, Large Minibatch SGD", 2017). A plain object (not a lambda) so that
    ``LambdaLR.state_dict`` saves it."""

    def __init__(self, total_steps: int, warmup_steps: int, min_ratio: float = 0.0):
        self.total_steps, self.warmup_steps, self.min_ratio = int(total_steps), int(warmup_steps), float(min_ratio)

    def __call__(self, s: int) -> float:
        if s < self.warmup_steps:
            return (s + 1) / self.warmup_steps
        t = min(1.0, (s - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


@SCHEDULERS.register("onecycle")
def one_cycle(optimizer, mode: str = "min", total_steps: int | None = None, pct_start: float = 0.25,
              div_factor: float = 25.0, final_div_factor: float = 1e4, **_):
    """One-cycle policy (L. N. Smith and N. Topin, "Super-Convergence", 2019; fastai's ``fit_one_cycle``),
    stepped after every optimizer step: ``torch.optim.lr_scheduler.OneCycleLR`` over ``total_steps`` steps,
    each group's configured LR its maximum (``max_lr``), starting at ``max_lr / div_factor``, warming up
    (cosine) over the first ``pct_start`` of the steps, then annealing (cosine) to ``max_lr / div_factor /
    final_div_factor``; momentum (Adam's beta1) cycles 0.95 -> 0.85 -> 0.95 where the optimizer has one.

    Raises:
        ValueError: ``total_steps`` missing or < 1 (the trainer passes ``epochs x batches per epoch``).
    """
    if not total_steps or total_steps < 1:
        raise ValueError(f"scheduler 'onecycle' needs total_steps >= 1 (epochs x batches), got {total_steps}")
    if total_steps < 2:  # one step: no cycle to run, the configured LR
        return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(1, 1))
    # torch divides by each phase's length (pct_start x steps - 1, and the rest): keep both positive on short runs
    pct_start = min(max(pct_start, 1.01 / total_steps), 1 - 0.01 / total_steps)
    defaults = optimizer.defaults
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=int(total_steps),
        pct_start=pct_start, div_factor=div_factor, final_div_factor=final_div_factor, anneal_strategy="cos",
        cycle_momentum="momentum" in defaults or "betas" in defaults)


@SCHEDULERS.register("cosine")
def warmup_cosine(optimizer, mode: str = "min", total_steps: int | None = None, warmup: float = 0.05,
                  min_ratio: float = 0.0, **_):
    """Linear warm-up over the first ``warmup`` share of ``total_steps``, then cosine decay to ``min_ratio`` x
    the configured LR (:class:`WarmupCosine`), stepped after every optimizer step.

    Raises:
        ValueError: ``total_steps`` missing or < 1.
    """
    if not total_steps or total_steps < 1:
        raise ValueError(f"scheduler 'cosine' needs total_steps >= 1 (epochs x batches), got {total_steps}")
    rule = WarmupCosine(total_steps, max(1, round(warmup * total_steps)), min_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, rule)


PER_STEP = frozenset({"onecycle", "cosine"})
"""Schedulers stepped after every optimizer step (they need ``total_steps``); the others step once per epoch."""


@SCHEDULERS.register("none")
def no_scheduler(optimizer, **_):
    """No LR schedule."""
    return None


def encoder_frozen(epoch: int, freeze_epochs: int, pretrained: bool) -> bool:
    """The frozen-encoder warm-up rule (fastai's ``fine_tune``): the encoder is frozen in 1-based ``epoch`` when it
    starts from pretrained weights and ``epoch <= freeze_epochs``; a random-init encoder is never frozen."""
    return bool(pretrained) and epoch <= int(freeze_epochs or 0)


def set_encoder_trainable(model: nn.Module, trainable: bool) -> None:
    """Set ``requires_grad`` of the encoder's parameters (:func:`seglib.models.encoder_parameter_names`); a frozen
    parameter gets no gradient, so every torch optimizer skips it (no step, no weight decay)."""
    names = encoder_parameter_names(model)
    for name, p in model.named_parameters():
        if name in names:
            p.requires_grad_(trainable)


def build_optimizer(name: str, model: nn.Module, lr: float, weight_decay: float = 0.0, encoder_lr_ratio: float = 1.0,
                    encoder_weight_decay: float | None = None, **kwargs) -> torch.optim.Optimizer:
    """Registered optimizer ``name`` over :func:`param_groups`. Raises ``KeyError`` listing valid names."""
    groups = param_groups(model, lr, weight_decay, encoder_lr_ratio, encoder_weight_decay)
    return OPTIMIZERS.get(name)(groups, lr=lr, **kwargs)


def build_scheduler(name: str, optimizer: torch.optim.Optimizer, mode: str = "min", total_steps: int | None = None,
                    **kwargs):
    """Registered scheduler ``name`` (may return None). ``mode`` comes from the monitored metric's direction;
    ``total_steps`` (epochs x batches per epoch) is passed to the per-step schedulers (:data:`PER_STEP`).

    Raises:
        KeyError: unknown ``name`` (lists valid names). ValueError: a per-step scheduler without ``total_steps``.
    """
    sched = SCHEDULERS.get(name)
    if name in PER_STEP:
        kwargs["total_steps"] = total_steps
    return sched(optimizer, mode=mode, **kwargs)


def stretch_schedule(scheduler, total_steps: int) -> None:
    """Give a per-step ``scheduler`` loaded from a checkpoint the current run length ``total_steps`` (epochs x
    batches): a resumed run whose ``EPOCHS`` was raised anneals over the longer run instead of stepping past the
    end (OneCycleLR raises there; warm-up + cosine would sit at its final LR). Other schedulers: nothing."""
    if isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR):
        scheduler.total_steps = max(int(total_steps), scheduler.last_epoch)
    elif isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
        for rule in scheduler.lr_lambdas:
            if isinstance(rule, WarmupCosine):
                rule.total_steps = max(int(total_steps), scheduler.last_epoch)


def set_lr(optimizer: torch.optim.Optimizer, lr: float, scheduler=None) -> list[float]:
    """Set every group's LR to ``lr * group["lr_ratio"]`` (an explicit override on resume); returns the new LRs.

    With a per-step ``scheduler`` the override rescales its schedule: for one-cycle ``lr`` becomes the peak
    (``max_lr``, with the start and end LRs in proportion), for warm-up + cosine the base LR; the LR of the
    current step follows from it."""
    for i, g in enumerate(optimizer.param_groups):
        new = lr * g.get("lr_ratio", 1.0)
        if isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR):
            f = new / g["max_lr"]
            g.update(max_lr=new, initial_lr=g["initial_lr"] * f, min_lr=g["min_lr"] * f)
        elif isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
            scheduler.base_lrs[i] = g["initial_lr"] = new
        g["lr"] = new
    if isinstance(scheduler, (torch.optim.lr_scheduler.OneCycleLR, torch.optim.lr_scheduler.LambdaLR)):
        with warnings.catch_warnings():  # get_lr() outside step(): wanted here, the LR of the current step
            warnings.simplefilter("ignore")
            for g, v in zip(optimizer.param_groups, scheduler.get_lr()):
                g["lr"] = v
    return [g["lr"] for g in optimizer.param_groups]
