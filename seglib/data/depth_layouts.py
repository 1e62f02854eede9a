"""Layouts of depth + mask datasets, in their own registry :data:`DEPTH_LAYOUTS` (segmentation layouts are
in :data:`seglib.data.layouts.SEGMENTATION_LAYOUTS`; neither accepts the other's names).

``modest`` -- MODEST Museum (seed 000; github.com/shan18/MODEST-Museum-Dataset)::

    bg/  bg_fg/  bg_fg_mask/  bg_fg_depth_map/  file_map.txt
    file_map.txt: bg <TAB> bg_fg <TAB> bg_fg_mask <TAB> bg_fg_depth_map   (names without extension;
    .jpeg as the original, or any image extension)        depth: bright = near

``fgbg`` -- a composite folder with a pairs table (as ``../shared/data/eva_fgbg_samples``)::

    images/ (fg on bg)  bg/  masks/  depth/  pairs.csv with columns image, mask, depth, bg [, near_is]

``rgbd`` -- RGB-D data without backgrounds (as ``../shared/data/rgbd_sod_mix``)::

    images/  depth/  masks_bin/ or masks/  [pairs.csv with image, depth, mask_bin or mask [, near_is]]
    Without pairs.csv files are matched by name: depth ``<stem>``, ``<stem>_depth`` or ``<stem>_Depth``,
    mask ``<stem>``, ``<stem>_GT`` or ``<stem>_mask``.

Each layout draws the seeded train/val split of :func:`seglib.data.splits.seeded_split` (``val_fraction``);
there is no test split. ``near`` is a
per-dataset setting (``"bright"``, ``"dark"``, ``"auto"``); in ``"auto"`` a ``near_is`` column of
``pairs.csv`` sets it per sample (see :mod:`seglib.data.depth`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ..registry import Registry
from .io import IMAGE_EXTENSIONS, DataError, list_files
from .splits import find_folder, match_stems, seeded_split, unmatched_error

DEPTH_LAYOUTS = Registry("depth layout")
"""Layouts of depth + mask datasets (``modest``, ``fgbg``, ``rgbd``): ``(root, *, seed, val_fraction, near) -> splits``."""
NEAR_VALUES = ("bright", "dark")
INPUT_MODES = ("bg+bg_fg", "rgb")
"""Network inputs of a depth sample: background + composite (needs ``DepthSample.bg``) or the RGB image alone;
used by :class:`seglib.data.depth.DepthSegDataset` and :class:`seglib.models.dsresnet.DSResNet`."""


def parse_near(value, where: str = "") -> str:
    """``"bright"``, ``"dark"`` or ``"auto"`` from a setting such as ``"dark (larger = farther, metric)"``.

    Raises:
        DataError: any other value (``where`` names the file/column it came from).
    """
    text = str(value).strip().lower()
    for v in (*NEAR_VALUES, "auto"):
        if text.startswith(v):
            return v
    raise DataError(f"depth 'near' setting {value!r}{' in ' + where if where else ''} must start with "
                    "'bright' (larger value = nearer) or 'dark' (larger value = farther)")


@dataclass(frozen=True)
class DepthSample:
    """One depth + mask sample: ``image`` (bg_fg composite or RGB), ``mask``, ``depth``, optional ``bg``,
    and ``near`` (``"bright"``, ``"dark"`` or ``"auto"``) telling how to read the depth."""

    name: str
    image: Path
    mask: Path
    depth: Path
    bg: Path | None = None
    near: str = "bright"


def _resolve(folder: Path, name: str) -> Path | None:
    """``folder/name`` if it is a file, else ``folder/name.<ext>`` for an image extension, else None."""
    p = folder / name
    if p.is_file():
        return p
    for ext in (".jpeg", *IMAGE_EXTENSIONS):
        for e in (ext, ext.upper()):
            q = folder / f"{name}{e}"
            if q.is_file():
                return q
    return None


def _near(setting: str, row: dict | None, where: str, default: str) -> str:
    """The per-dataset ``setting``; in ``"auto"`` the row's ``near_is``/``near`` column, else ``default``."""
    near = parse_near(setting, "DEPTH_NEAR")
    if near != "auto":
        return near
    col = (row or {}).get("near_is") or (row or {}).get("near")
    return parse_near(col, where) if col else default


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    cols = set(rows[0]) if rows else set()
    missing = [c for c in required if c not in cols]
    if missing:
        raise DataError(f"{path} lacks the column(s) {missing} (has {sorted(cols)}); add them")
    return rows


def _missing_error(missing: list[str], fix: str) -> DataError:
    shown = "; ".join(missing[:5]) + (f"; and {len(missing) - 5} more" if len(missing) > 5 else "")
    return DataError(f"{len(missing)} missing file(s): {shown}. {fix}")


@DEPTH_LAYOUTS.register("modest")
def modest_layout(root: Path, *, seed: int = 0, val_fraction: float = 0.2, near: str = "auto", **_) -> dict:
    """Samples listed in a MODEST ``file_map.txt`` (``near="auto"`` means bright = near, DenseDepth).

    Raises:
        DataError: no ``file_map.txt``, a line without 4 tab-separated names, a name whose file is absent
            (line number, folder and name given).
    """
    base = find_folder(Path(root), "file_map.txt")
    if base is None:
        raise DataError(f"no file_map.txt under {root}; the MODEST layout needs bg/, bg_fg/, bg_fg_mask/, "
                        "bg_fg_depth_map/ and file_map.txt")
    fmap = base / "file_map.txt"
    setting = _near(near, None, "", "bright")
    folders = ("bg", "bg_fg", "bg_fg_mask", "bg_fg_depth_map")
    samples, missing = [], []
    for n, line in enumerate(fmap.read_text().splitlines(), 1):
        fields = [x.strip() for x in line.rstrip("\n").split("\t")]
        if not line.strip() or (n == 1 and fields[:4] == list(folders)):
            continue
        if len(fields) < 4:
            raise DataError(f"{fmap} line {n} has {len(fields)} tab-separated names, expected 4 "
                            f"(bg, bg_fg, bg_fg_mask, bg_fg_depth_map): {line!r}")
        paths = []
        for folder, name in zip(folders, fields):
            p = _resolve(base / folder, name)
            if p is None:
                missing.append(f"{fmap.name} line {n} names {folder}/{name}(.jpeg) which does not exist")
            paths.append(p)
        if None not in paths:
            bg, image, mask, depth = paths
            samples.append(DepthSample(Path(fields[1]).stem, image, mask, depth, bg, setting))
    if missing:
        raise _missing_error(missing, f"add the files under {base} or remove those lines from {fmap}")
    return seeded_split(samples, seed, val_fraction, 0.0, "depth samples")


@DEPTH_LAYOUTS.register("fgbg")
def fgbg_layout(root: Path, *, seed: int = 0, val_fraction: float = 0.2, near: str = "auto", **_) -> dict:
    """Samples of ``pairs.csv`` rows (image, mask, depth, bg; ``near="auto"``: the ``near_is`` column, else
    by bit depth when read -- 8-bit bright = near, 16-bit/float dark = near; see :mod:`seglib.data.depth`).

    Raises:
        DataError: no ``pairs.csv``/folders, missing columns, a row naming an absent file, a depth map
            that no row uses (a depth without an image).
    """
    base = find_folder(Path(root), "pairs.csv")
    if base is None or not (base / "images").is_dir() or not (base / "bg").is_dir():
        raise DataError(f"no pairs.csv beside images/ and bg/ under {root}; the fgbg layout needs images/, bg/, "
                        "masks/, depth/ and pairs.csv (image, mask, depth, bg)")
    table = base / "pairs.csv"
    rows = _read_csv(table, ("image", "mask", "depth", "bg"))
    samples, missing = [], []
    for n, row in enumerate(rows, 2):
        paths = []
        for folder, col in (("images", "image"), ("masks", "mask"), ("depth", "depth"), ("bg", "bg")):
            p = base / folder / row[col].strip()
            if not p.is_file():
                missing.append(f"{table.name} line {n} names {folder}/{row[col]} which does not exist")
            paths.append(p)
        image, mask, depth, bg = paths
        samples.append(DepthSample(image.stem, image, mask, depth, bg, _near(near, row, f"{table} line {n}", "auto")))
    if missing:
        raise _missing_error(missing, f"add the files under {base} or fix {table}")
    used = {s.depth.name for s in samples}
    orphans = [p.name for p in list_files(base / "depth") if p.name not in used]
    if orphans:
        raise unmatched_error("depth maps without an image (not in pairs.csv)", orphans, base / "depth",
                         f"add a row for each to {table} or remove them")
    return seeded_split(samples, seed, val_fraction, 0.0, "depth samples")


@DEPTH_LAYOUTS.register("rgbd")
def rgbd_layout(root: Path, *, seed: int = 0, val_fraction: float = 0.2, near: str = "auto", **_) -> dict:
    """RGB-D samples: ``images/``, ``depth/``, ``masks_bin/`` (preferred) or ``masks/``, optional ``pairs.csv``.

    Raises:
        DataError: missing folders, a depth map without an image, an image without depth or mask, a
            ``pairs.csv`` row naming an absent file.
    """
    base = find_folder(Path(root), "depth")
    if base is None or not (base / "images").is_dir():
        raise DataError(f"no images/ and depth/ folders under {root}; the rgbd layout needs images/, depth/ and "
                        "masks/ (or masks_bin/)")
    mask_dir = base / "masks_bin" if (base / "masks_bin").is_dir() else base / "masks"
    if not mask_dir.is_dir():
        raise DataError(f"{base} has no masks/ or masks_bin/ folder; add one binary mask per image")
    table = base / "pairs.csv"
    samples, missing = [], []
    if table.is_file():
        rows = _read_csv(table, ("image", "depth"))
        mcol = "mask_bin" if mask_dir.name == "masks_bin" and "mask_bin" in rows[0] else "mask"
        if mcol not in rows[0]:
            raise DataError(f"{table} has no 'mask' or 'mask_bin' column; add one naming each sample's mask file")
        for n, row in enumerate(rows, 2):
            paths = []
            for folder, col in ((base / "images", "image"), (base / "depth", "depth"), (mask_dir, mcol)):
                p = folder / row[col].strip()
                if not p.is_file():
                    missing.append(f"{table.name} line {n} names {folder.name}/{row[col]} which does not exist")
                paths.append(p)
            samples.append(DepthSample(paths[0].stem, paths[0], paths[2], paths[1], None,
                                       _near(near, row, f"{table} line {n}", "auto")))
        if missing:
            raise _missing_error(missing, f"add the files under {base} or fix {table}")
        used = {s.depth.name for s in samples}
        orphans = [p.name for p in list_files(base / "depth") if p.name not in used]
    else:
        images = {p.stem: p for p in list_files(base / "images")}
        depths, orphans = match_stems(images, list_files(base / "depth"), ("_depth", "_Depth", "_d"))
        masks, _ = match_stems(images, list_files(mask_dir), ("_GT", "_gt", "_mask"))
        lost = [f"images/{p.name} has no depth map" for s, p in images.items() if s not in depths]
        lost += [f"images/{p.name} has no mask in {mask_dir.name}/" for s, p in images.items() if s not in masks]
        if lost:
            raise _missing_error(lost, "add the partner files (same name) or remove the images")
        setting = _near(near, None, "", "auto")
        samples = [DepthSample(s, p, masks[s], depths[s], None, setting) for s, p in sorted(images.items())]
    if orphans:
        raise unmatched_error("depth maps without an image", orphans, base / "depth",
                         f"add the images to {base / 'images'} or remove the depth maps")
    return seeded_split(samples, seed, val_fraction, 0.0, "depth samples")


def detect_depth_layout(root: Path) -> str:
    """``"modest"`` (a file_map.txt), ``"fgbg"`` (images/ + bg/ + pairs.csv) or ``"rgbd"`` (images/ + depth/).

    Raises:
        DataError: none of them within 3 levels of ``root``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    if find_folder(root, "file_map.txt") is not None:
        return "modest"
    base = find_folder(root, "depth")
    if base is not None and (base / "images").is_dir():
        if (base / "bg").is_dir():
            if not (base / "pairs.csv").is_file():
                raise DataError(f"{base} has bg/ but no pairs.csv saying which bg belongs to which image; add "
                                "pairs.csv (image, mask, depth, bg) or remove bg/ and use INPUTS='rgb'")
            return "fgbg"
        return "rgbd"
    raise DataError(f"cannot tell the layout of {root}: expected a MODEST folder (file_map.txt), images/ + bg/ + "
                    "masks/ + depth/ + pairs.csv, or images/ + depth/ + masks/ (RGB-D); see seglib.data.depth_layouts")


def load_depth_splits(root: Path, layout: str = "auto", **kwargs) -> tuple[str, dict]:
    """Resolve ``layout`` (``"auto"`` detects it) and return ``(layout name, {"train", "val", "test"})``.

    Raises:
        DataError: layout problems, or an empty train or val split.
        KeyError: a name that is not a depth layout, segmentation layouts included (lists the depth layouts).
    """
    name = detect_depth_layout(root) if layout == "auto" else layout
    splits = DEPTH_LAYOUTS.get(name)(Path(root), **kwargs)
    for split in ("train", "val"):
        if not splits.get(split):
            raise DataError(f"the {split} split of {root} ({name} layout) is empty: "
                            f"{len(splits.get('train', [])) + len(splits.get('val', []))} samples in all; add samples "
                            "or change VAL_FRACTION")
    return name, splits
