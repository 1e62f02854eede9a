"""Decoding and checking image and mask files (PIL; never ``torchvision.io``).

Every error is a :class:`DataError` naming the file and saying how to fix it.
"""

from __future__ import annotations

import os
import re
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .classes import BUILTIN_PALETTES, closest_palette, hex_color
from .mask_values import distinct_values, suggest_classes

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini", "__macosx", ".ipynb_checkpoints"}
LOSSY_FORMATS = ("JPEG", "MPO")
"""PIL formats (read from the file's content, not its name) whose compression changes pixel values: a mask
saved so holds values that are no class id along every edge."""


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


class MaskValueError(DataError):
    """A mask holds values that are no class id for ``N_CLASSES``.

    Attributes:
        path: the mask file; values: its distinct values (class ids after ``scale``), sorted;
        n_classes, ignore_index: the settings they were checked against.
    """

    def __init__(self, path: Path, values: list[int], n_classes: int, ignore_index: int | None):
        self.path, self.values, self.n_classes, self.ignore_index = Path(path), values, n_classes, ignore_index
        bad = [v for v in values if v >= n_classes and v != ignore_index]
        hint = f" (IGNORE_INDEX is {ignore_index})" if ignore_index is not None else ""
        super().__init__(f"mask {path} has values {bad[:10]}{' ...' if len(bad) > 10 else ''} >= N_CLASSES="
                         f"{n_classes}{hint}; {suggest_classes(values, n_classes, ignore_index)}")


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
    entries = [p for p in folder.iterdir() if not is_junk(p.name) and p.suffix.lower() in extensions]
    dirs = sorted(p.name for p in entries if p.is_dir())
    if dirs:
        raise DataError(f"{len(dirs)} folder(s) in {folder} named like image files: {', '.join(dirs[:5])}"
                        f"{' ...' if len(dirs) > 5 else ''}; each is a directory, not an image. Move the image "
                        "out of it (or rename the folder) so that only files carry image names")
    return sorted(p for p in entries if p.is_file())


def bomb_message(path: Path, err: Exception) -> str:
    """The message for an image whose header claims more pixels than ``PIL.Image.MAX_IMAGE_PIXELS``: the
    file, the claimed size (parsed from PIL's message) and how to allow it."""
    found = re.search(r"\((\d+) pixels\)", str(err))
    claimed = int(found.group(1)) if found else None
    size = f"{claimed} pixels ({claimed / 1e6:.0f} megapixels)" if claimed else "more pixels than allowed"
    return (f"image file {path} claims {size}, over PIL's limit PIL.Image.MAX_IMAGE_PIXELS={Image.MAX_IMAGE_PIXELS} "
            "(a decompression bomb: a small file that decodes to gigabytes); refusing to decode it. If the image is "
            f"genuine, allow it with `PIL.Image.MAX_IMAGE_PIXELS = {claimed + 1 if claimed else None}` before "
            "prepare(), or downscale it; else delete it from the dataset")


@contextmanager
def _reading(path: Path):
    """Turn file errors raised inside the block into :class:`DataError` naming ``path`` and the fix.

    PIL's ``DecompressionBombWarning`` (over ``MAX_IMAGE_PIXELS``) is raised as an error here, as is its
    ``DecompressionBombError`` (twice the limit): both come from the header, before any pixel is allocated.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except FileNotFoundError:
        raise DataError(f"file {path} does not exist; it is listed by the dataset layout but missing") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a directory, not an image file; move the image out of it or rename it") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DataError(bomb_message(path, err)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        what = "is truncated or corrupt" if "truncated" in str(err) or "broken" in str(err) else "cannot be decoded"
        raise DataError(f"cannot read image file {path}: it {what} ({err}); re-export it as PNG/JPEG or delete it "
                        "from the dataset") from None


def open_image(path: Path) -> Image.Image:
    """Open and fully decode ``path`` with PIL, mode as stored (``img.format`` tells the file's real format).

    Raises:
        DataError: naming the file: missing, a directory, not an image, truncated or corrupt (the whole file
            is decoded), or a decompression bomb (:func:`bomb_message`).
    """
    with _reading(path):
        img = Image.open(path)
        img.load()
        return img


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image from its header only (fast). Raises :class:`DataError` if unreadable."""
    with _reading(path), Image.open(path) as img:
        return img.size


def rgb_array(img: Image.Image) -> np.ndarray:
    """A decoded PIL image as RGB: grey (``L``, ``I;16``, ``I``), palette, RGBA (alpha dropped) and CMYK are
    converted; 16-bit grey is scaled to 8 bit (``value * 255 / 65535`` when any value exceeds 255).

    Returns:
        ``uint8`` array ``H x W x 3``, RGB, values 0..255.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() if arr.size else 0
        scale = 255.0 / (65535.0 if hi > 255 else 255.0)
        arr = np.clip(arr * scale, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy()


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as RGB (:func:`rgb_array`: grey, 16-bit, palette, RGBA and CMYK converted).

    Returns:
        ``uint8`` array ``H x W x 3``, RGB, values 0..255.

    Raises:
        DataError: the file is missing or not a readable image.
    """
    return rgb_array(open_image(Path(path)))


def read_mask(
    path: str | os.PathLike,
    n_classes: int,
    ignore_index: int | None = None,
    threshold: int | None = None,
    scale: int = 1,
) -> np.ndarray:
    """Read a segmentation mask of class ids.

    Accepted encodings: 1-channel (``L``/``P``/16-bit) PNG whose value is the class id; a 3-channel mask
    whose channels are equal (read as grey); for ``n_classes == 2`` also a binary {0, 255} mask, read as
    {0, 1}. Nothing else is merged: values >= ``n_classes`` raise (binarising is the explicit ``threshold``).

    Args:
        path: mask file.
        n_classes: number of classes C; valid ids are ``0..C-1``.
        ignore_index: a label that marks pixels excluded from loss and metrics (e.g. CamVid void = 11), or None.
        threshold: binarise: class 1 where the stored value >= ``threshold``, else 0 (``cfg.mask_threshold``;
            e.g. 128 for 0/255 masks saved as JPEG); pixels equal to ``ignore_index`` stay ignored. With it
            lossy (JPEG) masks are accepted.
        scale: stored value = class id x ``scale`` (``cfg.mask_scale``, e.g. 5000 for some 16-bit masks); the
            values are divided by it and a value that is not a multiple raises.

    Returns:
        ``uint8`` array ``H x W`` (``int64`` if values or ``ignore_index`` exceed 255) of class ids.

    Raises:
        ColorMaskError: a colour (RGB) mask; the message lists its colours and the converter call.
        MaskValueError: values ``>= n_classes`` other than ``ignore_index``; the message lists them and
            suggests N_CLASSES (:func:`seglib.data.mask_values.suggest_classes`).
        DataError: unreadable file, a lossy (JPEG) mask without ``threshold``, values not multiples of ``scale``.
    """
    path = Path(path)
    img = open_image(path)
    arr = np.asarray(img)
    if arr.ndim == 3:
        if arr.shape[2] >= 3 and np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
            arr = arr[..., 0]
        elif arr.shape[2] == 2:  # grey + alpha
            arr = arr[..., 0]
        elif threshold is None or img.format not in LOSSY_FORMATS:
            raise ColorMaskError(path, arr)
        else:  # a JPEG-saved binary mask: its channels differ by ringing only
            arr = np.asarray(img.convert("L"))
    if arr.dtype != np.uint8:
        arr = arr.astype(np.int64)
    if threshold is not None:
        out = (arr >= threshold).astype(np.uint8)
        if ignore_index is not None:
            out[arr == ignore_index] = min(ignore_index, 255)
        return out
    if img.format in LOSSY_FORMATS:
        raise DataError(f"mask {path} is a {img.format} file (lossy: along every edge it holds values that are no "
                        "class id); save the masks as PNG, or for a 0/255 foreground mask set MASK_THRESHOLD=128 "
                        "(class 1 where value >= 128) to binarise it explicitly")
    if scale != 1:
        if (arr % scale).any():
            raise DataError(f"mask {path} has values {distinct_values(arr[arr % scale != 0])[:10]} that are not "
                            f"multiples of MASK_SCALE={scale}; check MASK_SCALE or re-save the masks as class ids")
        arr = arr // scale
    hi = int(arr.max(initial=0))
    if hi < n_classes:
        return arr
    values = distinct_values(arr)
    if n_classes == 2 and set(values) - {ignore_index} <= {0, 255}:  # a binary 0/255 mask
        out = (arr == 255).astype(np.uint8) if ignore_index != 255 else arr.astype(np.uint8)
        if ignore_index is not None and ignore_index != 255:
            out[arr == ignore_index] = min(ignore_index, 255)
        return out
    if any(v >= n_classes and v != ignore_index for v in values):
        raise MaskValueError(path, values, n_classes, ignore_index)
    return arr
