"""Pure rendering helpers for segmentation (and depth) samples; numpy in, numpy or Figure out.

Conventions: images are ``uint8`` ``H x W x 3`` RGB in 0..255; masks are integer (or bool) ``H x W`` class
ids in ``0..n_classes-1`` (plus an optional ``ignore_index``); colour tables are ``uint8`` ``(C, 3)``
as returned by :func:`seglib.data.classes.palette`. Bad input raises ``ValueError``.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..data.classes import colorize, default_class_table, palette
from ..metrics.functional import image_miou, mask_iou
from .live import LEGEND_KW, layout_figure, panel_layout, title_anchor

GREY = np.array([128, 128, 128], np.uint8)


def check_image(image, name: str = "image") -> np.ndarray:
    """Return ``image`` as a ``uint8 H x W x 3`` array; ``ValueError`` for another shape or dtype."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be H x W x 3 RGB, got shape {image.shape}; convert grey/RGBA images to RGB")
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 (0..255), got {image.dtype}; use (img * 255).round().astype(np.uint8)")
    return image


def check_mask(mask, n_classes: int, ignore_index: int | None = None, name: str = "mask") -> np.ndarray:
    """Return ``mask`` as an ``intp H x W`` array after checking dtype and values.

    Raises ``ValueError`` when it is not 2-D, not integer/bool, or holds ids outside ``0..n_classes-1``
    other than ``ignore_index``.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{name} must be H x W class ids, got shape {mask.shape}; squeeze channel dims / argmax logits")
    if mask.dtype != bool and not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class ids, got dtype {mask.dtype}; use mask.astype(np.int64)")
    mask = mask.astype(np.intp)
    bad = (mask < 0) | (mask >= n_classes)
    if ignore_index is not None:
        bad &= mask != ignore_index
    if bad.any():
        vals = np.unique(mask[bad])[:5].tolist()
        raise ValueError(
            f"{name} has class ids {vals} outside 0..{n_classes - 1} (ignore_index={ignore_index}); "
            "remap them to valid ids or pass the right ignore_index / n_classes"
        )
    return mask


def _check_colors(colors, n_classes: int) -> np.ndarray:
    colors = np.asarray(colors)
    if colors.ndim != 2 or colors.shape[1] != 3 or len(colors) < n_classes:
        raise ValueError(f"colors must be uint8 (>= {n_classes}, 3), got shape {colors.shape}; use palette(n_classes)")
    if not np.issubdtype(colors.dtype, np.integer) or colors.min() < 0 or colors.max() > 255:
        raise ValueError(f"colors must be RGB integers 0..255, got {colors.dtype}; use (c * 255).round().astype(np.uint8)")
    return colors.astype(np.uint8)


def _same_hw(a: np.ndarray, b: np.ndarray, na: str, nb: str) -> None:
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(f"{na} is {a.shape[:2]} but {nb} is {b.shape[:2]}; resize them to the same H x W")


def overlay(image, mask, colors, alpha: float = 0.5, ignore_index: int | None = None) -> np.ndarray:
    """Blend colourised class ids over an image: ``(1 - alpha) * image + alpha * colors[mask]``.

    Args: image ``uint8 H x W x 3`` RGB; mask integer ``H x W`` ids in ``0..len(colors)-1`` or
    ``ignore_index`` (those pixels keep the image); colors ``uint8 (C, 3)``; alpha opacity in ``[0, 1]``
    (0 gives the image, 1 the colourised mask). Returns ``uint8 H x W x 3``.
    Raises ``ValueError`` for bad shapes, dtypes, ids or alpha.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    image = check_image(image)
    colors = _check_colors(colors, 1)
    mask = check_mask(mask, len(colors), ignore_index)
    _same_hw(image, mask, "image", "mask")
    col = colorize(mask, colors, ignore_index).astype(np.float32)
    out = np.rint((1.0 - alpha) * image.astype(np.float32) + alpha * col).astype(np.uint8)
    if ignore_index is not None:
        keep = mask == ignore_index
        out[keep] = image[keep]
    return out


def per_image_iou(pred, target, n_classes: int, ignore_index: int | None = None) -> float:
    """Mean IoU of one image over the classes present in ``pred`` or ``target``.

    Checks the masks, then calls :func:`seglib.metrics.functional.image_miou` (the metrics' confusion-matrix
    scores, so the viewer and the epoch metrics agree; the empty-mask rule is documented there).

    Args:
        pred, target: integer ``H x W`` ids in ``0..n_classes-1`` (or ``ignore_index``).
        n_classes: number of classes.
        ignore_index: pixels where ``target == ignore_index`` are excluded; that class is not averaged.

    Returns:
        IoU in ``[0, 1]``, or ``nan`` when no pixel is valid. Raises ``ValueError`` on bad input.
    """
    pred = check_mask(pred, n_classes, ignore_index, "pred")
    target = check_mask(target, n_classes, ignore_index, "target")
    _same_hw(pred, target, "pred", "target")
    return image_miou(pred, target, n_classes, ignore_index)


def order_worst_first(scores) -> np.ndarray:
    """Indices of 1-D float ``scores`` sorted ascending (stable), NaN scores last; ``intp (N,)``."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {scores.shape}")
    nan = np.isnan(scores)
    order = np.argsort(np.where(nan, np.inf, scores), kind="stable")
    return np.concatenate([order[~nan[order]], order[nan[order]]]).astype(np.intp)


def resolve_colors(colors, class_names) -> np.ndarray:
    """``colors`` checked as ``uint8 (>= C, 3)``, or the default class-table palette for ``C`` names."""
    n = len(class_names)
    if colors is None:
        return palette(n, default_class_table(n, list(class_names)))
    return _check_colors(colors, n)


def sample_panels(image, true_mask, pred_mask=None, *, class_names, colors=None, show: str | None = None,
                  alpha: float = 0.5, ignore_index: int | None = None, title: str | None = None,
                  iou: float | None = None) -> tuple[list, list[int], str]:
    """What :func:`render_sample` draws, without drawing: ``(panels, ids, suptitle)``.

    ``panels``: ``[(uint8 H x W x 3 overlay, panel title), ...]``; ``ids``: the class ids present in the shown
    masks (``ignore_index`` left out), ascending; ``suptitle``: ``title`` and ``IoU x.xxx`` joined by `` | ``
    (``iou`` is computed when not given). Arguments and errors as :func:`render_sample`.
    """
    show = show or ("pred" if pred_mask is not None else "true")
    if show not in ("true", "pred", "both"):
        raise ValueError(f"show must be 'true', 'pred' or 'both', got {show!r}")
    if show != "true" and pred_mask is None:
        raise ValueError(f"show={show!r} needs pred_mask; pass a prediction or show='true'")
    n = len(class_names)
    colors = resolve_colors(colors, class_names)
    image = check_image(image)
    true_mask = check_mask(true_mask, n, ignore_index, "true_mask")
    _same_hw(image, true_mask, "image", "true_mask")
    masks = []
    if show in ("true", "both"):
        masks.append(("ground truth", true_mask))
    if pred_mask is not None:
        pred_mask = check_mask(pred_mask, n, ignore_index, "pred_mask")
        _same_hw(image, pred_mask, "image", "pred_mask")
        if show in ("pred", "both"):
            masks.append(("prediction", pred_mask))
    ids = [i for i in np.unique(np.concatenate([m.ravel() for _, m in masks])).tolist() if i != ignore_index]
    parts = [title] if title else []
    if pred_mask is not None:
        parts.append(f"IoU {per_image_iou(pred_mask, true_mask, n, ignore_index) if iou is None else iou:.3f}")
    return [(overlay(image, m, colors, alpha, ignore_index), t) for t, m in masks], ids, " | ".join(parts)


def render_sample(image, true_mask, pred_mask=None, *, class_names, colors=None, show: str | None = None,
                  alpha: float = 0.5, ignore_index: int | None = None, title: str | None = None) -> Figure:
    """ImageSegmenter-like view of one sample: the image with a mask overlaid and a legend.

    Args:
        image: ``uint8 H x W x 3``; true_mask / pred_mask: integer ``H x W`` ids (pred optional).
        class_names: one name per class id (``n_classes = len(class_names)``).
        colors: ``uint8 (n_classes, 3)``; default from :func:`default_class_table`.
        show: ``"true"``, ``"pred"`` or ``"both"`` (true | pred side by side); default ``"pred"`` when
            ``pred_mask`` is given, else ``"true"``.
        alpha: overlay opacity ``[0, 1]``; ignore_index: ids not drawn nor scored; title: prefix.

    Returns:
        A Figure (fixed layout, :func:`panel_layout`) whose suptitle, centred over the panels, holds ``title``
        and, with a prediction, ``IoU x.xxx``; the legend, at the right below the title, lists only the classes
        present in the shown mask(s). Raises ``ValueError`` on bad input.
    """
    colors = resolve_colors(colors, class_names)
    panels, ids, suptitle = sample_panels(image, true_mask, pred_mask, class_names=class_names, colors=colors,
                                          show=show, alpha=alpha, ignore_index=ignore_index, title=title)
    labels = [f"{i} {class_names[i]}" for i in ids]
    layout = panel_layout(len(panels), *panels[0][0].shape[:2], labels)
    fig = _draw_panels(layout, panels, suptitle)
    if labels:
        handles = [Patch(facecolor=colors[i] / 255.0, edgecolor="black") for i in ids]
        fig.legend(handles, labels, loc="upper left", bbox_to_anchor=layout["legend_xy"], ncol=layout["ncol"],
                   **LEGEND_KW)
    return fig


def _draw_panels(layout: dict, panels: list, suptitle: str) -> Figure:
    fig = layout_figure(layout)
    for ax, (rgb, name) in zip(fig.axes, panels):
        ax.imshow(rgb)
        ax.set_title(name, y=1.0)  # a fixed y skips matplotlib's title placement (~25 ms a draw)
    if suptitle:
        x, ha = title_anchor(layout, suptitle)
        fig.suptitle(suptitle, x=x, y=layout["title_xy"][1], ha=ha, va="top")
    return fig


def prediction_grid(images, true_masks, pred_masks, colors, ignore_index: int | None = None) -> np.ndarray:
    """Stack ``image | colourised true | colourised pred`` rows with 2 px white separators.

    Args:
        images: N ``uint8 H x W x 3`` (list or ``N x H x W x 3``); true_masks / pred_masks: N integer
            ``H x W`` (same H x W for all); colors: ``uint8 (C, 3)``; ignore_index: drawn white.

    Returns:
        ``uint8`` of shape ``(N*H + 2*(N-1), 3*W + 4, 3)``, for ``add_image(..., dataformats="HWC")``.
        Raises ``ValueError`` for empty input, differing counts or sizes, or bad masks.
    """
    colors = _check_colors(colors, 1)
    if not (len(images) == len(true_masks) == len(pred_masks)) or len(images) == 0:
        raise ValueError(
            f"need the same non-zero number of images ({len(images)}), true_masks ({len(true_masks)}) "
            f"and pred_masks ({len(pred_masks)})"
        )
    sep = 2
    h, w = check_image(images[0], "images[0]").shape[:2]
    n = len(images)
    grid = np.full((n * h + sep * (n - 1), 3 * w + 2 * sep, 3), 255, np.uint8)
    for k in range(n):
        img = check_image(images[k], f"images[{k}]")
        if img.shape[:2] != (h, w):
            raise ValueError(f"images[{k}] is {img.shape[:2]} but images[0] is {(h, w)}; resize all to one size")
        tm = check_mask(true_masks[k], len(colors), ignore_index, f"true_masks[{k}]")
        pm = check_mask(pred_masks[k], len(colors), ignore_index, f"pred_masks[{k}]")
        _same_hw(img, tm, f"images[{k}]", f"true_masks[{k}]")
        _same_hw(img, pm, f"images[{k}]", f"pred_masks[{k}]")
        y = k * (h + sep)
        for j, panel in enumerate((img, colorize(tm, colors, ignore_index), colorize(pm, colors, ignore_index))):
            grid[y:y + h, j * (w + sep):j * (w + sep) + w] = panel
    return grid


def _as_depth(depth, name: str) -> np.ndarray:
    depth = np.asarray(depth)
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.floating):
        raise ValueError(f"{name} must be a float H x W (or H x W x 1) array, got {depth.dtype} {depth.shape}")
    return depth


def _cmap_rgb(values: np.ndarray, vmin: float, vmax: float, cmap: str, bad: np.ndarray) -> np.ndarray:
    if vmax <= vmin:
        raise ValueError(f"vmax ({vmax}) must be greater than vmin ({vmin})")
    if cmap not in colormaps:
        raise ValueError(f"unknown colour map {cmap!r}; use a matplotlib name such as 'magma' or 'viridis'")
    x = np.clip((np.nan_to_num(values, nan=vmin) - vmin) / (vmax - vmin), 0.0, 1.0)
    rgb = np.rint(colormaps[cmap](x)[..., :3] * 255).astype(np.uint8)
    rgb[bad] = GREY
    return rgb


def depth_to_rgb(depth, vmin: float = 0.0, vmax: float = 1.0, cmap: str = "magma") -> np.ndarray:
    """Colour-map a float ``H x W`` (or ``H x W x 1``) depth clipped to ``[vmin, vmax]``.

    Returns ``uint8 H x W x 3``; non-finite pixels are grey. ``ValueError`` for non-float input,
    ``vmax <= vmin`` or an unknown ``cmap``.
    """
    depth = _as_depth(depth, "depth")
    return _cmap_rgb(depth, vmin, vmax, cmap, ~np.isfinite(depth))


def error_map(pred, target, valid=None, vmax: float | None = None, cmap: str = "inferno") -> np.ndarray:
    """Absolute error ``|pred - target|`` as a colour map; invalid pixels grey.

    Args:
        pred, target: float ``H x W`` (or ``H x W x 1``) depths; valid: optional bool ``H x W``
            (non-finite pixels are invalid too); vmax: error mapped to the top colour (default: the
            largest valid error); cmap: matplotlib colour map name.

    Returns ``uint8 H x W x 3``. Raises ``ValueError`` for mismatched shapes or non-float depths.
    """
    pred, target, ok = _depth_pair(pred, target, valid, "pred", "target")
    err = np.abs(np.where(ok, pred - target, 0.0))
    top = float(err.max()) if vmax is None and ok.any() else (vmax or 0.0)
    return _cmap_rgb(err, 0.0, max(top, 1e-6), cmap, ~ok)


def _depth_pair(pred, target, valid, pred_name: str, target_name: str):
    """``(pred, target, ok)``: both depths as float ``H x W`` and the bool mask of pixels that are finite in both
    and set in ``valid`` (optional, ``H x W``). Raises ``ValueError`` naming the argument that does not fit."""
    pred, target = _as_depth(pred, pred_name), _as_depth(target, target_name)
    _same_hw(pred, target, pred_name, target_name)
    ok = np.isfinite(pred) & np.isfinite(target)
    if valid is not None:
        valid = np.asarray(valid)
        if valid.shape != ok.shape:
            raise ValueError(f"valid is {valid.shape} but {pred_name} is {ok.shape}; give one flag per pixel")
        ok &= valid.astype(bool)
    return pred, target, ok


def binary_iou(pred, target) -> float:
    """Foreground IoU of two binary ``H x W`` masks (bool or 0/1 ints), in [0, 1].

    :func:`seglib.metrics.functional.mask_iou` (the depth metrics' ``mask_iou``): both masks empty
    scores 1 (an empty prediction of an empty mask is perfect). Raises ``ValueError`` on bad masks.
    """
    p = check_mask(pred, 2, None, "pred_mask").astype(bool)
    t = check_mask(target, 2, None, "true_mask").astype(bool)
    _same_hw(p, t, "pred_mask", "true_mask")
    return float(mask_iou(p[None], t[None], threshold=None)[0])


def depth_rmse(pred, target, valid=None) -> float:
    """Root-mean-square error of float ``H x W`` depths over valid, finite pixels; NaN if none."""
    pred, target, ok = _depth_pair(pred, target, valid, "pred_depth", "true_depth")
    return float(np.sqrt(np.mean((pred[ok] - target[ok]) ** 2))) if ok.any() else float("nan")


def depth_panels(image, true_mask, pred_mask, true_depth, pred_depth, valid=None, *, mask_view: str = "pred",
                 depth_view: str = "pred", alpha: float = 0.5, color=(0, 255, 0), vmin: float = 0.0,
                 vmax: float = 1.0, cmap: str = "magma", title: str | None = None, iou: float | None = None,
                 rmse: float | None = None) -> tuple[list, str]:
    """What :func:`render_depth_sample` draws, without drawing: ``([(uint8 H x W x 3, panel title)] * 2, suptitle)``
    (``iou`` / ``rmse`` are computed when not given). Arguments and errors as :func:`render_depth_sample`."""
    if mask_view not in ("true", "pred"):
        raise ValueError(f"mask_view must be 'true' or 'pred', got {mask_view!r}")
    if depth_view not in ("true", "pred", "error"):
        raise ValueError(f"depth_view must be 'true', 'pred' or 'error', got {depth_view!r}")
    image = check_image(image)
    iou = binary_iou(pred_mask, true_mask) if iou is None else iou
    rmse = depth_rmse(pred_depth, true_depth, valid) if rmse is None else rmse
    mask = check_mask(true_mask if mask_view == "true" else pred_mask, 2, None, f"{mask_view}_mask")
    _same_hw(image, mask, "image", f"{mask_view}_mask")
    colors = np.array([[0, 0, 0], color], np.uint8)
    names = {"true": "ground truth", "pred": "prediction"}
    if depth_view == "error":  # the colour scale's top is the largest error: say which
        p, t, ok = _depth_pair(pred_depth, true_depth, valid, "pred", "target")
        top = float(np.abs(p - t)[ok].max()) if ok.any() else 0.0
        depth_rgb, depth_title = error_map(pred_depth, true_depth, valid, vmax=max(top, 1e-6)), f"|pred - true| depth (0 to {top:.3g})"
    else:
        depth_rgb = depth_to_rgb(true_depth if depth_view == "true" else pred_depth, vmin, vmax, cmap)
        depth_title = f"depth: {names[depth_view]} ({vmin:g} to {vmax:g})"
    _same_hw(image, depth_rgb, "image", "depth")
    panels = [(overlay(image, mask, colors, alpha, ignore_index=0), f"mask: {names[mask_view]}"), (depth_rgb, depth_title)]
    return panels, " | ".join(([title] if title else []) + [f"IoU {iou:.3f}", f"RMSE {rmse:.4f}"])


def render_depth_sample(image, true_mask, pred_mask, true_depth, pred_depth, valid=None, *, mask_view: str = "pred",
                        depth_view: str = "pred", alpha: float = 0.5, color=(0, 255, 0), vmin: float = 0.0,
                        vmax: float = 1.0, cmap: str = "magma", title: str | None = None) -> Figure:
    """Two panels for a depth + binary-mask sample: image with a mask overlaid | depth (or error map).

    Args:
        image: ``uint8 H x W x 3``; true_mask / pred_mask: binary ``H x W`` (bool or 0/1, thresholded);
        true_depth / pred_depth: float ``H x W`` in ``[vmin, vmax]``; valid: optional bool ``H x W``
            (pixels with ground-truth depth); mask_view: ``"true"`` or ``"pred"``; depth_view:
            ``"true"``, ``"pred"`` or ``"error"``; color: RGB of the foreground overlay.

    Returns:
        A Figure (fixed layout, :func:`panel_layout`) with suptitle ``[title | ]IoU x.xxx | RMSE x.xxxx``.
        Raises ``ValueError`` on bad input.
    """
    panels, suptitle = depth_panels(image, true_mask, pred_mask, true_depth, pred_depth, valid, mask_view=mask_view,
                                    depth_view=depth_view, alpha=alpha, color=color, vmin=vmin, vmax=vmax, cmap=cmap,
                                    title=title)
    return _draw_panels(panel_layout(2, *panels[0][0].shape[:2]), panels, suptitle)
