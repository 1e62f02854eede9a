"""Inspection tools: overlays and grids (``render``), training/evaluation plots (``plots``), the LR finder's
plot (``lr_plot``) and notebook viewers (``widgets``). Everything takes numpy arrays and returns numpy arrays or
``matplotlib.figure.Figure`` objects, so it runs headless (Agg) as well as in Colab."""

from .batch import batch_figure
from .lr_plot import plot_lr_find
from .plots import (
    history_panels,
    normalize_confusion,
    plot_confusion_matrix,
    plot_history,
    plot_loss_comparison,
    plot_per_class_iou,
)
from .render import (
    binary_iou,
    check_image,
    check_mask,
    depth_rmse,
    depth_to_rgb,
    error_map,
    order_worst_first,
    overlay,
    per_image_iou,
    prediction_grid,
    render_depth_sample,
    render_sample,
    resolve_colors,
)
from .widgets import DepthSegViewer, SegmentationViewer

__all__ = [
    "DepthSegViewer",
    "SegmentationViewer",
    "batch_figure",
    "binary_iou",
    "check_image",
    "check_mask",
    "depth_rmse",
    "depth_to_rgb",
    "error_map",
    "history_panels",
    "normalize_confusion",
    "order_worst_first",
    "overlay",
    "per_image_iou",
    "plot_confusion_matrix",
    "plot_history",
    "plot_loss_comparison",
    "plot_lr_find",
    "plot_per_class_iou",
    "prediction_grid",
    "render_depth_sample",
    "render_sample",
    "resolve_colors",
]
