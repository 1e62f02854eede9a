"""Depth maps and binary masks: decoding, the one depth convention, and the depth + mask dataset.

**Depth convention.** Every depth map is turned into ``float32`` values in [0, 1] where **1 = near and
0 = far** (the original's DenseDepth maps, "bright = near"), plus a boolean ``valid`` map:

* raw value 0 (no measurement: Kinect holes, missing stereo matches) is **invalid**, as the original's
  metrics counted only ``label > 0.0001`` (shan18 tensornet ``Learner._pred_label_diff``); losses and
  RMSE ignore invalid pixels and they are stored as 0;
* 8-bit maps are scaled by 1/255; 16-bit (e.g. Kinect millimetres) and float maps are min-max scaled
  per sample over their valid pixels (or over :func:`read_depth`'s ``value_range``);
* ``near="bright"``: larger raw value = nearer (DenseDepth, NJU2K); ``near="dark"``: larger = farther
  (distances, Kinect) and the scaled value is inverted. ``"auto"`` (resolved by the layouts) uses
  ``pairs.csv``'s ``near_is`` column, else ``"dark"`` for 16-bit/float maps and ``"bright"`` for 8-bit.

Grey depth stored as RGB (three equal channels, JPEG tolerance 8) is read as grey; a colour-mapped
depth raises :class:`DataError`. Masks of any encoding (1-bit, grey, RGB, 0/1 or 0/255, JPEG ringing)
become {0, 1}: values > 0 when the maximum is 1, else >= 128 (half range for 16-bit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from .checks import check_sizes
from .datasets import EpochDataset
from .depth_layouts import INPUT_MODES, NEAR_VALUES, DepthSample, parse_near
from .io import DataError, open_image, read_image

BACKGROUND_CACHE_SIZE = 64
"""Decoded backgrounds kept per process: datasets reuse a few backgrounds for many composites."""
__all__ = ["INPUT_MODES", "NEAR_VALUES", "DepthSegDataset", "load_inputs", "load_sample", "load_targets", "parse_near",
           "read_background", "read_binary_mask", "read_depth"]


def _grey(path: Path, arr: np.ndarray, kind: str) -> np.ndarray:
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3 and arr.shape[2] in (2, 4) and kind == "mask":
        return arr[..., 0]
    if arr.ndim == 3 and arr.shape[2] >= 3:
        rgb = arr[..., :3].astype(np.int32)
        if kind == "depth" and max(np.abs(rgb[..., 0] - rgb[..., 1]).max(), np.abs(rgb[..., 0] - rgb[..., 2]).max()) > 8:
            raise DataError(f"depth map {path} is a colour image (a colour-mapped depth?); save depth as one grey "
                            "channel (8- or 16-bit PNG) whose value grows or falls with distance")
        return np.rint(rgb.mean(2)).astype(arr.dtype) if kind == "depth" else cv2.cvtColor(
            arr[..., :3].astype(np.uint8), cv2.COLOR_RGB2GRAY)
    raise DataError(f"{kind} file {path} has an unsupported shape {arr.shape}")


def read_depth(path, near: str = "bright", value_range: tuple[float, float] | None = None,
               zero_invalid: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Read a depth map in seglib's convention (module docstring).

    Args:
        path: grey 8-bit, 16-bit (``I;16``) or float image; RGB with equal channels is accepted.
        near: ``"bright"``, ``"dark"`` or ``"auto"`` (16-bit/float -> dark, 8-bit -> bright).
        value_range: raw ``(far-or-near low, high)`` mapped to [0, 1] before inversion; default 0..255
            for 8-bit, the sample's valid min..max otherwise.
        zero_invalid: raw 0 marks a pixel without depth.

    Returns:
        ``(depth float32 H x W in [0, 1], 1 = near, 0 at invalid pixels; valid bool H x W)``.

    Raises:
        DataError: missing/unreadable file, a colour-mapped depth, a bad ``near`` value.
    """
    path = Path(path)
    img = open_image(path)
    if img.mode == "1":
        raise DataError(f"depth map {path} is a 1-bit image; depth needs 8 or 16 bits")
    if img.mode == "P":
        img = img.convert("L")
    arr = _grey(path, np.asarray(img), "depth")
    eight_bit = arr.dtype == np.uint8
    near = parse_near(near, str(path))
    if near == "auto":
        near = "bright" if eight_bit else "dark"
    raw = arr.astype(np.float64)
    valid = np.isfinite(raw) & ((raw > 0) if zero_invalid else np.ones(raw.shape, bool))
    if value_range is not None:
        lo, hi = map(float, value_range)
    elif eight_bit:
        lo, hi = 0.0, 255.0
    else:
        lo, hi = (float(raw[valid].min()), float(raw[valid].max())) if valid.any() else (0.0, 1.0)
    x = np.clip((raw - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.full(raw.shape, 0.5)
    depth = x if near == "bright" else 1.0 - x
    return np.where(valid, depth, 0.0).astype(np.float32), valid


def read_binary_mask(path) -> np.ndarray:
    """Read a foreground mask of any encoding as ``uint8 H x W`` in {0, 1} (1 = foreground).

    Raises:
        DataError: missing or unreadable file.
    """
    path = Path(path)
    img = open_image(path)
    if img.mode == "1":
        return np.asarray(img, dtype=bool).astype(np.uint8)
    if img.mode == "P":
        img = img.convert("L")
    arr = _grey(path, np.asarray(img), "mask")
    hi = float(arr.max(initial=0))
    if hi <= 1:
        return (arr > 0).astype(np.uint8)
    half = 128 if arr.dtype == np.uint8 else (32768 if hi > 255 else 128)
    return (arr >= half).astype(np.uint8)


@lru_cache(maxsize=BACKGROUND_CACHE_SIZE)
def _cached_background(path: str, stamp: tuple | None, hw: tuple[int, int]) -> np.ndarray:
    bg = read_image(path)
    if bg.shape[:2] != hw:
        bg = cv2.resize(bg, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)
    bg.setflags(write=False)
    return bg


def read_background(path, hw: tuple[int, int]) -> np.ndarray:
    """A background image resized (``INTER_AREA``) to ``hw = (height, width)`` when its size differs.

    Decoded backgrounds are cached (:data:`BACKGROUND_CACHE_SIZE` entries, keyed on path, modification
    time, file size and ``hw``) because many composites share a few backgrounds.

    Returns:
        ``uint8 H x W x 3`` RGB, **read-only** (shared by the cache): copy it before changing it in place.

    Raises:
        DataError: the file is missing or unreadable.
    """
    try:
        st = Path(path).stat()
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = None  # read_image raises the DataError
    return _cached_background(str(path), stamp, (int(hw[0]), int(hw[1])))


def load_inputs(sample: DepthSample, inputs: str = "bg+bg_fg") -> dict[str, np.ndarray]:
    """Decode one sample's network inputs at the original resolution, without mask or depth.

    Returns:
        ``{"image": uint8 H x W x 3}`` plus, for ``inputs="bg+bg_fg"``, ``"bg": uint8 H x W x 3`` from
        :func:`read_background` (read-only; resized to the image's size when it differs, as seed 000's
        second source had 256 px backgrounds for 220 px composites).

    Raises:
        DataError: an unreadable file, or no ``bg`` for two inputs.
    """
    image = read_image(sample.image)
    out = {"image": image}
    if inputs == "bg+bg_fg":
        if sample.bg is None:
            raise DataError(f"sample {sample.name} ({sample.image}) has no background image; INPUTS='bg+bg_fg' "
                            "needs bg/ images (MODEST or pairs.csv layout); use INPUTS='rgb' for RGB-D data")
        out["bg"] = read_background(sample.bg, image.shape[:2])
    return out


def load_targets(sample: DepthSample, hw: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """Decode one sample's mask and depth (the image is not decoded).

    Args:
        hw: the image's ``(height, width)`` when known; without it mask and depth are checked against
            each other (and on a mismatch against the image's header).

    Returns:
        ``{"mask": uint8 H x W {0,1}, "depth": float32 H x W [0,1] (1 = near), "valid": uint8 H x W {0,1}}``.

    Raises:
        DataError: unreadable files, or a size mismatch between image, mask and depth.
    """
    mask = read_binary_mask(sample.mask)
    depth, valid = read_depth(sample.depth, sample.near)
    hw = mask.shape if hw is None else tuple(hw)
    if mask.shape != hw or depth.shape != hw:
        check_sizes(sample)
    return {"mask": mask, "depth": depth, "valid": valid.astype(np.uint8)}


def load_sample(sample: DepthSample, inputs: str = "bg+bg_fg") -> dict[str, np.ndarray]:
    """Decode one sample at its original resolution: :func:`load_inputs` and :func:`load_targets`.

    Returns:
        ``{"image": uint8 H x W x 3, "mask": uint8 H x W {0,1}, "depth": float32 H x W [0,1] (1 = near),
        "valid": uint8 H x W {0,1}}`` plus ``"bg": uint8 H x W x 3`` (read-only, cached; resized to the
        image's size when it differs) for two inputs.

    Raises:
        DataError: unreadable files, a size mismatch between image, mask and depth, or no ``bg`` for two inputs.
    """
    out = load_inputs(sample, inputs)
    out.update(load_targets(sample, out["image"].shape[:2]))
    return out


class DepthSegDataset(EpochDataset):
    """Depth + foreground-mask samples, resized per epoch and augmented on the inputs only.

    Args:
        samples: :class:`DepthSample` list (from :func:`seglib.data.depth_layouts.load_depth_splits`).
        size: ``epoch -> side length`` (see :func:`seglib.data.transforms.size_fn`) or a fixed int [px].
        inputs: one of :data:`~seglib.data.depth_layouts.INPUT_MODES` (``"bg+bg_fg"`` or ``"rgb"``).
        augment: name in ``AUGMENTATIONS``; ``"photometric"`` is seed 000's HSV + contrast (p = 0.25
            each), applied with identical parameters to ``bg`` and ``bg_fg`` and never to mask or depth.
        seed: base seed of the augmentation randomness (a function of seed, epoch, index).

    Items (key ``(epoch, index)`` or a plain ``index`` = epoch 1)::

        {"input": {"bg": float32 3 x S x S, "bg_fg": float32 3 x S x S}  (or one float32 3 x S x S for "rgb"),
         "target": {"depth": float32 1 x S x S [0, 1], "mask": float32 1 x S x S {0, 1},
                    "valid": float32 1 x S x S {0, 1}},
         "index": int}

    Images are normalised with ImageNet statistics (:func:`seglib.data.transforms.normalization`);
    mask, depth and valid are resized with nearest-neighbour interpolation.

    Raises:
        DataError: no samples, unknown ``inputs``; on access, the errors of :func:`load_sample`.
    """

    def __init__(self, samples: Sequence[DepthSample], size: Callable[[int], int] | int, inputs: str = "bg+bg_fg",
                 augment: str = "none", seed: int = 0):
        if inputs not in INPUT_MODES:
            raise DataError(f"INPUTS must be one of {INPUT_MODES}, got {inputs!r}")
        super().__init__(samples, size, augment, seed)
        self.inputs = inputs
        self.extra_targets = {"depth": "mask", "valid": "mask", **({"bg": "image"} if inputs == "bg+bg_fg" else {})}

    def decode(self, index: int) -> dict[str, np.ndarray]:
        """:func:`load_sample` of sample ``index``."""
        return load_sample(self.samples[index], self.inputs)

    def source_files(self, index: int) -> list:
        """Image, mask, depth and background (None without) of sample ``index``."""
        s = self.samples[index]
        return [s.image, s.mask, s.depth, s.bg if self.inputs == "bg+bg_fg" else None]

    def decode_settings(self, index: int) -> tuple:
        """``(inputs, near)``: how :func:`load_sample` reads sample ``index``."""
        return self.inputs, self.samples[index].near

    def item(self, epoch: int, index: int) -> dict:
        """See the class docstring."""
        out = self.augmented(epoch, index)
        target = {"depth": out["depth"].float()[None], "mask": out["mask"].float()[None],
                  "valid": out["valid"].float()[None]}
        x = {"bg": out["bg"], "bg_fg": out["image"]} if self.inputs == "bg+bg_fg" else out["image"]
        return {"input": x, "target": target, "index": index}


def depth_png16(depth: np.ndarray) -> np.ndarray:
    """Depth in [0, 1] (1 = near) -> ``uint16`` for a 16-bit PNG: ``round(d * 65535)`` (bright = near)."""
    return np.rint(np.clip(np.nan_to_num(depth), 0.0, 1.0) * 65535.0).astype(np.uint16)
