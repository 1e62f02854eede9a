"""Training recipes: named sets of :class:`~seglib.config.TrainConfig` settings, one parameter apart (``RECIPE``).

``"fast"`` (the JetCar notebook's default) is the best validation quality per training minute measured on the
CamVid subset (see ``BENCHMARKS.md``): AdamW, Dice + cross-entropy, the one-cycle schedule over the whole run,
progressive resizing (small images first: an epoch at 128 px costs about a third of one at 224 px), batch 8, and a
frozen encoder for the first epochs when it starts from ImageNet weights (fastai's ``fine_tune``).

``"original"`` is the JetCar original's (StefansAI/JetCar, ``docs/Model Training.md``): RAdam + Lookahead with the
encoder at LR/2, Dice + IoU + 0.8 BCE, LR 1e-3, ReduceLROnPlateau (factor 0.25, patience 5), early stopping after
10 epochs without improvement, batch 16, the "street" augmentation, one image size.
"""

from __future__ import annotations

from collections.abc import Callable

from .registry import Registry

RECIPES = Registry("recipe")
DEFAULT_EPOCHS = {"fast": 40, "original": 500}
"""Each recipe's run length when ``EPOCHS`` is None: the fast recipe's one-cycle schedule spans 40 epochs (about 10
minutes of training on CamVid's 92 images on a 2-core CPU); the original trained up to 500 with early stopping."""


def progressive_schedule(epochs: int, img_size: int, stages=((0.0, 4 / 7), (0.4, 5 / 7), (0.7, 1.0))) -> dict | None:
    """A progressive-resize schedule ``{first epoch: side length}`` over ``epochs`` epochs ending at ``img_size``.

    Each stage is ``(share of the epochs before it starts, side as a share of img_size)``; sides are rounded to
    multiples of 32 (U-Net encoders downsample 32x) and at least 64. For 40 epochs at 224 px:
    ``{1: 128, 17: 160, 29: 224}``. Fewer than 5 epochs, or an ``img_size`` below 128: None (one size).
    """
    if epochs < 5 or img_size < 128:
        return None
    out: dict[int, int] = {}
    for share, scale in stages:
        out[1 + round(share * epochs)] = max(64, round(img_size * scale / 32) * 32)
    return out


@RECIPES.register("original")
def original(epochs: int, img_size: int) -> dict:
    """The JetCar original's settings (see the module docstring)."""
    return dict(optimizer="radam_lookahead", lr=1e-3, encoder_lr_ratio=0.5, weight_decay=3e-4,
                encoder_weight_decay=3e-5, loss="dice_iou_bce", scheduler="plateau",
                scheduler_kwargs={"factor": 0.25, "patience": 5}, early_stop_patience=10, batch_size=16,
                augment="street", resize_schedule=None, monitor="val_loss", freeze_encoder_epochs=0)


@RECIPES.register("fast")
def fast(epochs: int, img_size: int) -> dict:
    """Quality per training minute (see the module docstring; figures in ``BENCHMARKS.md``)."""
    return dict(optimizer="adamw", lr=3e-3, encoder_lr_ratio=1.0, weight_decay=1e-4, encoder_weight_decay=None,
                loss="dice_ce", scheduler="onecycle", scheduler_kwargs={"pct_start": 0.25}, early_stop_patience=None,
                batch_size=8, augment="auto", resize_schedule=progressive_schedule(epochs, img_size),
                monitor="val_miou", freeze_encoder_epochs=2)


def recipe_config(name: str, *, epochs: int | None, img_size: int, **overrides) -> dict:
    """:class:`~seglib.config.TrainConfig` keyword arguments of recipe ``name`` for a run of ``epochs`` epochs (None:
    :data:`DEFAULT_EPOCHS`) at ``img_size`` px, with ``overrides`` applied (those that are None are ignored: a
    notebook's "use the recipe's").

    Returns:
        A new dict including ``epochs`` and ``img_size``.

    Raises:
        KeyError: unknown recipe (the message lists :data:`RECIPES`).
    """
    build: Callable[[int, int], dict] = RECIPES.get(name)
    epochs = DEFAULT_EPOCHS.get(name, 40) if epochs is None else epochs
    out = {**build(int(epochs), int(img_size)), "epochs": int(epochs), "img_size": int(img_size)}
    out.update({k: v for k, v in overrides.items() if v is not None})
    return out
