"""Thin ipywidgets viewers over :mod:`seglib.inspect.render` (all drawing logic lives there).

The viewers build and update without a running kernel: each change re-renders the figure into
``viewer.current_figure``, bumps ``viewer.render_count`` and writes a PNG into the ``Output`` widget's
``outputs``; ``.figure(i)`` / ``.save_png(path, i)`` work headless. In a notebook use ``viewer.show()``.
"""

from __future__ import annotations

import base64
import html
import io
import math

import ipywidgets as W
import numpy as np
from matplotlib.figure import Figure

from .render import (
    binary_iou,
    check_image,
    check_mask,
    depth_rmse,
    order_worst_first,
    per_image_iou,
    render_depth_sample,
    render_sample,
    resolve_colors,
)


def _count(items: dict) -> int:
    lens = {k: len(v) for k, v in items.items() if v is not None}
    n = next(iter(lens.values()))
    if n == 0 or len(set(lens.values())) != 1:
        raise ValueError(f"need the same non-zero number of samples in each input, got {lens}")
    return n


def _fmt(x: float, digits: int = 3) -> str:
    return "n/a" if math.isnan(x) else f"{x:.{digits}f}"


def png_output(fig: Figure, title: str = "", dpi: int = 90) -> dict:
    """``fig`` as one ``display_data`` output for an ``Output`` widget's ``outputs`` (works without a kernel).

    Returns:
        ``{"output_type": "display_data", "metadata": {}, "data": {"image/png": base64 str,
        "text/plain": "<Figure: title>"}}`` (``"<Figure>"`` without a title).
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return {"output_type": "display_data", "metadata": {},
            "data": {"image/png": base64.b64encode(buf.getvalue()).decode("ascii"),
                     "text/plain": f"<Figure: {title}>" if title else "<Figure>"}}


class WidgetDisplay:
    """Notebook display of an object whose ipywidgets container is ``self.widget``."""

    widget: W.Widget

    def show(self) -> None:
        """Display the widget in a notebook (IPython ``display``)."""
        from IPython.display import display

        display(self.widget)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


class _Viewer(WidgetDisplay):
    """Shared controls: sample slider, opacity, worst-first ordering, label and output."""

    def __init__(self, n: int, names, scores: np.ndarray, alpha: float, toggles: list) -> None:
        if names is not None and len(names) != n:
            raise ValueError(f"names has {len(names)} entries but there are {n} samples")
        self.n = n
        self.names = [str(s) for s in names] if names is not None else [f"sample {i}" for i in range(n)]
        self.scores = np.asarray(scores, np.float64)
        self._order = np.arange(n)
        self._worst_order = order_worst_first(self.scores)
        self.render_count = 0
        self.current_figure: Figure | None = None
        self.slider = W.IntSlider(value=0, min=0, max=n - 1, description="sample", continuous_update=False)
        self.opacity = W.FloatSlider(value=alpha, min=0.0, max=1.0, step=0.05, description="opacity",
                                     continuous_update=False)
        self.worst_first = W.Checkbox(value=False, description="worst first")
        self.label = W.HTML()
        self.output = W.Output()
        self._busy = False
        for w in (self.slider, self.opacity, *toggles):
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

    def _render(self, idx: int) -> Figure:
        raise NotImplementedError

    def _describe(self, idx: int) -> str:
        raise NotImplementedError

    def figure(self, i: int = 0) -> Figure:
        """Figure for position ``i`` of the current order with the current toggles and opacity."""
        return self._render(self._index(i))

    def save_png(self, path, i: int = 0, dpi: int = 100):
        """Write :meth:`figure` ``(i)`` to ``path`` as PNG and return ``path``."""
        self.figure(i).savefig(path, format="png", dpi=dpi)
        return path

    def _refresh(self) -> None:
        if self._busy:
            return
        pos = self.slider.value
        idx = self._index(pos)
        fig = self._render(idx)
        self.output.outputs = (png_output(fig, fig.get_suptitle() or self.names[idx]),)
        self.label.value = (f"<b>{html.escape(self.names[idx])}</b> &nbsp; #{idx} "
                            f"({pos + 1}/{self.n}) &nbsp; {self._describe(idx)}")
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
    ``current_figure``, ``render_count``. Raises ``ValueError`` on mismatched counts, shapes or ids.
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
        opts = ["true", "pred", "both"] if pred_masks is not None else ["true"]
        self.view = W.ToggleButtons(options=opts, value=opts[min(1, len(opts) - 1)], description="mask")
        super().__init__(n, names, self.ious, alpha, [self.view])

    def _render(self, idx: int) -> Figure:
        pred = None if self.pred_masks is None else self.pred_masks[idx]
        return render_sample(self.images[idx], self.true_masks[idx], pred, class_names=self.class_names,
                             colors=self.colors, show=self.view.value, alpha=self.opacity.value,
                             ignore_index=self.ignore_index, title=self.names[idx])

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
    valid pixels), ``order`` (worst IoU first when ticked), ``current_figure``, ``render_count``.
    Raises ``ValueError`` on mismatched counts, shapes or dtypes.
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
        self.mask_view = W.ToggleButtons(options=["true", "pred"], value="pred", description="mask")
        self.depth_view = W.ToggleButtons(options=["true", "pred", "error"], value="pred", description="depth")
        super().__init__(n, names, self.ious, alpha, [self.mask_view, self.depth_view])

    def _render(self, idx: int) -> Figure:
        valid = None if self.valid_masks is None else self.valid_masks[idx]
        return render_depth_sample(
            self.images[idx], self.true_masks[idx], self.pred_masks[idx], self.true_depths[idx],
            self.pred_depths[idx], valid, mask_view=self.mask_view.value, depth_view=self.depth_view.value,
            alpha=self.opacity.value, color=self.color, vmin=self.vmin, vmax=self.vmax, cmap=self.cmap,
            title=self.names[idx])

    def _describe(self, idx: int) -> str:
        return f"IoU {_fmt(self.ious[idx])} &nbsp; RMSE {_fmt(self.rmses[idx], 4)}"
