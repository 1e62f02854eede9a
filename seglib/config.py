"""Training configuration: one dataclass, saved inside every checkpoint.

Resuming compares the saved configuration with the current one: fields in :data:`MODEL_FIELDS`
change the network and refuse the resume; other differences are printed (``lr`` is ignored in favour
of the optimizer state -- use an explicit LR override to change it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

MODEL_FIELDS = ("model", "model_kwargs", "n_classes")
"""Fields that define the network; a checkpoint with other values cannot be resumed."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (units in brackets).

    Attributes:
        experiment: run name, used for the work folder.
        model: name in :data:`seglib.models.MODELS`; ``model_kwargs`` its architecture arguments.
        encoder_weights: pretrained encoder weights (``"imagenet"`` or None); not a model field, since a
            resumed checkpoint replaces the weights anyway.
        n_classes: output classes C; ``ignore_index`` the void label or None.
        img_size: image side length [px]; ``resize_schedule`` maps first epoch -> side length (or None).
        augment: augmentation name; ``batch_size`` [images]; ``num_workers`` DataLoader workers (None = auto).
        loss / loss_kwargs: name in :data:`seglib.losses.LOSSES` and its arguments.
        optimizer / optimizer_kwargs, lr, encoder_lr_ratio, weight_decay, encoder_weight_decay: see
            :func:`seglib.train.optim.build_optimizer`.
        scheduler / scheduler_kwargs: name in :data:`SCHEDULERS`: ``"plateau"`` (stepped on ``monitor`` each
            epoch), ``"step"``, ``"onecycle"`` and ``"cosine"`` (warm-up + cosine; these two stepped after every
            optimizer step over ``epochs`` x batches), ``"none"``.
        monitor: validation key that decides best checkpoint, early stopping and the plateau scheduler,
            e.g. ``"val_loss"``; its direction comes from :data:`seglib.metrics.METRICS`.
        early_stop_patience: epochs without improvement before stopping (None = never).
        epochs: maximum epochs; ``checkpoint_minutes`` [min] between mid-epoch checkpoints (0 = every batch).
        seed: seed of initialisation, shuffling and augmentation.
        amp / channels_last: used on CUDA only.
        log_images: validation samples shown in the per-epoch TensorBoard grid.
        mask_threshold: binarise the masks explicitly: class 1 where the stored value >= ``mask_threshold``,
            else 0 (needs ``n_classes=2``; e.g. 128 for 0/255 masks saved as JPEG, which are refused without
            it). None (default): masks must hold class ids ``0..n_classes-1`` (or {0, 255} for 2 classes) and
            are never merged silently. See :func:`seglib.data.io.read_mask`.
        cache: decoded-image cache of the training and validation images: ``"auto"`` (RAM when the resized images
            fit its budget, else resized copies on the local disk), ``"ram"``, ``"disk"`` or ``"none"`` (decode every
            image every epoch). Cached items equal uncached ones bit for bit (:mod:`seglib.data.cache`).
        freeze_encoder_epochs: train the decoder only for this many first epochs, then everything (fastai's
            ``fine_tune``), when the encoder starts from pretrained weights; ignored for a random-init encoder.
        mask_scale: stored mask value = class id x ``mask_scale`` (e.g. 5000 for some 16-bit masks); values
            are divided by it before use. None (default, as in checkpoints saved before the field existed): stored
            values are the class ids.
    """

    experiment: str = "run"
    model: str = "unet_mobilenet_v2"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    encoder_weights: str | None = "imagenet"
    n_classes: int = 22
    ignore_index: int | None = None
    img_size: int = 224
    resize_schedule: dict[int, int] | None = None
    augment: str = "none"
    batch_size: int = 8
    num_workers: int | None = None
    loss: str = "dice_iou_bce"
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "radam_lookahead"
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)
    lr: float = 1e-3
    encoder_lr_ratio: float = 0.5
    weight_decay: float = 3e-4
    encoder_weight_decay: float | None = 3e-5
    scheduler: str = "plateau"
    scheduler_kwargs: dict[str, Any] = field(default_factory=lambda: {"factor": 0.25, "patience": 5})
    monitor: str = "val_loss"
    early_stop_patience: int | None = 10
    epochs: int = 500
    checkpoint_minutes: float = 5.0
    seed: int = 0
    amp: bool = True
    channels_last: bool = True
    log_images: int = 4
    mask_threshold: int | None = None
    mask_scale: int | None = None
    cache: str = "auto"
    freeze_encoder_epochs: int = 0

    def __post_init__(self):
        if self.resize_schedule:
            self.resize_schedule = {int(k): int(v) for k, v in self.resize_schedule.items()}
        for name in ("batch_size", "epochs", "img_size", "n_classes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name.upper()} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"LR must be > 0, got {self.lr}")
        if self.mask_threshold is not None and self.n_classes != 2:
            raise ValueError(f"MASK_THRESHOLD={self.mask_threshold} binarises the masks into 2 classes; set "
                             f"N_CLASSES=2 (got {self.n_classes}) or MASK_THRESHOLD=None")
        if self.cache not in ("auto", "ram", "disk", "none"):
            raise ValueError(f"CACHE must be 'auto', 'ram', 'disk' or 'none', got {self.cache!r}")
        if int(self.freeze_encoder_epochs) < 0:
            raise ValueError(f"FREEZE_ENCODER_EPOCHS must be >= 0, got {self.freeze_encoder_epochs}")
        if self.mask_scale is not None and int(self.mask_scale) < 1:
            raise ValueError(f"MASK_SCALE must be >= 1, got {self.mask_scale}")

    def to_dict(self) -> dict:
        """Plain dict (JSON- and ``torch.load(weights_only=True)``-safe)."""
        d = asdict(self)
        if d["resize_schedule"]:
            d["resize_schedule"] = {int(k): int(v) for k, v in d["resize_schedule"].items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys (from newer versions) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def config_diff(saved: dict, current: dict) -> dict[str, tuple[Any, Any]]:
    """``{field: (saved, current)}`` for every field whose value differs."""
    keys = sorted(set(saved) | set(current))
    return {k: (saved.get(k), current.get(k)) for k in keys if saved.get(k) != current.get(k)}


def smoke_config(cfg: TrainConfig, epochs: int = 2, img_size: int = 64, batch_size: int = 4) -> TrainConfig:
    """A copy of ``cfg`` for a seconds-long CPU check: few epochs, small images, no workers.

    A resize schedule is kept in shape but scaled so its largest size is ``img_size`` (multiples of 32).
    """
    d = cfg.to_dict()
    if d["resize_schedule"]:
        top = max(d["resize_schedule"].values())
        d["resize_schedule"] = {k: max(32, round(v * img_size / top / 32) * 32) for k, v in d["resize_schedule"].items()}
    d.update(epochs=min(cfg.epochs, epochs), img_size=img_size, batch_size=batch_size, num_workers=0)
    return TrainConfig.from_dict(d)


def config_label(key: str) -> str:
    """The readable config name of a study trial's key ``"<label>-<8 hex spec hash>"`` (made by
    :func:`seglib.tune.specs.spec_key`): ``"adam-plateau"`` for ``"adam-plateau-1a2b3c4d"``. Table rows, plot
    legends and explorer choices use it (here, so that both ``tune`` and ``inspect`` may import it)."""
    return key.rsplit("-", 1)[0]
