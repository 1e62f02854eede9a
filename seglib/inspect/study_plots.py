"""Results of the hyperparameter study: tables, val-Dice bars and heat maps, overlaid curves, LR-search
plots, prediction grids per config, and an ipywidgets explorer. Figures are
``matplotlib.figure.Figure`` objects (no pyplot state), so everything runs headless."""

from __future__ import annotations

import html
import math

import ipywidgets as W
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image

from ..config import config_label
from .plots import plot_history, plot_loss_comparison
from .widgets import WidgetDisplay, png_output

TABLE_COLUMNS = ("study", "config", "lr", "loss_value", "train_fg_dice", "val_loss", "val_fg_dice", "val_fg_iou",
                 "val_pixel_ap", "val_object_ap50", "best_epoch", "epochs")


def _fmt(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.3g}" if (abs(v) < 1e-3 and v != 0) or abs(v) >= 1e4 else f"{v:.4f}"
    return "" if v is None else str(v)


class Table:
    """Rows of dicts shown as an HTML table in notebooks and as aligned text elsewhere.

    Args:
        rows: list of dicts; columns: keys to show (default: those of :data:`TABLE_COLUMNS` present, in order).
        title: caption.
    """

    def __init__(self, rows: list[dict], columns=None, title: str = ""):
        self.rows, self.title = list(rows), title
        keys = [k for r in self.rows for k in r]
        self.columns = list(columns) if columns else [c for c in TABLE_COLUMNS if c in keys] or list(dict.fromkeys(keys))

    def cells(self) -> list[list[str]]:
        """The formatted cell texts, one list per row."""
        return [[_fmt(r.get(c)) for c in self.columns] for r in self.rows]

    def __str__(self) -> str:
        cells = [self.columns] + self.cells()
        width = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
        lines = ["  ".join(s.rjust(w) for s, w in zip(row, width)) for row in cells]
        return (self.title + "\n" if self.title else "") + "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(s)}</td>" for s in row) + "</tr>" for row in self.cells())
        cap = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __repr__(self) -> str:
        return str(self)


def plot_study_scores(rows: list[dict], title: str = "", metric: str = "val_fg_dice") -> Figure:
    """Val Dice per config: a heat map when rows vary two factors (``optimizer`` x ``scheduler``),
    otherwise horizontal bars, best highlighted.

    Args:
        rows: :meth:`seglib.hparam.HParamRun.table` rows of one study.

    Raises:
        ValueError: no rows, or ``metric`` missing.
    """
    if not rows:
        raise ValueError("no finished trials to plot; run the study first")
    if any(metric not in r for r in rows):
        raise ValueError(f"rows have no {metric!r}; columns: {sorted(rows[0])}")
    if all("optimizer" in r and "scheduler" in r for r in rows):
        opts = list(dict.fromkeys(r["optimizer"] for r in rows))
        scheds = list(dict.fromkeys(r["scheduler"] for r in rows))
        grid = np.full((len(opts), len(scheds)), np.nan)
        for r in rows:
            grid[opts.index(r["optimizer"]), scheds.index(r["scheduler"])] = r[metric]
        fig = Figure(figsize=(1.6 * len(scheds) + 3.0, 0.55 * len(opts) + 1.5), layout="constrained")
        ax = fig.add_subplot()
        im = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0, vmax=max(1e-6, np.nanmax(grid)))
        for i, j in np.ndindex(grid.shape):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center",
                        color="black" if grid[i, j] > 0.6 * np.nanmax(grid) else "white", fontsize=9)
        ax.set_xticks(range(len(scheds)), scheds)
        ax.set_yticks(range(len(opts)), opts)
        ax.set_xlabel("scheduler")
        fig.colorbar(im, ax=ax, label=metric)
    else:
        labels = [r["config"] for r in rows]
        vals = np.array([r[metric] for r in rows], np.float64)
        fig = Figure(figsize=(6.5, 0.4 * len(rows) + 1.2), layout="constrained")
        ax = fig.add_subplot()
        colors = ["tab:orange" if v == np.nanmax(vals) else "tab:blue" for v in vals]
        ax.barh(range(len(rows)), np.nan_to_num(vals), color=colors)
        for i, v in enumerate(vals):
            ax.text(np.nan_to_num(v), i, f" {v:.3f}", va="center", fontsize=8)
        ax.set_yticks(range(len(rows)), labels)
        ax.invert_yaxis()
        ax.set_xlim(0, max(1.0, float(np.nanmax(vals)) * 1.15) if np.isfinite(np.nanmax(vals)) else 1.0)
        ax.set_xlabel(metric)
    ax.set_title(title or f"{metric} per config", fontsize=10)
    return fig


def plot_study_curves(results: list[dict], metrics=("train_loss", "val_loss", "val_fg_dice")) -> Figure:
    """Training curves of every trial of a study on shared axes (legend = config)."""
    return plot_loss_comparison({config_label(r["key"]): r["history"] for r in results}, metrics)


def plot_lr_search(lr_results: dict, loss: str, optimizers) -> Figure:
    """Loss against LR per optimizer: range-test curve (smoothed, log x) with its suggestion (dashed),
    and the decade-search probes (dots; chosen LR as a star).

    Args:
        lr_results: :attr:`seglib.hparam.HParamRun.lr_results`; loss: which loss; optimizers: names.

    Raises:
        ValueError: nothing searched for ``loss``.
    """
    optimizers = [o for o in optimizers if any(f"{loss}|{o}|{p}" in lr_results for p in ("decade", "range_test"))]
    if not optimizers:
        raise ValueError(f"no LR search results for loss {loss!r}; run run.lr_search() first")
    n = len(optimizers)
    cols = min(3, n)
    fig = Figure(figsize=(4.6 * cols, 3.3 * math.ceil(n / cols)), layout="constrained")
    for i, opt in enumerate(optimizers):
        ax = fig.add_subplot(math.ceil(n / cols), cols, i + 1)
        rt = lr_results.get(f"{loss}|{opt}|range_test")
        if rt:
            sm = np.asarray(rt["smoothed"], np.float64)
            ok = np.isfinite(sm)
            ax.plot(np.asarray(rt["lrs"])[ok], sm[ok], label=f"range test ({rt['steps']} steps)")
            ax.axvline(rt["suggestion"], ls="--", color="tab:blue", lw=1, label=f"suggestion {rt['suggestion']:.2g}")
        dec = lr_results.get(f"{loss}|{opt}|decade")
        if dec:
            pts = [(lr, s) for lr, s in dec["probes"] if math.isfinite(s)]
            if pts:
                ax.scatter(*zip(*pts), color="tab:red", s=14, zorder=3, label=f"decade probes ({dec['steps']} steps)")
            best = [s for lr, s in dec["probes"] if lr == dec["lr"]]
            if best and math.isfinite(best[0]):
                ax.scatter([dec["lr"]], best, marker="*", s=120, color="tab:red", zorder=4,
                           label=f"decade+binary {dec['lr']:.2g}")
        ref = [v for v in (rt["smoothed"][:max(1, len(rt["smoothed"]) // 10)] if rt else []) if math.isfinite(v)]
        ref = ref or [s for _, s in (dec["probes"] if dec else []) if math.isfinite(s)]
        if ref:  # diverged probes (1e28 ...) would flatten everything else
            top = 1.5 * max(ref)
            shown = [v for v in (rt["smoothed"] if rt else []) + [s for _, s in (dec["probes"] if dec else [])]
                     if math.isfinite(v) and v <= top]
            lo = min(shown + [top / 1.5])
            ax.set_ylim(max(0.0, lo - 0.1 * (top - lo)), top)
        ax.set_xscale("log")
        ax.set_title(f"{opt} ({loss})")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


MASK_KEY = (((255, 200, 0), "foreground (truth) / hit"), ((230, 40, 40), "false positive"), ((40, 110, 255), "missed"))
"""Colours of :func:`plot_config_predictions` and :func:`plot_samples` masks, with their meaning."""


def plot_config_predictions(preds: dict[str, dict], max_images: int = 4, fig: Figure | None = None) -> Figure:
    """Validation predictions of several configs side by side: one row per image, columns image | truth
    | one column per config (prediction in yellow; errors: red = false positive, blue = missed; a colour key
    below), column titles above. The panels (each scaled to a square cell) are pasted into one picture shown by a
    single axes (axis off), so the figure draws in tens of milliseconds (no layout engine, one axes per panel
    costs ~20 ms).

    Args:
        preds: ``{config name: HParamRun.predictions(...) dict}`` (same images for all): ``"images"`` ``uint8
            H x W x 3`` (or ``H x W`` grey), ``"true"`` / ``"pred"`` ``H x W`` masks (nonzero = foreground).
        fig: a Figure from an earlier call: when its titles and picture size fit, its picture is replaced in place
            and it is returned; otherwise ignored.

    Raises:
        ValueError: no configs.
    """
    if not preds:
        raise ValueError("no predictions to show")
    first = next(iter(preds.values()))
    n = min(max_images, len(first["images"]))
    titles = ["image", "truth", *preds]
    cols = len(titles)
    cell, gap, top, key = 1.7, 0.06, 0.3, 0.32  # inches: panel, gap, title band, colour-key band
    w, h = cols * cell + (cols + 1) * gap, n * (cell + gap) + top + key
    px = min(round(cell * 100), max(np.asarray(first["images"][0]).shape[:2]))  # cell size in the picture [px]
    g = max(1, round(px * gap / cell))
    grid = np.full((n * px + (n - 1) * g, cols * px + (cols - 1) * g, 3), 255, np.uint8)
    for i in range(n):
        img = np.asarray(first["images"][i])
        panels = [np.repeat(img[..., None], 3, -1) if img.ndim == 2 else img,
                  _mask_rgb(first["true"][i], first["true"][i])]
        panels += [_mask_rgb(p["pred"][i], first["true"][i]) for p in preds.values()]
        for j, panel in enumerate(panels):
            y, x = i * (px + g), j * (px + g)
            grid[y:y + px, x:x + px] = Image.fromarray(np.asarray(panel, np.uint8)).resize((px, px), Image.BOX)
    if fig is not None and getattr(fig, "_seglib_preds", None) == (titles, grid.shape):
        fig.axes[0].images[0].set_data(grid)
        return fig
    fig = Figure(figsize=(w, h))
    fig._seglib_preds = (titles, grid.shape)  # what a later call may update in place
    ax = fig.add_axes([gap / w, key / h, (w - 2 * gap) / w, (n * cell + (n - 1) * gap) / h])
    ax.imshow(grid, aspect="auto", interpolation="antialiased")
    ax.set_axis_off()
    for j, title in enumerate(titles):
        fig.text((gap + j * (cell + gap) + cell / 2) / w, 1 - (top - 0.06) / h, title, ha="center", fontsize=9)
    fig.legend(handles=[Patch(facecolor=np.array(c) / 255, edgecolor="black", label=t) for c, t in MASK_KEY],
               loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8, frameon=False, handlelength=1.2,
               columnspacing=1.0, borderaxespad=0.2)
    return fig


def _mask_rgb(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Yellow = predicted and true, red = predicted only, blue = true only, dark = neither."""
    p, t = np.asarray(pred) > 0, np.asarray(true) > 0
    out = np.full(p.shape + (3,), 30, np.uint8)
    for sel, (color, _) in zip((p & t, p & ~t, ~p & t), MASK_KEY):
        out[sel] = color
    return out


class StudyExplorer(WidgetDisplay):
    """Pick a study and a config; see its training curves, scores and validation predictions.

    Works headless like the other seglib viewers: each change renders into ``output.outputs`` and bumps
    ``render_count``; ``current`` is the selected result dict. Each config's pictures are drawn on its first
    visit and kept (the trials do not change once the explorer is built), so going back is instant.

    Args:
        run: a prepared :class:`seglib.hparam.HParamRun` with finished trials; n: validation images shown.

    Raises:
        ValueError: no finished trial.
    """

    def __init__(self, run, n: int = 4):
        self.run, self.n = run, n
        self.by_study: dict[str, list[dict]] = {}
        for r in run.results():
            self.by_study.setdefault(r["study"], []).append(r)
        if not self.by_study:
            raise ValueError("no finished trials yet; run run.run_studies() first")
        self.render_count = 0
        self.current: dict | None = None
        self._shown: dict[tuple[str, int], tuple[dict, dict]] = {}
        self._figs: tuple[Figure | None, Figure | None] = (None, None)
        wide = {"description_width": "initial"}
        self.study = W.Dropdown(options=list(self.by_study), description="study", style=wide)
        self.config = W.Dropdown(options=[], description="config", style=wide, layout={"width": "24em"})
        self.label = W.HTML()
        self.output = W.Output()
        self.study.observe(lambda _c: self._fill(), names="value")
        self.config.observe(lambda _c: self._refresh(), names="value")
        self.widget = W.VBox([W.HBox([self.study, self.config]), self.label, self.output])
        self._fill()

    def _fill(self) -> None:
        res = self.by_study[self.study.value]
        self.config.options = [(config_label(r["key"]), i) for i, r in enumerate(res)]
        self.config.value = 0
        self._refresh()

    def _refresh(self) -> None:
        if self.config.value is None:
            return
        key = (self.study.value, self.config.value)
        r = self.by_study[key[0]][key[1]]
        f = r["final"]
        self.label.value = (f"<b>{html.escape(r['key'])}</b>: val Dice {f['val_fg_dice']:.4f}, val IoU "
                            f"{f['val_fg_iou']:.4f}, val loss {f['val_loss']:.4f}, train Dice {f['train_fg_dice']:.4f}; "
                            f"best epoch {r['best_epoch']} of {r['epochs_completed']} ({r['state']})")
        if key not in self._shown:  # the trials are fixed once the explorer is built: draw each config once
            preds = self.run.predictions(r, self.n)  # the figures are reused: their axes and ticks stay
            self._figs = (plot_history(r["history"], ["loss", "fg_dice", "lr"], self._figs[0]),
                          plot_config_predictions({"prediction": preds}, self.n, self._figs[1]))
            self._shown[key] = tuple(png_output(f, dpi=80) for f in self._figs)
        self.output.outputs = self._shown[key]
        self.current = r
        self.render_count += 1


def plot_samples(images, masks, names=None, max_images: int = 6) -> Figure:
    """Training samples: image over its mask (foreground yellow), up to ``max_images`` columns.

    Args:
        images: ``uint8 H x W x 3`` arrays; masks: ``H x W`` arrays (nonzero = foreground); names: titles.

    Raises:
        ValueError: no images, or counts differ.
    """
    if not len(images) or len(images) != len(masks):
        raise ValueError(f"need the same non-zero number of images ({len(images)}) and masks ({len(masks)})")
    n = min(max_images, len(images))
    fig = Figure(figsize=(1.9 * n, 4.0), layout="constrained")
    for i in range(n):
        for row, img in enumerate((images[i], _mask_rgb(masks[i], masks[i]))):
            ax = fig.add_subplot(2, n, row * n + i + 1)
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0 and names is not None:
                ax.set_title(str(names[i]), fontsize=8)
    return fig
