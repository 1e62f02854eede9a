"""Decoding and checking image and mask files (PIL; never ``torchvision.io``).

Every error is a :class:`DataError` naming the file and saying how to fix it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .classes import BUILTIN_PALETTES, closest_palette, hex_color

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini", "__macosx", ".ipynb_checkpoints"}


class DataError(ValueError):
    """A dataset file or folder is missing, unreadable or inconsistent; the message names it and the fix."""


class ColorMaskError(DataError):
    """A mask is a colour (RGB) image rather than class ids.

    Attributes:
        path: the mask file.
        colors: ``{rgb_key: pixel count}`` of its colours (:func:`seglib.data.classes.rgb_key`).
    """

    def __init__(self, path: Path, rgb: np.ndarray):
        keys, counts = np.unique(rgb_keys(rgb), return_counts=True)
        self.path, self.colors = Path(path), dict(zip(keys.tolist(), counts.tolist()))
        super().__init__(color_mask_message([self.path], self.colors))


def rgb_keys(rgb: np.ndarray) -> np.ndarray:
    """``H x W`` int64 :func:`~seglib.data.classes.rgb_key` of each pixel of a ``H x W x 3`` (or more channels) image."""
    rgb = np.asarray(rgb)[..., :3].astype(np.int64)
    return rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]


CACHE_TAG = "CACHEDIR.TAG"
"""Marks seglib's cache root (https://bford.info/cachedir/): a mask under it is a copy of the user's data."""


def color_mask_message(paths: list[Path], colors: dict[int, int], limit: int = 10) -> str:
    """The message for colour masks: the files and the colours found (the most frequent ``limit`` of each), the
    built-in palette they fit (or the colours it lacks) and the exact :func:`seglib.data.convert_color_masks` call.

    Args:
        paths: the colour mask files (at least one); colors: ``{rgb_key: pixel count}`` over all of them.
    """
    folder = Path(os.path.commonpath([str(Path(p).parent) for p in paths]))
    names = ", ".join(str(p) for p in paths[:limit]) + (f" and {len(paths) - limit} more" if len(paths) > limit else "")
    found = sorted(colors, key=lambda k: -colors[k])
    shown = ", ".join(hex_color(k) for k in found[:limit]) + (f" ... ({len(found)} in all)" if len(found) > limit else "")
    name, missing = closest_palette(found)
    head = (f"mask {paths[0]} is a colour (RGB) image;" if len(paths) == 1 else
            f"{len(paths)} masks are colour (RGB) images: {names};")
    if missing:
        lacks = (f"none is a colour of a built-in palette ({', '.join(BUILTIN_PALETTES)})" if len(missing) == len(found)
                 else ", ".join(hex_color(k) for k in missing[:limit]) + (" ..." if len(missing) > limit else "")
                 + f" are not {name} colours")
        call = (f"seglib.data.convert_color_masks({str(folder)!r}, [(0, 'background', '000000'), (1, ...), ...]) "
                f"and your class table ({lacks}"
                + ("; so many colours suggest JPEG artefacts: export the masks as PNG" if len(found) > 64 else "") + ")")
    else:
        call = (f"seglib.data.convert_color_masks({str(folder)!r}, {name!r}) (all are {name} colours; it writes "
                f"class-id PNGs in place and keeps the colour originals in {folder.name}_color)")
    copy = any((p / CACHE_TAG).exists() for p in folder.parents)
    where = (" This folder is seglib's local copy of DATA: convert your original masks and zip or upload them "
             "again." if copy else "")
    return (f"{head} colours found: {shown}. Masks must be 1-channel PNGs whose value is the class id; convert "
            f"them once with {call}.{where}")


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
        ColorMaskError: a colour (RGB) mask; the message lists its colours and the converter call.
        DataError: unreadable file, or values ``>= n_classes`` other than ``ignore_index``; the message
            lists the offending values.
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
            raise ColorMaskError(path, arr)
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
