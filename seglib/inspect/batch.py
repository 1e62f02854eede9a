"""A training batch as the model sees it (``run.show_batch(n)``): numpy panels in, one matplotlib Figure out.

The runs (:meth:`seglib.experiment.Experiment.show_batch`) take the items of their ``(epoch, index)``-keyed
dataset, turn each into panels with their ``batch_panels(item)`` hook (the helpers here: :func:`segmentation_panels`,
:func:`depth_sample_panels`) and draw them with :func:`batch_figure`: one column per sample, one row per panel
kind, a legend of the classes present. :func:`next_epoch` reads which epoch the next training trains.

Conventions: images are ``uint8 H x W x 3`` RGB; class-id masks integer ``H x W``; depth float ``H x W`` in
[0, 1] (1 = near); colour tables ``uint8 (C, 3)`` (:func:`seglib.data.classes.palette`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..data.classes import colorize
from .render import GREY, check_image, check_mask, depth_to_rgb

COLUMNS = 8
"""Samples per row block of :func:`batch_figure` (more wrap to a further block of rows)."""
PANEL_IN = 1.9
"""Side of one panel [inches]."""


def mask_rgb(mask, colors, ignore_index: int | None = None) -> np.ndarray:
    """Class ids as colours: ``colors[mask]`` (``uint8 H x W x 3``), ``ignore_index`` pixels grey (128).

    Args: mask integer ``H x W`` ids in ``0..len(colors)-1`` or ``ignore_index``; colors ``uint8 (C, 3)``.
    Raises ``ValueError`` for other ids or shapes (:func:`seglib.inspect.render.check_mask`)."""
    mask = check_mask(mask, len(colors), ignore_index)
    out = colorize(mask, np.asarray(colors, np.uint8))
    if ignore_index is not None:
        out[mask == ignore_index] = GREY
    return out


def segmentation_panels(image, mask, colors, ignore_index: int | None = None) -> list[tuple[str, np.ndarray]]:
    """``[("image", image), ("mask", mask_rgb(mask))]`` of one sample (only the image when ``mask`` is None).

    Args: image ``uint8 H x W x 3``; mask integer ``H x W`` (same H x W) or None; colors ``uint8 (C, 3)``.
    Raises ``ValueError`` for bad shapes, dtypes or ids."""
    image = check_image(image)
    if mask is None:
        return [("image", image)]
    rgb = mask_rgb(mask, colors, ignore_index)
    if rgb.shape[:2] != image.shape[:2]:
        raise ValueError(f"mask is {rgb.shape[:2]} but image is {image.shape[:2]}; give both at one size")
    return [("image", image), ("mask", rgb)]


def grey_rgb(x) -> np.ndarray:
    """Float ``H x W`` values in [0, 1] (clipped) as grey ``uint8 H x W x 3`` (0 black, 1 white)."""
    x = np.asarray(x, np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected an H x W array, got shape {x.shape}")
    return np.repeat(np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)[..., None], 3, 2)


def depth_sample_panels(images: dict, mask, depth, valid=None) -> list[tuple[str, np.ndarray]]:
    """Panels of one depth + mask sample: each of ``images`` (name -> ``uint8 H x W x 3``, e.g. ``bg`` and
    ``bg_fg``, in order), ``("mask", grey)`` and ``("depth", magma)`` with invalid depth grey.

    Args: mask float/int ``H x W`` in {0, 1}; depth float ``H x W`` in [0, 1] (1 = near, bright);
    valid ``H x W`` (non-zero = measured) or None (all valid). Raises ``ValueError`` for bad shapes."""
    depth = np.asarray(depth, np.float32)
    if valid is not None:
        depth = np.where(np.asarray(valid) > 0.5, depth, np.nan).astype(np.float32)
    panels = [(name, check_image(im, name)) for name, im in images.items()]
    panels += [("mask", grey_rgb(mask)), ("depth", depth_to_rgb(depth))]
    hw = {p.shape[:2] for _, p in panels}
    if len(hw) != 1:
        raise ValueError(f"panels of one sample differ in size: {sorted(hw)}; give every array at one size")
    return panels


def class_legend(masks, class_names, colors, ignore_index: int | None = None) -> list[tuple[str, np.ndarray]]:
    """``[("<id> <name>", uint8 rgb), ...]`` of the class ids present in any of ``masks`` (integer ``H x W``
    arrays), ascending, ``ignore_index`` as ``"<id> ignored"`` (grey) when present."""
    present = sorted(set().union(*(np.unique(np.asarray(m)).tolist() for m in masks))) if len(masks) else []
    return [(f"{i} ignored", GREY) if i == ignore_index else (f"{i} {class_names[i]}", np.asarray(colors)[i])
            for i in present if i == ignore_index or 0 <= i < len(class_names)]


def batch_figure(rows: list, names: list[str], title: str, legend=()) -> Figure:
    """One column per sample, one row per panel kind (its name at the left), up to :data:`COLUMNS` samples per
    block of rows; the legend, when given, at the right.

    Args:
        rows: per sample, ``[(panel name, uint8 h x w x 3), ...]``: the same names in the same order for all.
        names: one column title per sample (e.g. ``"#12"``).
        title: the figure's title.
        legend: ``[(label, uint8 rgb), ...]`` or empty.

    Returns:
        A Figure (no pyplot: ``display(fig)`` in a notebook) with ``fig.seglib_panels = rows`` (what it drew).

    Raises:
        ValueError: no samples, ``names`` of another length, or samples with other panel names.
    """
    if not rows or len(rows) != len(names):
        raise ValueError(f"need one name per sample and at least one sample, got {len(rows)} samples and "
                         f"{len(names)} names")
    kinds = [k for k, _ in rows[0]]
    for j, r in enumerate(rows):
        if [k for k, _ in r] != kinds:
            raise ValueError(f"sample {names[j]} has panels {[k for k, _ in r]}, the first has {kinds}")
    cols = min(COLUMNS, len(rows))
    blocks = math.ceil(len(rows) / cols)
    nrows = blocks * len(kinds)
    h, w = rows[0][0][1].shape[:2]
    height = 0.7 + nrows * (PANEL_IN * min(h / w, 2.0) + 0.25)
    ncol = 1 if len(legend) <= height * 72 / 15 else 2  # a legend row is about 15 pt high
    fig = Figure(figsize=(0.5 + cols * PANEL_IN + (2.4 * ncol if legend else 0.0), height), layout="constrained")
    axes = fig.subplots(nrows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_visible(False)
    for j, (r, name) in enumerate(zip(rows, names)):
        b, c = divmod(j, cols)
        for k, (kind, rgb) in enumerate(r):
            ax = axes[b * len(kinds) + k, c]
            ax.set_visible(True)
            ax.imshow(check_image(rgb, f"panel {kind!r} of sample {name}"), interpolation="nearest")
            if k == 0:
                ax.set_title(name, fontsize=9)
            if c == 0:
                ax.set_ylabel(kind, fontsize=9)
    fig.suptitle(title, fontsize=10)
    if legend:
        handles = [Patch(facecolor=np.asarray(rgb) / 255.0, edgecolor="black") for _, rgb in legend]
        fig.legend(handles, [lab for lab, _ in legend], loc="outside right upper", fontsize=8,
                   ncol=ncol)
    fig.seglib_panels = rows
    return fig


def checkpoint_epoch(path) -> int:
    """The ``epoch`` (finished epochs) a checkpoint file records, read cheaply: ``torch.load(weights_only=True,
    mmap=True)`` maps the tensors without reading them (a plain load when mapping fails).

    Raises:
        FileNotFoundError: no such file. ValueError: a file that cannot be read or records no epoch (the message
            names it).
    """
    path, why = Path(path), ""
    for mmap in (True, False):
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except FileNotFoundError:
            raise
        except Exception as err:  # noqa: BLE001 - torn or refused: not a checkpoint to count on
            why = f"{type(err).__name__}: {str(err)[:80]}"
            continue
        if isinstance(ckpt, dict) and isinstance(ckpt.get("epoch"), int):
            return int(ckpt["epoch"])
        why = f"it holds a {type(ckpt).__name__}" + (" without an int epoch" if isinstance(ckpt, dict) else "")
        break
    raise ValueError(f"{path} records no readable epoch ({why})")


def next_epoch(folders, epochs: int) -> tuple[int, str]:
    """The epoch a training of this run would train next, read from ``<folder>/checkpoints/last.pt`` (and
    ``last.prev.pt``) of each of ``folders`` (the local folder, then WORKDIR; :func:`checkpoint_epoch`):
    ``(epoch, note for a title)``.

    ``last.pt``'s ``epoch`` counts finished epochs, so the next is that + 1 (a mid-epoch checkpoint resumes
    inside it); the most advanced readable file wins. A run done (``epochs`` reached) shows its last epoch. No
    checkpoint: epoch 1, a new run; only unreadable ones: epoch 1, and the note says it is assumed.
    """
    done, unreadable = None, []
    for folder in folders:
        for name in ("last.pt", "last.prev.pt"):
            try:
                e = checkpoint_epoch(Path(folder) / "checkpoints" / name)
            except FileNotFoundError:
                continue
            except ValueError:
                unreadable.append(name)
                continue
            done = e if done is None else max(done, e)
    if done is None:
        return 1, ("assumed: no readable last.pt" if unreadable else "a new run")
    if done >= epochs:
        return max(1, done), f"training done: its last epoch, {done}"
    return done + 1, f"next to train after epoch {done}"
