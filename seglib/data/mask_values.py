"""What a mask's values say about the dataset: the distinct values of a mask and the ``N_CLASSES`` (or the
explicit option) they call for, worded for the messages of :func:`seglib.data.io.read_mask` and
:func:`seglib.data.checks.check_samples`.

Pure functions on values; nothing here reads files.
"""

from __future__ import annotations

from functools import reduce
from math import gcd

import numpy as np

MANY_VALUES = 64
"""More distinct 8-bit values than this in masks suggest a photograph or JPEG artefacts, not class ids."""


def distinct_values(arr: np.ndarray) -> list[int]:
    """Sorted distinct values of an integer array (``np.bincount`` for ``uint8``, ``np.unique`` otherwise)."""
    arr = np.asarray(arr)
    if arr.dtype == np.uint8:
        return np.flatnonzero(np.bincount(arr.ravel(), minlength=256)).tolist()
    return [int(v) for v in np.unique(arr)]


def shown(values: list[int], n: int = 6) -> str:
    """``"0, 1, 2"`` or, for more than ``n`` values, ``"0, 5000, ..., 55000"``."""
    if len(values) <= n:
        return ", ".join(map(str, values))
    return f"{values[0]}, {values[1]}, ..., {values[-1]}"


def suggest_classes(values: list[int], n_classes: int, ignore_index: int | None = None) -> str:
    """The fix for masks holding ``values`` (class ids after any ``MASK_SCALE``) under ``N_CLASSES=n_classes``.

    * only {0, 255} (or {0, v}): a binary mask -> ``N_CLASSES=2`` (255 is read as 1; {0, v} needs
      ``MASK_THRESHOLD=v``) or the binary task of the hyperparameter study;
    * non-zero values sharing a factor k > 1 (over 255, or k >= 10) with at most 256 ids: class ids scaled by k -> ``MASK_SCALE=k`` (or
      re-save) and ``N_CLASSES = max / k + 1``;
    * more than :data:`MANY_VALUES` 8-bit values: not class ids (a photo or JPEG-saved mask);
    * otherwise ``N_CLASSES = max + 1`` (or ``IGNORE_INDEX`` for a void label); with ``N_CLASSES=2`` binarising
      is named as the explicit ``MASK_THRESHOLD`` option, never done silently.

    Returns:
        One sentence starting with the distinct values found.
    """
    vals = sorted(set(int(v) for v in values) - {ignore_index})
    head = f"{len(vals)} distinct value{'s' if len(vals) != 1 else ''} {shown(vals)}"
    if len(vals) == 2 and vals[0] == 0:
        v = vals[1]
        how = ("255 is read as class 1" if v == 255 else "0 and 1 are the class ids" if v == 1 else
               f"with MASK_THRESHOLD={v}: class 1 where value >= {v}")
        return (f"{head}: a binary mask; set N_CLASSES=2 ({how}), or train it as the binary task "
                "(the hyperparameter study)")
    k = reduce(gcd, [v for v in vals if v], 0)
    if k > 1 and (vals[-1] > 255 or k >= 10) and vals[-1] // k < 256:
        return (f"{head}: class ids scaled by {k}; divide by {k} (set MASK_SCALE={k}, or re-save the masks as "
                f"class ids) and set N_CLASSES={vals[-1] // k + 1}")
    if len(vals) > MANY_VALUES and vals[-1] < 256:
        return (f"{head}: too many for class ids; these look like a photograph or a JPEG-saved mask. Export the "
                "masks as 1-channel PNGs whose value is the class id")
    text = f"{head}: set N_CLASSES={vals[-1] + 1} (ids 0..{vals[-1]})" if vals else head
    if vals and ignore_index is None:
        text += ", or set IGNORE_INDEX to the value that marks unlabelled pixels"
    if n_classes == 2:
        text += ("; to merge classes into background/foreground instead, set MASK_THRESHOLD explicitly (class 1 "
                 "where value >= MASK_THRESHOLD)")
    return text
