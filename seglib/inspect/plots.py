"""Training-history and evaluation plots; every function returns a ``matplotlib.figure.Figure``.

No pyplot state is used, so the functions are safe under the Agg backend and in worker threads; in a
notebook, show a figure by leaving it as the cell's last expression or ``IPython.display.display(fig)``.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter, MaxNLocator

from seglib.data.classes import default_class_table, palette

_NORMALIZE = ("true", "pred", "all", None)


def _is_scalar(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _grid(n: int, panel_w: float = 4.5, panel_h: float = 3.2) -> tuple[Figure, list]:
    """A Figure of ``n`` axes, up to 3 a row, each ``panel_w x panel_h`` inches including its margins. The margins
    are fixed in inches (room for tick labels, title and x label), not found by a layout engine: constrained layout
    measures every text and costs 0.5-1 s a figure."""
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    w, h = panel_w * ncols, panel_h * nrows
    left, right, bottom, top, wgap, hgap = 0.7, 0.15, 0.5, 0.3, 0.85, 0.8  # inches
    fig = Figure(figsize=(w, h))
    grid = fig.add_gridspec(nrows, ncols, left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h,
                            wspace=wgap / ((w - left - right - (ncols - 1) * wgap) / ncols),
                            hspace=hgap / ((h - bottom - top - (nrows - 1) * hgap) / nrows))
    axes = [fig.add_subplot(grid[i // ncols, i % ncols]) for i in range(n)]
    for ax in axes:  # few tick labels (each costs a few ms to draw); epochs are whole numbers
        ax.xaxis.set_major_locator(MaxNLocator(6, integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(5))
    return fig, axes


class _PlainLog(LogFormatter):
    """matplotlib's choice of log-axis ticks to label, written as plain ``%.3g`` text (no mathtext)."""

    def _num_to_string(self, x, vmin, vmax):
        return f"{x:.3g}"


def _finish(ax, title: str) -> None:
    ax.set_title(title, y=1.0)  # a fixed y skips matplotlib's title placement
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
    if len(ax.lines) > 1:  # one curve: the title names it (a legend costs ~30 ms a draw)
        ax.legend(fontsize=8)


def _series(history: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.array([rec.get("epoch", i + 1) for i, rec in enumerate(history)], np.float64)
    y = np.array([rec[key] if _is_scalar(rec.get(key)) else np.nan for rec in history], np.float64)
    return x, y


def _check_history(history, name: str = "history") -> None:
    if not isinstance(history, (list, tuple)) or not history:
        raise ValueError(f"{name} must be a non-empty list of per-epoch dicts, got {history!r:.80}; "
                         "train at least one epoch or load the run's history.json")
    for i, rec in enumerate(history):
        if not isinstance(rec, dict):
            raise ValueError(f"{name}[{i}] must be a dict of metric values, got {type(rec).__name__}")


def history_panels(history: list[dict], metrics=None) -> list[tuple[str, list[str]]]:
    """The panels :func:`plot_history` draws: ``[(title, [history keys]), ...]``.

    Scalar keys only (list-valued keys such as ``val_iou_per_class`` are skipped). Default: ``"loss"``
    (every key ending in ``loss``), one panel per other ``train_X``/``val_X`` name ``X``, then ``"lr"``.
    ``metrics`` (names like ``"miou"``, ``"loss"``, ``"lr"`` or raw keys like ``"seconds"``) picks and
    orders panels. Raises ``ValueError`` for an empty history or an unknown metric.
    """
    _check_history(history)
    keys: list[str] = []
    for rec in history:
        keys += [k for k, v in rec.items() if _is_scalar(v) and k not in keys and k != "epoch"]
    groups: dict[str, list[str]] = {"loss": [k for k in keys if k.endswith("loss")]}
    for k in keys:
        if k.startswith(("train_", "val_")) and not k.endswith("loss"):
            groups.setdefault(k.split("_", 1)[1], []).append(k)
    if "lr" in keys:
        groups["lr"] = ["lr"]
    groups = {name: sorted(ks, key=lambda k: not k.startswith("train_")) for name, ks in groups.items() if ks}
    if metrics is None:
        return list(groups.items())
    panels = []
    for m in [metrics] if isinstance(metrics, str) else metrics:
        if m in groups:
            panels.append((m, groups[m]))
        elif m in keys:
            panels.append((m, [m]))
        else:
            raise ValueError(f"metric {m!r} is not in the history; available: {sorted(set(groups) | set(keys))}")
    return panels


def plot_history(history: list[dict], metrics=None, fig: Figure | None = None) -> Figure:
    """Training curves against epoch: losses (train vs val), one axis per metric, LR on a log scale.

    Args:
        history: per-epoch dicts such as ``{"epoch": 1, "lr": 1e-3, "train_loss": 0.9, "val_loss": 0.8,
            "val_miou": 0.4, ...}``; keys may vary between epochs (missing -> gap), list values skipped.
        metrics: optional panel names, see :func:`history_panels`.
        fig: a Figure from an earlier call: when it shows the same panels and keys, its curves are replaced in
            place and it is returned (about half the drawing time of a new one: no new axes or ticks); otherwise
            ignored.

    Returns:
        A Figure with one axis per panel (4.5 x 3.2 inches each, up to 3 a row, fixed margins: no layout engine);
        axis titles are the panel names (``"learning rate"`` for lr), legend labels the history keys (no legend on
        a panel of one curve). Raises ``ValueError`` for an empty history or unknown metric.
    """
    panels = history_panels(history, metrics)
    if not panels:
        raise ValueError("history has no scalar metrics to plot; expected keys like 'train_loss' or 'val_miou'")
    log_lr = "lr" in dict(panels) and bool(np.nanmin(_series(history, "lr")[1]) > 0)
    marker = "o" if len(history) < 30 else None
    if fig is not None and getattr(fig, "_seglib_history", None) == (panels, log_lr, marker):
        for ax, (_, keys) in zip(fig.axes, panels):
            for line, k in zip(ax.lines, keys):
                line.set_data(*_series(history, k))
            ax.relim()
            ax.autoscale_view()
        return fig
    fig, axes = _grid(len(panels))
    fig._seglib_history = (panels, log_lr, marker)  # what a later call may update in place
    for ax, (name, keys) in zip(axes, panels):
        for k in keys:
            ax.plot(*_series(history, k), marker=marker, ms=3, label=k)
        if name == "lr" and log_lr:
            ax.set_yscale("log")  # plain-text tick labels: matplotlib's mathtext ones cost up to 0.3 s to parse
            ax.yaxis.set_major_formatter(_PlainLog())
            ax.yaxis.set_minor_formatter(_PlainLog(labelOnlyBase=False))
        _finish(ax, "learning rate" if name == "lr" else name)
    return fig


def _class_colors(colors, n: int) -> np.ndarray:
    if colors is None:
        return palette(n, default_class_table(n)) / 255.0
    colors = np.asarray(colors, np.float64)
    if colors.ndim != 2 or colors.shape[1] != 3 or len(colors) < n:
        raise ValueError(f"colors must have shape ({n}, 3) (uint8 RGB), got {colors.shape}; use palette({n})")
    return colors[:n] / 255.0


def plot_per_class_iou(iou_per_class, class_names, colors=None) -> Figure:
    """Horizontal IoU bar per class with a dashed mean-IoU line.

    Args:
        iou_per_class: float ``(C,)`` in ``[0, 1]``; NaN marks a class absent from the evaluation
            (drawn as ``"n/a"``, left out of the mean).
        class_names: ``C`` names; colors: optional ``uint8 (C, 3)`` bar colours.

    Returns a Figure with one axis. Raises ``ValueError`` for mismatched lengths or values outside [0, 1].
    """
    iou = np.asarray(iou_per_class, np.float64).ravel()
    n = len(iou)
    if n == 0 or len(class_names) != n:
        raise ValueError(f"got {n} IoU values but {len(class_names)} class names; give one name per class")
    if np.any((iou < 0) | (iou > 1)):
        raise ValueError(f"IoU values must be in [0, 1] (or NaN), got min {np.nanmin(iou)} max {np.nanmax(iou)}")
    cols = _class_colors(colors, n)
    fig = Figure(figsize=(7, 1.2 + 0.28 * n), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(n)
    absent = np.isnan(iou)
    ax.barh(y, np.where(absent, 0.0, iou), color=cols, edgecolor="black", linewidth=0.5)
    for i in range(n):
        txt = "n/a" if absent[i] else f"{iou[i]:.3f}"
        ax.text((0 if absent[i] else iou[i]) + 0.01, i, txt, va="center", fontsize=8,
                color="grey" if absent[i] else "black")
    mean = float(np.nanmean(iou)) if not absent.all() else float("nan")
    if not np.isnan(mean):
        ax.axvline(mean, color="red", ls="--", label=f"mean IoU {mean:.3f}")
        ax.legend(loc="best", fontsize=8)
    ax.set_yticks(y, [str(c) for c in class_names], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("IoU")
    ax.set_title(f"per-class IoU (mean {mean:.3f}, {int(absent.sum())} n/a)")
    return fig


def normalize_confusion(cm, normalize: str | None = "true") -> np.ndarray:
    """Normalise an integer ``C x C`` confusion matrix (rows = true, cols = predicted).

    ``normalize``: ``"true"`` (rows sum to 1), ``"pred"`` (columns), ``"all"`` or ``None`` (counts).
    Empty rows/columns become NaN. Returns ``float64 C x C``. Raises ``ValueError`` for a non-square,
    non-integer or negative matrix, or an unknown ``normalize``.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be square C x C, got shape {cm.shape}")
    if not np.issubdtype(cm.dtype, np.integer) or (cm < 0).any():
        raise ValueError(f"cm must hold non-negative integer counts, got dtype {cm.dtype}; pass the raw counts")
    if normalize not in _NORMALIZE:
        raise ValueError(f"normalize must be one of {_NORMALIZE}, got {normalize!r}")
    cm = cm.astype(np.float64)
    if normalize is None:
        return cm
    denom = {"true": cm.sum(1, keepdims=True), "pred": cm.sum(0, keepdims=True), "all": cm.sum()}[normalize]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, cm / np.where(denom > 0, denom, 1), np.nan)


def plot_confusion_matrix(cm, class_names, normalize: str | None = "true") -> Figure:
    """Heat map of a confusion matrix (rows = true class, columns = predicted class).

    Args:
        cm: ``int64 C x C`` counts; class_names: ``C`` names; normalize: see :func:`normalize_confusion`.

    Returns:
        A Figure with the matrix axis plus a colour-bar axis; the image data is the normalised matrix
        (absent classes NaN, drawn grey). Sized and annotated to stay readable for ~22 classes.
        Raises ``ValueError`` as :func:`normalize_confusion`, or when ``len(class_names) != C``.
    """
    norm = normalize_confusion(cm, normalize)
    n = norm.shape[0]
    if len(class_names) != n:
        raise ValueError(f"cm is {n} x {n} but there are {len(class_names)} class names")
    side = max(4.0, 0.38 * n + 2.5)
    fig = Figure(figsize=(side + 1.0, side), layout="constrained")
    ax = fig.add_subplot()
    vmax = 1.0 if normalize else max(1.0, float(np.nanmax(norm)))
    cmap = colormaps["Blues"].with_extremes(bad="lightgrey")
    im = ax.imshow(np.ma.masked_invalid(norm), cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8)
    if n <= 30:
        fs = 8 if n <= 10 else 6 if n <= 22 else 5
        for i, j in zip(*np.nonzero(np.nan_to_num(norm) > (0.005 if normalize else 0))):
            v = norm[i, j]
            ax.text(j, i, f"{v:.2f}" if normalize else f"{int(v)}", ha="center", va="center", fontsize=fs,
                    color="white" if v > 0.6 * vmax else "black")
    names = [str(c) for c in class_names]
    ax.set_xticks(range(n), names, rotation=90, fontsize=7 if n > 12 else 9)
    ax.set_yticks(range(n), names, fontsize=7 if n > 12 else 9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix" + (f" (normalised over {normalize})" if normalize else " (counts)"))
    return fig


def plot_loss_comparison(histories: dict[str, list[dict]], metrics=("val_loss",)) -> Figure:
    """Curves of several runs on shared axes, one axis per metric key, legend = run names.

    Args:
        histories: ``{run name: history}`` with histories as for :func:`plot_history`.
        metrics: history keys, e.g. ``("train_loss", "val_loss", "val_miou")``.

    Returns a Figure with ``len(metrics)`` axes titled by key. Raises ``ValueError`` for no runs, an
    empty history, or a metric that no run recorded.
    """
    if not isinstance(histories, dict) or not histories:
        raise ValueError("histories must be a non-empty dict {run name: list of per-epoch dicts}")
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    if not metrics:
        raise ValueError("metrics must name at least one history key, e.g. ('val_loss',)")
    for name, hist in histories.items():
        _check_history(hist, f"histories[{name!r}]")
    fig, axes = _grid(len(metrics))
    for ax, key in zip(axes, metrics):
        runs = [r for r, h in histories.items() if any(_is_scalar(rec.get(key)) for rec in h)]
        if not runs:
            raise ValueError(f"no run has metric {key!r}; runs: {list(histories)}")
        for r in runs:
            ax.plot(*_series(histories[r], key), marker="o" if len(histories[r]) < 30 else None, ms=3, label=r)
        _finish(ax, key)
    return fig
