"""Fixed-geometry sample figures and the viewers' live pictures, redrawn in tens of milliseconds.

:func:`panel_layout` computes once, without a layout engine, where the panels, the suptitle and the legend of a
sample figure go; :func:`layout_figure` makes the empty Figure. The notebook viewers keep one :class:`LiveFigure`
per layout and update it in place: matplotlib draws only the texts, the panels and the legend
(:class:`LegendTiles`, each class's entry drawn once and cached as pixels) are pasted into the canvas with numpy,
and Pillow writes the PNG. Sizes are in inches or points (1/72 in) unless named ``px``.
"""

from __future__ import annotations

import functools
import io
import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import Rectangle
from matplotlib.transforms import IdentityTransform
from PIL import Image

DPI = 90
"""Resolution of the viewers' live pictures [dots per inch]: 8 pt text is 10 px high."""
LEGEND_FS = 9.0
"""Legend font size [pt] of the sample figures."""
LEGEND_KW = {"fontsize": LEGEND_FS, "borderpad": 0.4, "handlelength": 1.5, "handletextpad": 0.5, "columnspacing": 1.0,
             "labelspacing": 0.45, "borderaxespad": 0.0}
"""``Figure.legend`` keywords of the sample figures (the geometry of :func:`panel_layout` assumes them)."""
ROW_PT = 1.7 * LEGEND_FS
"""Height of one legend row (text + label spacing) [pt], an upper bound of matplotlib's."""
_TOP_IN, _PTITLE_IN, _PAD_IN, _GAP_IN, _PANEL_IN, _MAX_PANEL_H_IN = 0.36, 0.34, 0.12, 0.2, 4.0, 5.0


@functools.lru_cache(maxsize=4096)
def text_width_pt(text: str, size: float = LEGEND_FS) -> float:
    """Width of ``text`` in matplotlib's default font at ``size`` pt, in points (cached per string)."""
    return RendererAgg(1, 1, 72).get_text_width_height_descent(text, FontProperties(size=size), False)[0]


def panel_layout(n_panels: int, h: int, w: int, labels=(), max_cols: int = 3) -> dict:
    """Fixed geometry of ``n_panels`` ``h x w`` images side by side, a title band above them and, for legend
    ``labels`` (strings), a legend of up to ``max_cols`` columns at the right whose top is below the title band.

    Returns a dict: ``figsize`` (inches), ``rects`` (one ``[left, bottom, width, height]`` figure fraction per
    panel), ``title_xy`` (suptitle anchor, centred over the panels), ``legend_xy`` (legend's top-left corner, figure
    fraction), ``ncol`` (legend columns; 0 without labels) and ``col_pt`` (width of a column's entry [pt]).
    """
    pw, ph = _PANEL_IN, _PANEL_IN * h / w
    if ph > _MAX_PANEL_H_IN:
        pw, ph = _MAX_PANEL_H_IN * w / h, _MAX_PANEL_H_IN
    fs, pad_pt = LEGEND_FS, 2 * LEGEND_KW["borderpad"] * LEGEND_FS
    k, ncol, col_pt, leg_w, leg_h = len(labels), 0, 0.0, 0.0, 0.0
    if k:
        max_rows = max(4, int(((_PTITLE_IN + ph) * 72 - pad_pt) // ROW_PT))
        ncol = min(max_cols, -(-k // max_rows))
        col_pt = (LEGEND_KW["handlelength"] + LEGEND_KW["handletextpad"]) * fs + max(text_width_pt(s) for s in labels)
        leg_w = (pad_pt + ncol * col_pt + (ncol - 1) * LEGEND_KW["columnspacing"] * fs + 4) / 72
        leg_h = (-(-k // ncol) * ROW_PT + pad_pt) / 72
    panels_w = n_panels * pw + (n_panels - 1) * _GAP_IN
    width = _PAD_IN + panels_w + (_GAP_IN + leg_w if k else 0.0) + _PAD_IN
    height = _TOP_IN + max(_PTITLE_IN + ph, leg_h) + _PAD_IN
    bottom = height - _TOP_IN - _PTITLE_IN - ph
    rects = [[(_PAD_IN + i * (pw + _GAP_IN)) / width, bottom / height, pw / width, ph / height] for i in range(n_panels)]
    return {"figsize": (width, height), "rects": rects, "title_xy": ((_PAD_IN + panels_w / 2) / width, 1 - 0.06 / height),
            "legend_xy": ((_PAD_IN + panels_w + _GAP_IN) / width, 1 - _TOP_IN / height), "ncol": ncol,
            "col_pt": col_pt}


def title_anchor(layout: dict, text: str, size: float = 12.0) -> tuple[float, str]:
    """``(x, ha)`` of a suptitle of ``size`` pt: centred over the panels, or left-aligned at the margin when it
    would cross the figure's left edge there (a long name over a narrow panel)."""
    x = layout["title_xy"][0]
    if text_width_pt(text, size) / 72 / 2 < x * layout["figsize"][0] - _PAD_IN / 2:
        return x, "center"
    return _PAD_IN / 2 / layout["figsize"][0], "left"


def layout_figure(layout: dict, dpi: float = 100) -> Figure:
    """An empty Figure of :func:`panel_layout` geometry: one axes (axis off) per panel rect, no layout engine."""
    fig = Figure(figsize=layout["figsize"], dpi=dpi)
    for rect in layout["rects"]:
        fig.add_axes(rect).set_axis_off()
    return fig


class LegendTiles:
    """The viewers' legend as pixels: each class's entry (swatch + label) is drawn once by matplotlib at
    :data:`DPI` and cached, and a legend is stacked from the cached entries with numpy (matplotlib's text
    drawing costs about 5 ms a label, i.e. most of a redraw with 20 classes).

    Args: colors ``uint8 (C, 3)``; labels: ``C`` entry texts; col_pt: width of one entry [pt]
    (:func:`panel_layout`'s ``col_pt``).
    """

    def __init__(self, colors: np.ndarray, labels: list[str], col_pt: float) -> None:
        self.colors, self.labels = colors, labels
        px = DPI / 72
        self.row, self.col = round(ROW_PT * px), math.ceil(col_pt * px)
        self.pad, self.gap = round(0.4 * LEGEND_FS * px), round(LEGEND_FS * px)
        self._tiles: dict[int, np.ndarray] = {}

    def tile(self, i: int) -> np.ndarray:
        """Entry ``i`` as ``uint8 (row, col, 3)`` pixels (drawn on first use, then cached)."""
        if i in self._tiles:
            return self._tiles[i]
        fig = Figure(figsize=(self.col / DPI, self.row / DPI), dpi=DPI, facecolor="white")
        fs = LEGEND_FS * DPI / 72  # the font size [px]
        fig.add_artist(Rectangle((1, self.row / 2 - 0.35 * fs), 1.5 * fs, 0.7 * fs, transform=IdentityTransform(),
                                 facecolor=self.colors[i] / 255.0, edgecolor="black", lw=0.8))
        fig.text(2.0 * fs / self.col, 0.5, self.labels[i], fontsize=LEGEND_FS, va="center_baseline")
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        self._tiles[i] = np.asarray(canvas.buffer_rgba())[..., :3].copy()
        return self._tiles[i]

    def image(self, ids, ncol: int) -> np.ndarray:
        """The legend of class ids ``ids`` (non-empty) in up to ``ncol`` columns (filled top to bottom, rows
        balanced, as matplotlib's) inside a light grey frame: ``uint8 (height, width, 3)``."""
        ncol = max(1, min(ncol, len(ids)))
        rows = -(-len(ids) // ncol)
        h, w = 2 * self.pad + rows * self.row, 2 * self.pad + ncol * self.col + (ncol - 1) * self.gap
        out = np.full((h, w, 3), 255, np.uint8)
        for k, i in enumerate(ids):
            y, x = self.pad + (k % rows) * self.row, self.pad + (k // rows) * (self.col + self.gap)
            out[y:y + self.row, x:x + self.col] = self.tile(i)
        out[[0, -1]] = out[:, [0, -1]] = 204
        return out


class LiveFigure:
    """A reusable Figure of one :func:`panel_layout`, updated in place by the viewers.

    :meth:`pixels` lets matplotlib draw only the texts (no layout engine, no new artists) and pastes the panels
    (scaled to their axes with Pillow: nearest when enlarging, box filter when shrinking) and the legend pixels
    into the Agg buffer itself; matplotlib's image pipeline costs about 20 ms a picture. The Figure keeps the
    images and legend as artists, so saving it at its dpi (:data:`DPI`) shows the same picture.

    Args: layout: :func:`panel_layout` dict; h, w: image size of every panel [px].
    """

    def __init__(self, layout: dict, h: int, w: int) -> None:
        self.layout = layout
        self.fig = layout_figure(layout, DPI)
        self.canvas = FigureCanvasAgg(self.fig)
        blank = np.zeros((h, w, 3), np.uint8)
        self.images = [ax.imshow(blank) for ax in self.fig.axes]
        self.titles = [ax.set_title("", y=1.0) for ax in self.fig.axes]  # fixed y: no title placement
        self.suptitle = self.fig.suptitle(" ", x=layout["title_xy"][0], y=layout["title_xy"][1], va="top")
        self.legend = self.fig.figimage(np.full((1, 1, 3), 255, np.uint8), origin="upper")
        fw, fh = self.canvas.get_width_height()
        self.boxes = [(fh - round((b + bh) * fh), fh - round(b * fh), round(x * fw), round((x + bw) * fw))
                      for x, b, bw, bh in layout["rects"]]  # (top, bottom, left, right) pixel rows / columns

    def update(self, panels, suptitle: str, legend: np.ndarray | None = None) -> Figure:
        """Show ``panels`` (``[(uint8 h x w x 3, title)]``, one per axes), ``suptitle`` and a legend picture
        (``uint8 (height, width, 3)``, top-left at the layout's legend corner; None hides it). Returns the
        Figure."""
        for im, t, (rgb, name) in zip(self.images, self.titles, panels):
            im.set_data(rgb)
            t.set_text(name)
        x, ha = title_anchor(self.layout, suptitle)
        self.suptitle.set(text=suptitle, x=x, ha=ha)
        self.legend.set_visible(legend is not None)
        if legend is not None:
            fw, fh = self.canvas.get_width_height()
            x, y = self.layout["legend_xy"]
            self.legend.set_data(legend)
            self.legend.ox, self.legend.oy = round(x * fw), round(y * fh) - legend.shape[0]
        return self.fig

    def pixels(self) -> np.ndarray:
        """The picture as ``uint8 (height, width, 3)`` at :data:`DPI` (a view of the canvas, valid until the next
        draw)."""
        shown = [a for a in (*self.images, self.legend) if a.get_visible()]
        for a in shown:
            a.set_visible(False)
        try:
            self.canvas.draw()
        finally:
            for a in shown:
                a.set_visible(True)
        out = np.asarray(self.canvas.buffer_rgba())[..., :3]  # the renderer's buffer, redrawn by every draw
        for im, (top, bottom, left, right) in zip(self.images, self.boxes):
            rgb = np.asarray(im.get_array())
            size = (right - left, bottom - top)
            up = size[0] >= rgb.shape[1]
            out[top:bottom, left:right] = Image.fromarray(rgb).resize(size, Image.NEAREST if up else Image.BOX)
        if self.legend.get_visible():
            leg = self.legend.get_array()
            top, left = out.shape[0] - self.legend.oy - leg.shape[0], self.legend.ox
            region = out[top:top + leg.shape[0], left:left + leg.shape[1]]
            region[...] = leg[:region.shape[0], :region.shape[1]]
        return out

    def png(self) -> bytes:
        """:meth:`pixels` as PNG bytes (Pillow, zlib level 1: several times faster than level 6, a few per cent
        larger)."""
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(self.pixels())).save(buf, format="PNG", compress_level=1)
        return buf.getvalue()
