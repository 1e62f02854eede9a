"""Decoding and checking image and mask files (PIL; never ``torchvision.io``).

Every error is a :class:`DataError` naming the file and saying how to fix it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini", "__macosx", ".ipynb_checkpoints"}


class DataError(ValueError):
    """A dataset file or folder is missing, unreadable or inconsistent; the message names it and the fix."""


def is_junk(name: str) -> bool:
    """True for OS/editor droppings (``.DS_Store``, ``Thumbs.db``, ``__MACOSX``, hidden files) that layouts skip."""
    return name.lower() in JUNK_NAMES or name.startswith(".") or name.startswith("._")


def list_files(folder: Path, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[Path]:
    """Sorted image files directly inside ``folder`` (junk skipped, extension case-insensitive).

    Raises:
        DataError: ``folder`` does not exist or is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"folder {folder} does not exist; check DATA points at the dataset root and the layout")
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not is_junk(p.name) and p.suffix.lower() in extensions
    )


@contextmanager
def _reading(path: Path):
    """Turn file errors raised inside the block into :class:`DataError` naming ``path`` and the fix."""
    try:
        yield
    except FileNotFoundError:
        raise DataError(f"file {path} does not exist; it is listed by the dataset layout but missing") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(
            f"cannot read image file {path} ({err}); re-export it as PNG/JPEG or delete it from the dataset"
        ) from None


def open_image(path: Path) -> Image.Image:
    """Open and decode ``path`` with PIL, mode as stored. Raises :class:`DataError` naming the file."""
    with _reading(path):
        img = Image.open(path)
        img.load()
        return img


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image from its header only (fast). Raises :class:`DataError` if unreadable."""
    with _reading(path), Image.open(path) as img:
        return img.size


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as RGB.

    Grey (``L``, ``I;16``), palette, RGBA (alpha dropped) and CMYK inputs are converted; 16-bit grey
    is scaled to 8 bit.

    Returns:
        ``uint8`` array ``H x W x 3``, RGB, values 0..255.

    Raises:
        DataError: the file is missing or not a readable image.
    """
    path = Path(path)
    img = open_image(path)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() if arr.size else 0
        scale = 255.0 / (65535.0 if hi > 255 else 255.0)
        arr = np.clip(arr * scale, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy()


def read_mask(
    path: str | os.PathLike,
    n_classes: int,
    ignore_index: int | None = None,
) -> np.ndarray:
    """Read a segmentation mask of class ids.

    Accepted encodings: 1-channel (``L``/``P``) PNG whose value is the class id; a 3-channel mask whose
    channels are equal (read as grey); for ``n_classes == 2`` also {0, 255} masks, mapped to {0, 1}
    (pixels equal to ``ignore_index`` are kept as ignore).

    Args:
        path: mask file.
        n_classes: number of classes C; valid ids are ``0..C-1``.
        ignore_index: a label that marks pixels excluded from loss and metrics (e.g. CamVid void = 11), or None.

    Returns:
        ``uint8`` array ``H x W`` (``int64`` if ``ignore_index`` > 255) of class ids.

    Raises:
        DataError: unreadable file, a colour (RGB palette) mask, or values ``>= n_classes`` other than
            ``ignore_index``; the message lists the offending values.
    """
    path = Path(path)
    img = open_image(path)
    arr = np.asarray(img)
    if arr.ndim == 3:
        if arr.shape[2] >= 3 and np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
            arr = arr[..., 0]
        elif arr.shape[2] == 2:  # grey + alpha
            arr = arr[..., 0]
        else:
            raise DataError(
                f"mask {path} is a colour image; masks must be 1-channel PNGs whose value is the class id. "
                "Convert colour-coded masks to class ids (one grey value per class) first"
            )
    if arr.dtype != np.uint8:
        arr = arr.astype(np.int64)
    if n_classes == 2:
        binary = (arr > 0) & (arr != (ignore_index if ignore_index is not None else -1))
        if arr.max(initial=0) > 1:
            out = binary.astype(np.uint8)
            if ignore_index is not None:
                out[arr == ignore_index] = ignore_index if ignore_index <= 255 else 255
            return out
    hi = int(arr.max(initial=0))
    if hi >= n_classes:
        values = np.unique(arr)
        bad = [int(v) for v in values if v >= n_classes and v != ignore_index]
        if bad:
            hint = f" (IGNORE_INDEX is {ignore_index})" if ignore_index is not None else ""
            raise DataError(
                f"mask {path} has values {bad[:10]} >= N_CLASSES={n_classes}{hint}; set N_CLASSES to at least "
                f"{max(bad) + 1}, or IGNORE_INDEX to the void label if that value marks unlabelled pixels"
            )
    return arr
