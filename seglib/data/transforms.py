"""Albumentations pipelines, the one normalisation, and the progressive-resize schedule.

Every pipeline -- training, validation and prediction -- is built by :func:`build_transform` and ends
with the same :func:`normalization` block, so an image can never be normalised one way for training
and another for prediction (the JetCar notebook normalised prediction inputs with RGB statistics but
training inputs with BGR ones).

Photometric transforms change the image only; geometric ones move image and mask (and any extra
mask-type target such as depth) together. Randomness is a pure function of
``(seed, epoch, sample index)`` (:func:`sample_rng`), so a resumed epoch replays the same augmentations.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

from ..registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

AUGMENTATIONS = Registry("augmentation")


def normalization() -> list:
    """The normalisation block every pipeline ends with: ImageNet mean/std on RGB in [0, 1], then HWC -> CHW.

    Output image: ``float32`` tensor ``3 x H x W``; masks become ``H x W`` tensors of their input dtype.
    """
    return [A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD, max_pixel_value=255.0), ToTensorV2()]


def normalize(image: np.ndarray) -> torch.Tensor:
    """Normalise one ``uint8 H x W x 3`` RGB image exactly as training does; returns ``float32 3 x H x W``."""
    return A.Compose(normalization())(image=image)["image"]


def denormalize(image: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`normalize` for display: ``3 x H x W`` float tensor -> ``uint8 H x W x 3`` RGB."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device).view(3, 1, 1)
    x = (image.float() * std + mean).clamp(0, 1) * 255.0
    return x.round().byte().permute(1, 2, 0).cpu().numpy()


@AUGMENTATIONS.register("none")
def _none() -> list:
    """No augmentation."""
    return []


@AUGMENTATIONS.register("street")
def _street() -> list:
    """JetCar ImageSegmenter-like grid, randomised: zoom 1.0-1.2, tilt +-15 deg (perspective), small
    rotation, brightness x0.8-1.0, contrast, sensor noise. No horizontal flip: it would swap left/right
    classes (left-turn lane, arrows) and the driving side."""
    return [
        A.Affine(scale=(1.0, 1.2), rotate=(-5, 5), translate_percent=(-0.03, 0.03), border_mode=cv2.BORDER_CONSTANT,
                 fill=0, fill_mask=0, p=0.7),
        A.Perspective(scale=(0.02, 0.06), border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0, p=0.3),
        A.RandomBrightnessContrast(brightness_limit=(-0.2, 0.05), contrast_limit=0.3, p=0.7),
        A.GaussNoise(std_range=(0.01, 0.04), p=0.3),
    ]


@AUGMENTATIONS.register("flip")
def _flip() -> list:
    """Horizontal flip (p 0.5), mild scale/rotate, brightness/contrast: for scenes without left/right classes (CamVid)."""
    return [
        A.HorizontalFlip(p=0.5),
        A.Affine(scale=(0.9, 1.2), rotate=(-7, 7), border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0, p=0.5),
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
    ]


@AUGMENTATIONS.register("photometric")
def _photometric() -> list:
    """Seed 000 (shan18 Depth-Estimation-Segmentation): hue/saturation/value and contrast, p = 0.25 each; image only."""
    return [
        A.HueSaturationValue(p=0.25),
        A.RandomBrightnessContrast(brightness_limit=0.0, contrast_limit=0.2, p=0.25),
    ]


@AUGMENTATIONS.register("rotate_flips")
def _rotate_flips() -> list:
    """Seed 004: rotation +-20 deg, horizontal and vertical flips p 0.5 (geometric, image and mask)."""
    return [
        A.Rotate(limit=20, border_mode=cv2.BORDER_REFLECT_101, p=1.0),
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
    ]


def build_transform(size: int | tuple[int, int], augment: str = "none", additional_targets: dict | None = None) -> A.Compose:
    """Resize to ``size`` (square side in px or ``(height, width)``), augment, then :func:`normalization`.

    Args:
        size: output size; masks are resized with nearest-neighbour interpolation.
        augment: name in :data:`AUGMENTATIONS` (``"none"`` for validation and prediction).
        additional_targets: extra albumentations targets, e.g. ``{"depth": "mask"}``.

    Raises:
        KeyError: unknown ``augment`` (lists valid names).
    """
    h, w = (size, size) if isinstance(size, int) else size
    ops = [A.Resize(h, w, interpolation=cv2.INTER_AREA, mask_interpolation=cv2.INTER_NEAREST)]
    ops += AUGMENTATIONS.get(augment)()
    ops += normalization()
    return A.Compose(ops, additional_targets=additional_targets or {}, seed=0)


def sample_rng(seed: int, epoch: int, index: int) -> tuple[np.random.Generator, random.Random]:
    """The random generators for one sample in one epoch: a pure function of ``(seed, epoch, index)``."""
    return np.random.default_rng([seed, epoch, index]), random.Random(hash((seed, epoch, index)) & 0xFFFFFFFFFFFF)


def apply(transform: A.Compose, seed: int, epoch: int, index: int, **data) -> dict:
    """Run ``transform`` on ``data`` (``image=...``, ``mask=...``) with the generators of :func:`sample_rng`."""
    transform.set_random_state(*sample_rng(seed, epoch, index))
    return transform(**data)


def size_for_epoch(epoch: int, img_size: int, schedule: dict | None = None) -> int:
    """Image side length for 1-based ``epoch`` under a progressive-resize ``schedule``.

    ``schedule`` maps the first epoch of each stage to its size, e.g. ``{1: 96, 4: 160, 9: 224}``
    means 96 px for epochs 1-3, 160 px for 4-8 and 224 px from 9 on (seed 000's schedule). Keys may be
    strings (JSON). Epochs before the first key, or any epoch when ``schedule`` is empty, use ``img_size``.

    Raises:
        ValueError: a non-positive epoch, size or key.
    """
    if epoch < 1:
        raise ValueError(f"epochs are counted from 1, got {epoch}")
    if not schedule:
        return int(img_size)
    stages = sorted((int(k), int(v)) for k, v in schedule.items())
    if stages[0][0] < 1 or any(v < 1 for _, v in stages):
        raise ValueError(f"RESIZE_SCHEDULE {schedule} must map epochs >= 1 to sizes >= 1")
    size = int(img_size)
    for start, s in stages:
        if epoch >= start:
            size = s
    return size


def size_fn(img_size: int, schedule: dict | None) -> Callable[[int], int]:
    """``epoch -> size`` closure over :func:`size_for_epoch`."""
    return lambda epoch: size_for_epoch(epoch, img_size, schedule)
