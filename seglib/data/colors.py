"""Colour-coded masks (one RGB colour per class) to the class-id PNGs seglib reads.

A colour mask is refused by :func:`seglib.data.io.read_mask` with a :class:`~seglib.data.io.ColorMaskError`
that lists its colours and names the call of :func:`convert_color_masks` that fixes it, e.g. for JetCar::

    seglib.data.convert_color_masks("/content/drive/MyDrive/JetCar/DataSet/Mask", "jetcar")
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .classes import color_lookup, hex_color
from .io import IMAGE_EXTENSIONS, DataError, is_junk, open_image, rgb_keys


def _files(folder: Path) -> list[Path]:
    """Every non-junk file below ``folder``, sorted."""
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not any(is_junk(part) for part in p.relative_to(folder).parts))


def convert_color_masks(folder: str | os.PathLike, palette, out: str | os.PathLike | None = None) -> Path:
    """Convert every colour mask below ``folder`` (sub-folders included) to a class-id PNG of the same
    relative name with the suffix ``.png``, all or nothing.

    Args:
        folder: a folder of colour masks (any image format PIL reads; the RGB of each pixel is looked up).
        palette: ``"jetcar"`` (the 22 JetCar colours, :data:`seglib.data.classes.JETCAR_CLASSES`),
            ``"camvid"``, a class table ``[(id, name, "RRGGBB"), ...]`` or a ``C x 3`` array of RGB rows.
        out: where to write the class-id masks (a new or empty folder outside ``folder``). None converts in
            place: ``folder`` then holds the class-id PNGs and the colour originals move to ``<folder>_color``.

    Returns:
        The folder holding the class-id masks: ``uint8`` 1-channel PNGs, value = class id (0..255).
        Other files (not images) are copied along.

    Raises:
        DataError: ``folder`` missing or without images, ``out`` not empty or inside ``folder``,
            ``<folder>_color`` already there (in place), two masks that would get one name, or colours not
            in the palette (each named with the files holding it, at most 10 of each). Nothing is written then.
        KeyError, ValueError: an unknown palette name or a malformed palette.
    """
    folder = Path(folder).expanduser()
    lookup, desc = color_lookup(palette)
    if not folder.is_dir():
        raise DataError(f"mask folder {folder} does not exist; give the folder holding the colour masks")
    files = _files(folder)
    masks = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not masks:
        raise DataError(f"no image files below {folder}; give the folder holding the colour masks")
    backup = folder.with_name(folder.name + "_color")
    if out is None:
        target = folder
        if backup.exists():
            raise DataError(f"{backup} already exists (an earlier conversion?); move it away, or pass out= a new folder")
    else:
        target = Path(out).expanduser()
        if target.resolve() == folder.resolve() or folder.resolve() in target.resolve().parents:
            raise DataError(f"out={str(out)!r} is inside the mask folder {folder}; choose a folder outside it "
                            f"(or out=None to convert in place, keeping the originals in {backup})")
        if target.exists() and any(target.iterdir()):
            raise DataError(f"out={str(out)!r} exists and is not empty; choose a new folder")
    tmp = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    keys = np.array(sorted(lookup), np.int64)
    ids = np.array([lookup[int(k)] for k in keys], np.uint8)
    unknown: dict[int, list[Path]] = {}
    try:
        for src in tqdm(masks, desc=f"colour masks -> class ids ({desc})", unit="mask"):
            pixels = rgb_keys(np.asarray(open_image(src).convert("RGB")))
            found, inverse = np.unique(pixels, return_inverse=True)
            pos = np.clip(np.searchsorted(keys, found), 0, len(keys) - 1)
            for k in found[keys[pos] != found]:
                unknown.setdefault(int(k), []).append(src)
            if unknown:
                continue  # keep reading to name every bad colour and file; write nothing more
            dst = tmp / src.relative_to(folder).with_suffix(".png")
            if dst.exists():
                raise DataError(f"{src} and another mask of {dst.parent} both become {dst.name}; rename one of them")
            dst.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(ids[pos][inverse].reshape(pixels.shape), "L").save(dst)
        if unknown:
            lines = [f"{hex_color(k)} in {', '.join(str(p) for p in v[:3])}" + (f" and {len(v) - 3} more" if len(v) > 3
                                                                               else "") for k, v in unknown.items()]
            more = f"\n... and {len(lines) - 10} more colours" if len(lines) > 10 else ""
            raise DataError(f"{len(unknown)} colours are not in {desc}:\n" + "\n".join(lines[:10]) + more +
                            "\nNothing was written. Pass a palette with a class for each colour (a class table "
                            "[(id, name, 'RRGGBB'), ...]), or fix those masks")
        for src in files:
            if src.suffix.lower() not in IMAGE_EXTENSIONS:
                (tmp / src.relative_to(folder)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, tmp / src.relative_to(folder))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out is None:
        os.replace(folder, backup)
    elif target.exists():
        target.rmdir()
    os.replace(tmp, target)
    print(f"{len(masks)} colour masks converted to class ids in {target}"
          + (f"; the colour originals are in {backup}" if out is None else ""))
    return target

