"""The one pre-training check of a dataset: every partner file has its image's size and every mask decodes
to valid values. Segmentation (class ids), binary ({0, 1} or {0, 255}) and depth samples use it alike.

Sizes are compared from file headers (no decoding); a mask is decoded only when a value reader is given.
Every problem found is reported at once, not only the first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from .io import ColorMaskError, DataError, color_mask_message, image_size, read_mask

PARTNERS = ("mask", "depth")
"""Sample attributes (paths or None) that must have the image's size."""


def check_sizes(sample) -> tuple[int, int]:
    """Header-only check that ``sample.image`` and each partner file (``sample.mask``, ``sample.depth`` where
    present and not None) have one size.

    Args:
        sample: a :class:`~seglib.data.layouts.Sample` or :class:`~seglib.data.depth_layouts.DepthSample`.

    Returns:
        ``(width, height)`` of the image [px].

    Raises:
        DataError: a size mismatch (``"<kind> <file> is WxH but its image <file> is WxH"`` and the fix) or an
            unreadable file.
    """
    size = image_size(sample.image)
    for kind in PARTNERS:
        path = getattr(sample, kind, None)
        if path is None:
            continue
        other = image_size(path)
        if other != size:
            raise DataError(f"{'depth map' if kind == 'depth' else kind} {path} is {other[0]}x{other[1]} but its "
                            f"image {sample.image} is {size[0]}x{size[1]}; re-export it at the image resolution")
    return size


def class_id_reader(n_classes: int, ignore_index: int | None = None) -> Callable[[Path], np.ndarray]:
    """A mask reader for :func:`check_samples`: :func:`seglib.data.io.read_mask` (class ids ``0..C-1`` plus
    ``ignore_index``; raises :class:`DataError` naming the values and the fix)."""
    return lambda path: read_mask(path, n_classes, ignore_index)


def read_binary_mask_values(path: Path) -> np.ndarray:
    """A mask reader for :func:`check_samples`: the grey values as stored must be within {0, 1} or {0, 255}.

    Returns:
        The mask as stored (``H x W``, uint8 or int64).

    Raises:
        DataError: other values (listed, with the fix) or an unreadable file.
    """
    raw = read_mask(path, 1 << 32)  # grey values as stored: no class-id limit, nothing mapped to {0, 1}
    values = np.unique(raw).tolist()
    if not (set(values) <= {0, 1} or set(values) <= {0, 255}):
        raise DataError(f"mask {path} has values {values[:10]}{' ...' if len(values) > 10 else ''}; a binary mask "
                        "holds only {0, 1} or {0, 255} (foreground 1 or 255). Threshold it (e.g. 255 * (mask > 127)) "
                        "and save it as PNG, or remove it from the dataset")
    return raw


def check_samples(samples: Iterable, read_values: Callable[[Path], np.ndarray] | None = None, limit: int = 10) -> int:
    """Check every sample once: sizes by :func:`check_sizes` and, with ``read_values``, each mask's values.

    Args:
        samples: samples with ``image`` and optional ``mask``/``depth`` paths (unlabelled ones are skipped
            by the value check).
        read_values: ``path -> H x W array`` raising :class:`DataError` on bad values, e.g.
            :func:`class_id_reader` or :func:`read_binary_mask_values`; None checks sizes only.
        limit: problems quoted in the message (all are counted).

    Returns:
        The number of samples checked.

    Raises:
        DataError: one message listing every problem found (the first ``limit`` quoted), each naming the
            file and the fix; colour masks make one entry (files, colours found, the
            :func:`seglib.data.convert_color_masks` call).
    """
    problems, colour, n = [], [], 0
    for s in samples:
        n += 1
        try:
            if read_values is not None and getattr(s, "mask", None) is not None:
                read_values(s.mask)
            check_sizes(s)
        except ColorMaskError as err:
            colour.append(err)
        except DataError as err:
            problems.append(str(err))
    if colour:  # one entry for all colour masks: their files, their colours and the one converter call
        colors: dict[int, int] = {}
        for err in colour:
            for k, c in err.colors.items():
                colors[k] = colors.get(k, 0) + c
        problems.insert(0, color_mask_message([e.path for e in colour], colors, limit))
    if len(problems) == 1:  # one bad file, or colour masks only
        raise DataError(problems[0])
    if problems:
        bad = len(problems) + len(colour) - bool(colour)
        more = f"\n... and {len(problems) - limit} more" if len(problems) > limit else ""
        raise DataError(f"{bad} of {n} samples have problems:\n" + "\n".join(problems[:limit]) + more)
    return n
