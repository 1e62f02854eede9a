"""Which mask belongs to which image when their names differ: a ``pairs.csv`` table or a pairing rule.

* ``pairs.csv`` (columns ``image``, ``mask``; one row per image, ``mask`` empty for an unlabelled image): paths
  relative to the folder holding the table (a bare name is also looked up in its ``images/`` and ``masks/``);
* ``PAIR_BY``, a regular expression searched in each file's stem (name without extension); the common id is
  its group ``id`` if named, else its first group, else the whole match. DRIVE retina
  (``21_training.tif`` with ``21_manual1.gif``): ``PAIR_BY = r"^(\\d+)_"``.

Without either, a mask pairs with the image of the same stem. Nothing here reads pixels.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from .io import DataError

PAIRS_TABLE = "pairs.csv"
"""The file name of a pairs table beside (or above) ``images/`` and ``masks/``."""


def has_pairs_columns(table: Path) -> bool:
    """True when the header line of ``table`` has the columns ``image`` and ``mask``."""
    with open(table, newline="") as f:
        header = next(csv.reader(f), [])
    return {"image", "mask"} <= {c.strip() for c in header}


def _locate(base: Path, value: str, folder: str) -> Path | None:
    """``base/value`` if it is a file, else ``base/folder/value``, else None."""
    for p in (base / value, base / folder / value):
        if p.is_file():
            return p
    return None


def read_pairs_table(table: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """The ``(images, masks)`` of a ``pairs.csv``, both keyed by the image's stem (unlabelled images have no mask).

    Raises:
        DataError: no ``image``/``mask`` column, a row naming a file that does not exist (line numbers, all of
            them), two rows with images of one stem.
    """
    table = Path(table)
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    cols = set(rows[0]) if rows else set()
    if not {"image", "mask"} <= cols:
        raise DataError(f"{table} needs the columns image and mask (paths relative to {table.parent}), has "
                        f"{sorted(cols)}; add a header line 'image,mask'")
    images, masks, missing = {}, {}, []
    for n, row in enumerate(rows, 2):
        image = _locate(table.parent, (row["image"] or "").strip(), "images")
        mask_name = (row["mask"] or "").strip()
        mask = _locate(table.parent, mask_name, "masks") if mask_name else None
        if image is None:
            missing.append(f"line {n} image {row['image']!r}")
        if mask_name and mask is None:
            missing.append(f"line {n} mask {mask_name!r}")
        if image is None or (mask_name and mask is None):
            continue
        if image.stem in images:
            raise DataError(f"{table} line {n} names image {image.name}, whose name {image.stem!r} another row "
                            f"already uses ({images[image.stem]}); sample names must be unique")
        images[image.stem] = image
        if mask is not None:
            masks[image.stem] = mask
    if missing:
        raise DataError(f"{table} names {len(missing)} file(s) that do not exist: {'; '.join(missing[:5])}"
                        f"{' ...' if len(missing) > 5 else ''}; paths are relative to {table.parent}: fix the rows")
    return images, masks


def _key(rx: re.Pattern, stem: str) -> str | None:
    m = rx.search(stem)
    if m is None:
        return None
    return m.group("id") if "id" in rx.groupindex else m.group(1) if rx.groups else m.group(0)


def pair_masks(images: dict[str, Path], masks: list[Path], pair_by: str | None = None) -> tuple[dict, list[str]]:
    """Pair mask files with ``images`` (``{stem: path}``): by equal stem, or by the id ``pair_by`` finds in both.

    Returns:
        ``({image stem: mask path}, [names of masks that pair with no image])``.

    Raises:
        DataError: an invalid ``pair_by``, or one id found in two images or two masks (both named).
    """
    if pair_by is None:
        found = {p.stem: p for p in masks if p.stem in images}
        return found, [p.name for p in masks if p.stem not in images]
    try:
        rx = re.compile(pair_by)
    except re.error as err:
        raise DataError(f"PAIR_BY={pair_by!r} is not a regular expression ({err}); e.g. r'^(\\d+)_'") from None
    by_id: dict[str, str] = {}
    for stem, p in images.items():
        k = _key(rx, stem)
        if k is not None and k in by_id:
            raise DataError(f"PAIR_BY={pair_by!r} finds the id {k!r} in two images, {images[by_id[k]].name} and "
                            f"{p.name}; make the pattern capture an id unique to each image")
        if k is not None:
            by_id[k] = stem
    found, orphans = {}, []
    for p in masks:
        stem = by_id.get(_key(rx, p.stem))
        if stem is None:
            orphans.append(p.name)
        elif stem in found:
            raise DataError(f"PAIR_BY={pair_by!r} pairs two masks, {found[stem].name} and {p.name}, with the image "
                            f"{images[stem].name}; make the pattern capture an id unique to each mask")
        else:
            found[stem] = p
    return found, orphans


def no_pairs_error(images: list[Path], masks: list[Path], base: Path, pair_by: str | None = None) -> DataError:
    """The message when images and masks exist but not one pairs up: examples of both names and the fixes
    (same names, a ``pairs.csv``, or a ``PAIR_BY`` rule -- one guessed from a shared leading number)."""
    ex_i = ", ".join(p.name for p in images[:3])
    ex_m = ", ".join(p.name for p in masks[:3])
    lead_i, lead_m = re.match(r"^(\d+)", images[0].stem), re.match(r"^(\d+)", masks[0].stem)
    rule = r"^(\d+)" if lead_i and lead_m and lead_i.group(1) == lead_m.group(1) else r"^(\d+)_"
    rule_used = f"PAIR_BY={pair_by!r} pairs none of them. " if pair_by else ""
    return DataError(
        f"none of the {len(images)} images pairs with any of the {len(masks)} masks by name: images are named like "
        f"{ex_i}; masks like {ex_m}. {rule_used}"
        f"Name each mask as its image (same name, any extension), or add {base / PAIRS_TABLE} "
        f"with the columns image,mask (one row per image, paths relative to {base}), or pair them by the id both "
        f"names share: PAIR_BY=r'{rule}' (a regular expression whose first group is the id)")
