"""What :meth:`seglib.deploy.LoadedRun.predict` and :func:`seglib.deploy.export_onnx` take as images: one
image (a path, a PIL image or an array), a folder (searched recursively, sorted by relative path), a zip, or a
list of any of these. Files that are not images are skipped and listed, never fatal.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.io import IMAGE_EXTENSIONS, DataError, image_size, is_junk, read_image, rgb_array


def as_rgb(image) -> np.ndarray:
    """Any image as ``uint8 H x W x 3`` RGB.

    Args:
        image: a file path; a PIL image (any mode: grey, 16-bit, palette, RGBA, CMYK); or an array ``H x W``
            (grey), ``H x W x 1``, ``H x W x 3`` (RGB) or ``H x W x 4`` (RGBA, alpha dropped) of ``uint8``,
            ``uint16`` (16-bit: scaled by 255 / 65535) or float in [0, 1] (scaled by 255).

    Raises:
        DataError: an unreadable file (names it); TypeError / ValueError: another type or array shape.
    """
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if isinstance(image, Image.Image):
        return rgb_array(image)
    if not isinstance(image, np.ndarray):
        raise TypeError(f"an image must be a path, a PIL image or a numpy array, got {type(image).__name__}")
    a = image
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        a = a[..., :3] if a.shape[2] != 1 else a[..., 0]
    if a.ndim not in (2, 3):
        raise ValueError(f"an image array must be H x W, H x W x 1, H x W x 3 or H x W x 4, got shape {image.shape}")
    if a.dtype == np.uint16:
        a = (a.astype(np.float64) * (255.0 / 65535.0)).round()
    elif np.issubdtype(a.dtype, np.floating):
        a = np.clip(a, 0.0, 1.0) * 255.0
        a = a.round()
    a = a.astype(np.uint8)
    return np.ascontiguousarray(np.repeat(a[..., None], 3, 2) if a.ndim == 2 else a)


@dataclass
class ImageSet:
    """Images collected from a source: ``items`` (paths or arrays, in order), ``names`` (one per item: the path
    relative to the folder or zip without its extension, ``"image"`` / ``"image_<k>"`` for arrays) and
    ``skipped`` (``(name, reason)`` of every file left out)."""

    items: list = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def add_file(self, path: Path, name: str) -> None:
        """Add ``path`` when it is an image (checked from its header), else record why it was skipped."""
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            self.skipped.append((name + path.suffix, f"not an image ({path.suffix or 'no extension'})"))
            return
        try:
            image_size(path)
        except DataError as err:
            self.skipped.append((name + path.suffix, str(err).split(";")[0]))
            return
        self.items.append(path)
        self.names.append(name)

    def report(self, limit: int = 10) -> str:
        """``"skipped 2 files: notes.txt (not an image (.txt)), ..."``, or ``""`` when none was skipped."""
        if not self.skipped:
            return ""
        shown = ", ".join(f"{n} ({why})" for n, why in self.skipped[:limit])
        more = f" and {len(self.skipped) - limit} more" if len(self.skipped) > limit else ""
        return f"skipped {len(self.skipped)} file(s) that are not readable images: {shown}{more}"


def _add_folder(out: ImageSet, folder: Path, prefix: str = "") -> None:
    files = sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.relative_to(folder).as_posix())
    for p in files:
        rel = p.relative_to(folder)
        if any(is_junk(part) for part in rel.parts):
            continue
        out.add_file(p, prefix + rel.with_suffix("").as_posix())


def collect_images(source, tmp: str | os.PathLike | None = None) -> ImageSet:
    """The images of ``source``, in a stable order.

    Args:
        source: an image file, a PIL image or an array (one image); a folder (every file below it, sorted by
            relative path; OS junk such as ``.DS_Store`` ignored); a ``.zip`` (extracted into ``tmp``, then as a
            folder); or a list/tuple of these (concatenated in order).
        tmp: a folder for extracted zips (needed for zips only; the caller removes it).

    Returns:
        An :class:`ImageSet`; non-image files are in ``skipped``, not fatal.

    Raises:
        FileNotFoundError: a path that does not exist. ValueError: a zip without ``tmp``. DataError: a single
        image file that cannot be read.
    """
    out = ImageSet()
    sources = list(source) if isinstance(source, (list, tuple)) else [source]
    for k, src in enumerate(sources):
        if isinstance(src, (np.ndarray, Image.Image)):
            out.items.append(src)
            out.names.append("image" if len(sources) == 1 else f"image_{k:05d}")
            continue
        path = Path(src)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist; pass an image, a folder of images or a zip")
        if path.is_dir():
            _add_folder(out, path)
        elif path.suffix.lower() == ".zip":
            if tmp is None:
                raise ValueError(f"reading {path} needs a temporary folder (tmp=...)")
            dest = Path(tempfile.mkdtemp(dir=tmp))
            try:
                with zipfile.ZipFile(path) as zf:
                    zf.extractall(dest)  # member names are sanitised (no absolute paths, no '..')
            except zipfile.BadZipFile as err:
                raise DataError(f"{path} is not a readable zip ({err}); re-create it or pass the folder") from None
            _add_folder(out, dest)
        elif len(sources) == 1 and path.suffix.lower() in IMAGE_EXTENSIONS:
            image_size(path)  # one image asked for: an unreadable one is an error, not a skip
            out.items.append(path)
            out.names.append(path.stem)
        else:
            out.add_file(path, path.stem)
    return out


def match_backgrounds(backgrounds, names: Sequence[str], tmp=None) -> list:
    """One background per image for two-input depth models.

    Args:
        backgrounds: one image (path / PIL / array: the same background for every image), a list with one per
            image, or a folder / zip whose images are matched to ``names`` by name.
        names: the images' names (:attr:`ImageSet.names`).

    Raises:
        ValueError: no backgrounds, a list of the wrong length, or images without a background of their name
            (names them).
    """
    if backgrounds is None:
        raise ValueError("this depth model takes two images (bg, bg_fg): pass backgrounds=... (one image for all, "
                         "a list, or a folder with a background of each image's name)")
    if isinstance(backgrounds, (list, tuple)):
        if len(backgrounds) != len(names):
            raise ValueError(f"{len(backgrounds)} backgrounds for {len(names)} images; give one per image or one for all")
        return list(backgrounds)
    path = Path(backgrounds) if isinstance(backgrounds, (str, os.PathLike)) else None
    if path is not None and (path.is_dir() or path.suffix.lower() == ".zip"):
        found = collect_images(path, tmp)
        by_name = dict(zip(found.names, found.items))
        missing = [n for n in names if n not in by_name]
        if missing:
            raise ValueError(f"no background named like {len(missing)} image(s) in {path}: {missing[:5]}; "
                             "give each image a background of the same name (any extension)")
        return [by_name[n] for n in names]
    return [backgrounds] * len(names)
