"""Splitting samples and pairing files: the one seeded split, the even smoke subset, and the folder and
name matching that segmentation and depth layouts share.

Nothing here reads pixels; every function works on file names and sample lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .io import DataError, is_junk

SPLITS = ("train", "val", "test")


def seeded_split(items: Sequence, seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.0,
                 what: str = "labelled samples") -> dict[str, list]:
    """The one seeded train/val/test split of seglib.

    ``np.random.default_rng(seed).permutation(n)`` orders the items; the first ``round(n * val_fraction)``
    go to ``val``, the next ``round(n * test_fraction)`` to ``test``, the rest to ``train``. Each split keeps
    the items' original order. ``val`` gets at least one item when ``val_fraction > 0``, ``test`` at least
    one when ``test_fraction > 0``, and ``train`` always keeps at least one (so 2 items at 0.2 give 1 + 1).

    Args:
        items: anything (samples, names); ``n = len(items)``.
        seed: permutation seed.
        val_fraction / test_fraction: shares in [0, 1).
        what: what the items are, for the error message.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``.

    Raises:
        DataError: a fraction outside [0, 1) or summing to 1 or more, or fewer items than the non-empty
            splits need (the message gives the count and the fix).
    """
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= float(f) < 1.0:
            raise DataError(f"{name}={f} must be in [0, 1); e.g. VAL_FRACTION=0.2")
    if val_fraction + test_fraction >= 1.0:
        raise DataError(f"val_fraction + test_fraction = {val_fraction + test_fraction} leaves no training data; "
                        "keep their sum below 1")
    n = len(items)
    n_val = max(int(round(n * val_fraction)), 1 if val_fraction > 0 else 0)
    n_test = max(int(round(n * test_fraction)), 1 if test_fraction > 0 else 0)
    need = 1 + (val_fraction > 0) + (test_fraction > 0)
    if n < need:
        raise DataError(f"{n} {what} cannot be split into train{', val' if val_fraction > 0 else ''}"
                        f"{', test' if test_fraction > 0 else ''} with at least one each; add samples (at least "
                        f"{need}) or lower VAL_FRACTION/test_fraction")
    while n_val + n_test > n - 1:  # keep one for training: shrink the larger of val and test
        if n_val >= n_test and n_val > 1 or n_test <= 1:
            n_val -= 1
        else:
            n_test -= 1
    order = np.random.default_rng(seed).permutation(n)
    parts = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    return {k: [items[i] for i in sorted(parts[k].tolist())] for k in SPLITS}


def subset_evenly(samples: Sequence, n: int) -> list:
    """``n`` items spread evenly over ``samples`` (``np.linspace`` indices; deterministic; all of them when
    there are ``n`` or fewer). Used for smoke runs and previews."""
    if len(samples) <= n:
        return list(samples)
    idx = np.linspace(0, len(samples) - 1, n).round().astype(int)
    return [samples[i] for i in idx]


def find_folder(root: Path, marker: str, depth: int = 3) -> Path | None:
    """The first folder at or below ``root`` (breadth-first, ``depth`` levels, junk skipped) containing an
    entry named ``marker``, or None."""
    level = [Path(root)]
    for _ in range(depth + 1):
        nxt = []
        for d in level:
            if (d / marker).exists():
                return d
            nxt.extend(sorted(p for p in d.iterdir() if p.is_dir() and not is_junk(p.name)))
        level = nxt
    return None


def unmatched_error(kind: str, names: list[str], folder: Path, fix: str) -> DataError:
    """A :class:`DataError` listing up to five unmatched files of ``folder`` (``kind`` says what they lack) and the fix."""
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return DataError(f"{len(names)} {kind} in {folder}: {shown}; {fix}")


def match_stems(stems: dict[str, Path], files: list[Path], suffixes: tuple[str, ...] = ()) -> tuple[dict, list[str]]:
    """Pair ``files`` with the keys of ``stems`` by name: a file matches stem ``s`` when its own stem is ``s``
    or ``s`` plus one of ``suffixes`` (e.g. ``"_depth"``, ``"_GT"``).

    Returns:
        ``({stem: file}, [names of files that match no stem])``.
    """
    found, orphans = {}, []
    for p in files:
        stem = p.stem
        key = next((stem[: -len(s)] for s in suffixes if s and stem.endswith(s) and stem[: -len(s)] in stems),
                   stem if stem in stems else None)
        if key is None:
            orphans.append(p.name)
        else:
            found[key] = p
    return found, orphans


def split_counts(splits: dict, unit: str = "images") -> str:
    """One line such as ``"train: 400 images, val: 60 images, test: 30 images"`` (as the JetCar notebook
    printed); splits absent from ``splits`` count 0."""
    return ", ".join(f"{s}: {len(splits.get(s, []))} {unit}" for s in SPLITS)
