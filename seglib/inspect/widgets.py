"""Thin ipywidgets viewers over :mod:`seglib.inspect.render` (what to draw) and :mod:`seglib.inspect.live`
(drawing it fast).

The viewers build and update without a running kernel: each change updates ``viewer.current_figure`` (one
reused :class:`~seglib.inspect.live.LiveFigure` per panel layout, redrawn in tens of milliseconds), bumps
``viewer.render_count`` and writes a PNG into the ``Output`` widget's ``outputs``; ``.figure(i)`` (a new Figure)
/ ``.save_png(path, i)`` work headless. In a notebook use ``viewer.show()``. ``benchmarks/viewer.py`` times the
actions.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections import OrderedDict

import ipywidgets as W
import numpy as np
from matplotlib.figure import Figure

from .live import DPI, LegendTiles, LiveFigure, panel_layout
from .render import (
    binary_iou,
    check_image,
    check_mask,
    depth_panels,
    depth_rmse,
    order_worst_first,
    per_image_iou,
    render_depth_sample,
    render_sample,
    resolve_colors,
    sample_panels,
)


def _count(items: dict) -> int:
    lens = {k: len(v) for k, v in items.items() if v is not None}
    n = next(iter(lens.values()))
    if n == 0 or len(set(lens.values())) != 1:
        raise ValueError(f"need the same non-zero number of samples in each input, got {lens}")
    return n


def _fmt(x: float, digits: int = 3) -> str:
    return "n/a" if math.isnan(x) else f"{x:.{digits}f}"


def png_output(fig: Figure, title: str = "", dpi: int = DPI, compress_level: int = 1) -> dict:
    """``fig`` as one ``display_data`` output for an ``Output`` widget's ``outputs`` (works without a kernel).

    ``compress_level`` is zlib's (0..9); 1 encodes several times faster than matplotlib's default 6 for a few
    per cent more bytes.

    Returns:
        ``{"output_type": "display_data", "metadata": {}, "data": {"image/png": base64 str,
        "text/plain": "<Figure: title>"}}`` (``"<Figure>"`` without a title).
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, pil_kwargs={"compress_level": compress_level})
    return _display_png(buf.getvalue(), title)


def _display_png(png: bytes, title: str) -> dict:
    return {"output_type": "display_data", "metadata": {},
            "data": {"image/png": base64.b64encode(png).decode("ascii"),
                     "text/plain": f"<Figure: {title}>" if title else "<Figure>"}}


class WidgetDisplay:
    """Notebook display of an object whose ipywidgets container is ``self.widget`` and whose pictures are in
    ``self.output`` (an ``Output`` widget)."""

    widget: W.Widget
    output: W.Output

    def show(self) -> None:
        """Display the widget in a notebook (IPython ``display`` of :meth:`_repr_mimebundle_`)."""
        from IPython.display import display

        display(self)

    def _repr_mimebundle_(self, **kwargs):
        """The widget's view, plus the first picture shown as ``image/png``: a live notebook (JupyterLab, Colab)
        renders the widget; a saved notebook without widget state (GitHub, nbviewer, papermill's output) shows
        the picture instead of nothing."""
        bundle = self.widget._repr_mimebundle_(**kwargs)
        pictures = [o["data"]["image/png"] for o in self.output.outputs if "image/png" in o.get("data", {})]
        if pictures and isinstance(bundle, dict):
            bundle["image/png"] = pictures[0]
        return bundle


def _toggles(options: list[str], value: str, label: str, tooltips: list[str]) -> tuple[W.ToggleButtons, W.HBox]:
    """ToggleButtons sized to their texts and a label in front (ipywidgets 8 puts a ToggleButtons' own
    ``description`` on a line of its own above the buttons)."""
    toggle = W.ToggleButtons(options=options, value=value, tooltips=tooltips[:len(options)],
                             style={"button_width": "auto"})
    return toggle, W.HBox([W.Label(label), toggle], layout={"margin": "0 1.5em 0 0"})


class _Viewer(WidgetDisplay):
    """Shared controls (sample slider, opacity, worst-first ordering, label, output) and the live picture: one
    :class:`LiveFigure` per panel layout, updated in place on every action (at most :attr:`MAX_FIGURES` kept).

    Subclasses define ``_render(idx)`` (a new Figure), ``_content(idx)`` (``(panels, suptitle, legend pixels or
    None)`` for the live figure), ``_layout(n_panels, h, w)`` (:func:`~seglib.inspect.live.panel_layout` dict)
    and ``_describe(idx)``."""

    MAX_FIGURES = 6

    def __init__(self, n: int, names, scores: np.ndarray, alpha: float, toggles: list) -> None:
        if names is not None and len(names) != n:
            raise ValueError(f"names has {len(names)} entries but there are {n} samples")
        self.n = n
        self.names = [str(s) for s in names] if names is not None else [f"sample {i}" for i in range(n)]
        self.scores = np.asarray(scores, np.float64)
        self._order = np.arange(n)
        self._worst_order = order_worst_first(self.scores)
        self._live: OrderedDict[tuple, LiveFigure] = OrderedDict()
        self.render_count = 0
        self.current_figure: Figure | None = None
        wide = {"description_width": "initial"}
        self.slider = W.IntSlider(value=0, min=0, max=n - 1, description="sample", continuous_update=False,
                                  style=wide, layout={"width": "24em"})
        self.opacity = W.FloatSlider(value=alpha, min=0.0, max=1.0, step=0.05, description="opacity",
                                     continuous_update=False, style=wide, layout={"width": "20em"})
        self.worst_first = W.Checkbox(value=False, description="worst first (lowest IoU)", style=wide, indent=False)
        self.label = W.HTML()
        self.output = W.Output()
        self._busy = False
        for w in (self.slider, self.opacity, *(t.children[1] for t in toggles)):
            w.observe(lambda _change: self._refresh(), names="value")
        self.worst_first.observe(self._on_order, names="value")
        self.widget = W.VBox([W.HBox([self.slider, self.worst_first]), W.HBox([*toggles, self.opacity]),
                              self.label, self.output])
        self._refresh()

    @property
    def order(self) -> np.ndarray:
        """Sample indices in display order (``intp (N,)``): identity, or ascending score, NaN last."""
        return self._order.copy()

    def _on_order(self, change) -> None:
        self._order = self._worst_order.copy() if change["new"] else np.arange(self.n)
        self._busy = True
        self.slider.value = 0
        self._busy = False
        self._refresh()

    def _index(self, i: int) -> int:
        if not -self.n <= i < self.n:
            raise ValueError(f"position {i} is out of range for {self.n} samples; use 0..{self.n - 1}")
        return int(self._order[i])

    def figure(self, i: int = 0) -> Figure:
        """A new Figure for position ``i`` of the current order with the current toggles and opacity."""
        return self._render(self._index(i))

    def save_png(self, path, i: int = 0, dpi: int = 100):
        """Write :meth:`figure` ``(i)`` to ``path`` as PNG and return ``path``."""
        self.figure(i).savefig(path, format="png", dpi=dpi)
        return path

    def _live_figure(self, n_panels: int, h: int, w: int) -> LiveFigure:
        key = (n_panels, h, w)
        if key not in self._live:
            self._live[key] = LiveFigure(self._layout(n_panels, h, w), h, w)
            if len(self._live) > self.MAX_FIGURES:
                self._live.popitem(last=False)
        self._live.move_to_end(key)
        return self._live[key]

    def _refresh(self) -> None:
        if self._busy:
            return
        pos = self.slider.value
        idx = self._index(pos)
        panels, suptitle, legend = self._content(idx)
        live = self._live_figure(len(panels), *panels[0][0].shape[:2])
        fig = live.update(panels, suptitle, legend)
        self.output.outputs = (_display_png(live.png(), suptitle or self.names[idx]),)
        order = ", worst first" if self.worst_first.value else ""
        self.label.value = (f"<b>{html.escape(self.names[idx])}</b> &nbsp; {pos + 1} of {self.n}{order} "
                            f"(sample #{idx}) &nbsp; {self._describe(idx)}")
        self.current_figure = fig
        self.render_count += 1


class SegmentationViewer(_Viewer):
    """Browse N segmentation samples: ground truth / prediction overlays, opacity, worst-first order.

    Args:
        images: N ``uint8 H x W x 3`` (sizes may differ between samples).
        true_masks, pred_masks: N integer ``H x W`` class ids (``pred_masks=None``: ground truth only).
        class_names: one name per class id; colors: ``uint8 (C, 3)`` (default from the class table).
        ignore_index: id neither drawn nor scored; names: N sample names; alpha: initial opacity.

    Attributes: ``widget`` (container), ``ious`` (per-image IoU, computed once), ``order``,
    ``current_figure`` (the live Figure, updated in place by later actions), ``render_count``.
    Raises ``ValueError`` on mismatched counts, shapes or ids.
    """

    def __init__(self, images, true_masks, pred_masks=None, *, class_names, colors=None,
                 ignore_index: int | None = None, names=None, alpha: float = 0.5) -> None:
        n = _count({"images": images, "true_masks": true_masks, "pred_masks": pred_masks})
        self.images, self.true_masks, self.pred_masks = images, true_masks, pred_masks
        self.class_names = list(class_names)
        self.colors = resolve_colors(colors, self.class_names)
        self.ignore_index = ignore_index
        k = len(self.class_names)
        for i in range(n):
            img = check_image(images[i], f"images[{i}]")
            m = check_mask(true_masks[i], k, ignore_index, f"true_masks[{i}]")
            if m.shape != img.shape[:2]:
                raise ValueError(f"true_masks[{i}] is {m.shape} but images[{i}] is {img.shape[:2]}")
        if pred_masks is None:
            self.ious = np.full(n, np.nan)
        else:
            self.ious = np.array([per_image_iou(pred_masks[i], true_masks[i], k, ignore_index) for i in range(n)])
        labels = [f"{i} {c}" for i, c in enumerate(self.class_names)]
        self._legend_labels = [s for i, s in enumerate(labels) if i != ignore_index]
        self._tiles = LegendTiles(self.colors, labels, panel_layout(1, 1, 1, self._legend_labels)["col_pt"])
        opts = ["true", "pred", "both"] if pred_masks is not None else ["true"]
        self.view, row = _toggles(opts, opts[min(1, len(opts) - 1)], "mask",
                                  ["ground truth", "prediction", "ground truth | prediction"])
        super().__init__(n, names, self.ious, alpha, [row])

    def _kwargs(self, idx: int) -> dict:
        return dict(image=self.images[idx], true_mask=self.true_masks[idx],
                    pred_mask=None if self.pred_masks is None else self.pred_masks[idx],
                    class_names=self.class_names, colors=self.colors, show=self.view.value, alpha=self.opacity.value,
                    ignore_index=self.ignore_index, title=self.names[idx])

    def _render(self, idx: int) -> Figure:
        return render_sample(**self._kwargs(idx))

    def _layout(self, n_panels: int, h: int, w: int) -> dict:
        return panel_layout(n_panels, h, w, self._legend_labels)  # every class: one width for all samples

    def _content(self, idx: int) -> tuple[list, str, np.ndarray | None]:
        panels, ids, suptitle = sample_panels(**self._kwargs(idx), iou=self.ious[idx])
        live = self._live_figure(len(panels), *panels[0][0].shape[:2])
        return panels, suptitle, self._tiles.image(ids, live.layout["ncol"]) if ids else None

    def _describe(self, idx: int) -> str:
        return f"IoU {_fmt(self.ious[idx])}"


class DepthSegViewer(_Viewer):
    """Browse N depth + binary-mask samples: mask true/pred, depth true/pred/error, IoU and RMSE.

    Args:
        images: N ``uint8 H x W x 3``; true_masks, pred_masks: N binary ``H x W`` (bool or 0/1; the
            caller thresholds predictions, e.g. at 0.5); true_depths, pred_depths: N float ``H x W`` in
            ``[vmin, vmax]`` (default [0, 1]); valid_masks: optional N bool ``H x W`` (pixels with depth);
            names: N sample names; alpha: initial opacity; color: RGB foreground colour; cmap: depth map.

    Attributes: ``widget``, ``ious`` (foreground IoU; 1 when both masks are empty), ``rmses`` (depth RMSE over
    valid pixels), ``order`` (worst IoU first when ticked), ``current_figure`` (the live Figure, updated in
    place by later actions), ``render_count``. Raises ``ValueError`` on mismatched counts, shapes or dtypes.
    """

    def __init__(self, images, true_masks, pred_masks, true_depths, pred_depths, valid_masks=None, *,
                 names=None, alpha: float = 0.5, color=(0, 255, 0), vmin: float = 0.0, vmax: float = 1.0,
                 cmap: str = "magma") -> None:
        n = _count({"images": images, "true_masks": true_masks, "pred_masks": pred_masks,
                    "true_depths": true_depths, "pred_depths": pred_depths, "valid_masks": valid_masks})
        self.images, self.true_masks, self.pred_masks = images, true_masks, pred_masks
        self.true_depths, self.pred_depths, self.valid_masks = true_depths, pred_depths, valid_masks
        self.color, self.vmin, self.vmax, self.cmap = color, vmin, vmax, cmap
        valid = [None] * n if valid_masks is None else valid_masks
        self.ious = np.array([binary_iou(pred_masks[i], true_masks[i]) for i in range(n)])
        self.rmses = np.array([depth_rmse(pred_depths[i], true_depths[i], valid[i]) for i in range(n)])
        self.mask_view, mask_row = _toggles(["true", "pred"], "pred", "mask", ["ground truth", "prediction"])
        self.depth_view, depth_row = _toggles(["true", "pred", "error"], "pred", "depth",
                                              ["ground truth", "prediction", "|prediction - ground truth|"])
        super().__init__(n, names, self.ious, alpha, [mask_row, depth_row])

    def _args(self, idx: int) -> tuple[tuple, dict]:
        valid = None if self.valid_masks is None else self.valid_masks[idx]
        return ((self.images[idx], self.true_masks[idx], self.pred_masks[idx], self.true_depths[idx],
                 self.pred_depths[idx], valid),
                dict(mask_view=self.mask_view.value, depth_view=self.depth_view.value, alpha=self.opacity.value,
                     color=self.color, vmin=self.vmin, vmax=self.vmax, cmap=self.cmap, title=self.names[idx]))

    def _render(self, idx: int) -> Figure:
        args, kw = self._args(idx)
        return render_depth_sample(*args, **kw)

    def _layout(self, n_panels: int, h: int, w: int) -> dict:
        return panel_layout(n_panels, h, w)

    def _content(self, idx: int) -> tuple[list, str, np.ndarray | None]:
        args, kw = self._args(idx)
        return (*depth_panels(*args, **kw, iou=self.ious[idx], rmse=self.rmses[idx]), None)

    def _describe(self, idx: int) -> str:
        return f"IoU {_fmt(self.ious[idx])} &nbsp; RMSE {_fmt(self.rmses[idx], 4)}"
