"""The one pre-training check of a dataset: every file of every sample is decoded once, partner files have
their image's size and every mask holds valid values. Segmentation (class ids), binary ({0, 1} or {0, 255})
and depth samples use it alike, for every split (unlabelled test images included).

Every problem found is reported at once (corrupt, truncated or unreadable files, decompression bombs, size
mismatches, lossy or out-of-range masks), not only the first, before anything is trained.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .io import (
    ColorMaskError,
    DataError,
    MaskValueError,
    color_mask_message,
    image_size,
    open_image,
    read_image,
    read_mask,
)
from .mask_values import suggest_classes

PARTNERS = ("mask", "depth")
"""Sample attributes (paths or None) that must have the image's size."""
DECODED = ("image", "mask", "depth", "bg")
"""Sample attributes (paths or None) whose files :func:`check_samples` decodes."""


def size_error(kind: str, path: Path, other: tuple[int, int], image: Path, size: tuple[int, int]) -> DataError:
    """``"<kind> <file> is WxH but its image <file> is WxH"`` and the fix (``kind`` ``"mask"`` or ``"depth"``)."""
    return DataError(f"{'depth map' if kind == 'depth' else kind} {path} is {other[0]}x{other[1]} but its image "
                     f"{image} is {size[0]}x{size[1]}; re-export it at the image resolution")


def check_sizes(sample) -> tuple[int, int]:
    """Header-only check that ``sample.image`` and each partner file (``sample.mask``, ``sample.depth`` where
    present and not None) have one size.

    Args:
        sample: a :class:`~seglib.data.layouts.Sample` or :class:`~seglib.data.depth_layouts.DepthSample`.

    Returns:
        ``(width, height)`` of the image [px].

    Raises:
        DataError: a size mismatch (:func:`size_error`) or an unreadable file.
    """
    size = image_size(sample.image)
    for kind in PARTNERS:
        path = getattr(sample, kind, None)
        if path is not None and (other := image_size(path)) != size:
            raise size_error(kind, path, other, sample.image, size)
    return size


def class_id_reader(n_classes: int, ignore_index: int | None = None, threshold: int | None = None,
                    scale: int | None = None) -> Callable[[Path], np.ndarray]:
    """A mask reader for :func:`check_samples`: :func:`seglib.data.io.read_mask` (class ids ``0..C-1`` plus
    ``ignore_index``; ``threshold``/``scale`` as there, ``scale`` None = 1; raises :class:`DataError` naming the
    values and the fix)."""
    return lambda path: read_mask(path, n_classes, ignore_index, threshold, scale or 1)


def read_binary_mask_values(path: Path) -> np.ndarray:
    """A mask reader for :func:`check_samples`: the grey values as stored must be within {0, 1} or {0, 255}.

    Returns:
        The mask as stored (``H x W``, uint8 or int64).

    Raises:
        DataError: other values (listed, with the fix) or an unreadable file.
    """
    try:
        raw = read_mask(path, 1 << 32)  # grey values as stored: no class-id limit, nothing mapped to {0, 1}
    except DataError as err:
        if " is a JPEG file" not in str(err) and " is a MPO file" not in str(err):
            raise
        raise DataError(f"mask {path} is a JPEG file (lossy: along every edge it holds values other than 0 and 255); "
                        "the study reads binary masks as stored: threshold them (255 * (mask >= 128)) and save them "
                        "as PNG") from None
    values = np.unique(raw).tolist()
    if not (set(values) <= {0, 1} or set(values) <= {0, 255}):
        raise DataError(f"mask {path} has values {values[:10]}{' ...' if len(values) > 10 else ''}; a binary mask "
                        "holds only {0, 1} or {0, 255} (foreground 1 or 255). Threshold it (e.g. 255 * (mask > 127)) "
                        "and save it as PNG, or remove it from the dataset")
    return raw


def _values_entry(errors: list[MaskValueError], limit: int) -> str:
    """One entry for every mask with out-of-range values: the files and the fix for all their values together."""
    if len(errors) == 1:
        return str(errors[0])
    first = errors[0]
    union = sorted(set().union(*(e.values for e in errors)))
    names = ", ".join(str(e.path) for e in errors[:limit]) + (f" and {len(errors) - limit} more" if len(errors) > limit
                                                              else "")
    hint = f" (IGNORE_INDEX is {first.ignore_index})" if first.ignore_index is not None else ""
    return (f"{len(errors)} masks have values >= N_CLASSES={first.n_classes}{hint}: {names}; over all of them "
            f"{suggest_classes(union, first.n_classes, first.ignore_index)}")


def check_samples(samples: Iterable, read_values: Callable[[Path], np.ndarray] | None = None, limit: int = 10, *,
                  progress: bool | None = None, on_sample: Callable[[object, dict], None] | None = None) -> int:
    """Decode every file of every sample once and check it: the full pre-training check.

    Each sample's ``image``, ``mask``, ``depth`` and ``bg`` file (where present and not None; a file shared by
    several samples, such as a background, is decoded once) is decoded completely, so corrupt and truncated
    files and decompression bombs are found here, not mid-training; masks are read by ``read_values``; a mask
    or depth map must have its image's size.

    Args:
        samples: samples of any split with ``image`` and optional ``mask``/``depth``/``bg`` paths (unlabelled
            test samples have ``mask=None``).
        read_values: ``path -> H x W array`` raising :class:`DataError` on bad values, e.g.
            :func:`class_id_reader` or :func:`read_binary_mask_values`; None decodes masks as stored.
        limit: problems quoted in the message (all are counted).
        progress: show a tqdm bar; None: in notebooks and terminals, not in plain logs (tqdm's non-TTY rule).
        on_sample: called as ``on_sample(sample, decoded)`` for each sample without problems, ``decoded`` mapping
            each attribute decoded for it to its array (``"image"``: ``uint8 H x W x 3`` RGB; ``"mask"``: the
            ``read_values`` result or the mask as stored; ``"depth"``/``"bg"``: as stored) -- the seam for a
            decoded-image cache.

    Returns:
        The number of samples checked.

    Raises:
        DataError: one message listing every problem found (the first ``limit`` quoted), each naming the
            file and the fix; colour masks make one entry (files, colours found, the
            :func:`seglib.data.convert_color_masks` call), and so do masks with out-of-range values (files, all
            values found, the N_CLASSES they suggest).
    """
    samples = list(samples)
    problems, colour, values, seen = [], [], [], set()
    n = bad = 0
    for s in tqdm(samples, desc="checking data", unit="sample", disable=(not progress) if progress is not None
                  else None, file=sys.stdout, leave=False):
        n += 1
        decoded, failed = {}, False
        for kind in DECODED:
            path = getattr(s, kind, None)
            if path is None or (kind == "bg" and path in seen):
                continue
            seen.add(path)
            try:
                if kind == "mask" and read_values is not None:
                    decoded[kind] = read_values(path)
                else:
                    decoded[kind] = read_image(path) if kind in ("image", "bg") else np.asarray(open_image(path))
                if kind in PARTNERS and "image" in decoded and decoded[kind].shape[:2] != decoded["image"].shape[:2]:
                    h, w = decoded[kind].shape[:2]
                    ih, iw = decoded["image"].shape[:2]
                    raise size_error(kind, path, (w, h), s.image, (iw, ih))
            except ColorMaskError as err:
                colour.append(err)
                failed = True
            except MaskValueError as err:
                values.append(err)
                failed = True
            except DataError as err:
                problems.append(str(err))
                failed = True
        bad += failed
        if on_sample is not None and not failed:
            on_sample(s, decoded)
    if values:  # one entry for all out-of-range masks: their files and what all their values suggest
        problems.insert(0, _values_entry(values, limit))
    if colour:  # one entry for all colour masks: their files, their colours and the one converter call
        colors: dict[int, int] = {}
        for err in colour:
            for k, c in err.colors.items():
                colors[k] = colors.get(k, 0) + c
        problems.insert(0, color_mask_message([e.path for e in colour], colors, limit))
    if len(problems) == 1:  # one bad file, or colour masks only, or out-of-range masks only
        raise DataError(problems[0])
    if problems:
        more = f"\n... and {len(problems) - limit} more" if len(problems) > limit else ""
        raise DataError(f"{bad} of {n} samples have problems:\n" + "\n".join(problems[:limit]) + more)
    return n
