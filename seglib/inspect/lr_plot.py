"""The LR finder's plot (``LR = "find"``), as fastai's ``plot_lr_find``: smoothed training loss against the
learning rate on a log axis, the suggestion marked. Returns a ``matplotlib.figure.Figure`` (no pyplot state)."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure


def plot_lr_find(result, title: str | None = None) -> Figure:
    """Loss vs LR of an LR finder run with its suggestion marked.

    Args:
        result: a :class:`seglib.train.lr_finder.LRFindResult` (or any object/dict with ``lrs``, ``losses``
            (smoothed), ``suggestion`` and optionally ``index``, ``rule``, ``raw_losses``, ``lr_min_div10``,
            ``steepest``, ``source``, ``size``). A result that was not run (``source == "checkpoint"``,
            no points) gives a figure that says so and names the LR.
        title: axes title (default: the suggestion and where it came from).

    Returns:
        A figure: raw batch losses (faint), the smoothed loss (line), the suggestion (red dot and dashed line),
        the "minimum / 10" and steepest points (grey ticks) when present; x log-scaled [LR], y the loss.

    Raises:
        ValueError: ``lrs`` and ``losses`` of different lengths, or a non-positive LR.
    """
    get = (lambda k, d=None: result.get(k, d)) if isinstance(result, dict) else (lambda k, d=None: getattr(result, k, d))
    lrs, losses = np.asarray(get("lrs", []), np.float64), np.asarray(get("losses", []), np.float64)
    sugg, rule, source = float(get("suggestion")), get("rule", "valley"), get("source", "run")
    if len(lrs) != len(losses):
        raise ValueError(f"lrs ({len(lrs)}) and losses ({len(losses)}) must have the same length")
    if len(lrs) and not np.all(lrs > 0):
        raise ValueError("learning rates must be > 0 for the log axis")
    fig = Figure(figsize=(6.0, 3.8), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    if not len(lrs):
        ax.text(0.5, 0.5, f"LR finder not run ({source}):\ntraining continues with LR {sugg:.3g}",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_xlim(sugg / 10, sugg * 10)
        ax.set_title(title or f"LR {sugg:.3g} (from the {source})")
        return fig
    raw = np.asarray(get("raw_losses", []) or [], np.float64)
    finite = np.isfinite(losses)
    if len(raw) == len(lrs):
        ax.plot(lrs, np.where(np.isfinite(raw), raw, np.nan), color="tab:blue", alpha=0.25, lw=0.8,
                label="batch loss")
    ax.plot(lrs[finite], losses[finite], color="tab:blue", label="smoothed loss")
    if finite.any():  # from the lowest batch loss to the start of the curve: blow-ups do not flatten it
        shown = np.concatenate([losses[finite], raw[np.isfinite(raw)] if len(raw) == len(lrs) else []])
        lo, hi = float(shown.min()), float(np.median(losses[finite][: max(1, len(losses) // 5)]))
        pad = 0.05 * max(hi - lo, 1e-12)
        ax.set_ylim(lo - pad, max(hi, lo) + 3 * pad)
    i = get("index")
    y = losses[int(i)] if i is not None and 0 <= int(i) < len(losses) else np.interp(math.log(sugg), np.log(lrs), losses)
    ax.axvline(sugg, color="tab:red", ls="--", lw=1)
    ax.plot([sugg], [y], "o", color="tab:red", label=f"{rule}: {sugg:.3g}")
    for name, marker in (("lr_min_div10", "v"), ("steepest", "^")):
        v = get(name)
        if v:
            ax.plot([v], [np.interp(math.log(v), np.log(lrs), np.where(finite, losses, np.nan))], marker,
                    color="grey", label=f"{name.replace('_div10', ' / 10')}: {v:.3g}")
    ax.legend(loc="best", fontsize=8)
    size = get("size")
    ax.set_title(title or f"LR finder: {sugg:.3g} ({rule}" + (f", {size} px" if size else "")
                 + (", reused" if source == "lr_find.json" else "") + ")")
    return fig
