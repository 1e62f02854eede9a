"""Epoch-level metrics, their keys and directions.

Layout (each module imports only :mod:`.registry`, :mod:`.functional` and :mod:`seglib.tensors`, never this
package, so there is no import cycle):

* :mod:`.registry` -- :data:`METRICS` (key -> :class:`MetricSpec`: direction and description, declared once),
  :func:`register_metric`, :func:`higher_is_better`, :func:`is_improvement` and :func:`upgrade_keys`
  (old histories and results, :data:`LEGACY_KEYS`);
* :mod:`.functional` -- pure functions: the one IoU / Dice formula, confusion matrix, per-image IoU,
  exact AP, VOC AP, object matching, and the one rule for empty masks;
* :mod:`.multiclass` -- :class:`SegmentationMetrics` (``miou``, ``dice``, ``pixel_accuracy``, per class);
* :mod:`.binary` -- :class:`BinaryMetrics` (``fg_dice``, ``fg_iou``, ``precision``, ``recall``, ``pixel_ap``,
  ``object_ap50``, ``objects_true``, ``objects_pred``);
* :mod:`.depth` -- :class:`DepthSegMetrics` (``mask_iou``, ``mask_iou_soft``, ``rmse``, ``abs_rel``, ``delta1``).

Every accumulator has ``update(outputs, target)``, ``compute() -> dict``, ``reset()``, ``keys`` (the scalar
keys ``compute()`` returns) and ``task`` (the argument of :func:`upgrade_keys`). Importing this package
imports the three task modules, so :data:`METRICS` is complete.
"""

from . import binary, depth, multiclass  # noqa: F401  (declare every metric)
from .binary import BinaryMetrics
from .depth import DepthSegMetrics
from .functional import (
    EMPTY_SCORE,
    average_precision,
    confusion_matrix,
    dice_from_counts,
    image_miou,
    iou_from_counts,
    mask_iou,
    match_objects,
    scores_from_confusion,
    voc_ap,
)
from .multiclass import SegmentationMetrics
from .registry import (
    LEGACY_KEYS,
    METRICS,
    MetricSpec,
    higher_is_better,
    is_improvement,
    metric_key,
    register_metric,
    upgrade_key,
    upgrade_keys,
)

__all__ = [
    "EMPTY_SCORE", "LEGACY_KEYS", "METRICS", "BinaryMetrics", "DepthSegMetrics", "MetricSpec", "SegmentationMetrics",
    "average_precision", "confusion_matrix", "dice_from_counts", "higher_is_better", "image_miou",
    "iou_from_counts", "is_improvement", "mask_iou", "match_objects", "metric_key", "register_metric",
    "scores_from_confusion", "upgrade_key", "upgrade_keys", "voc_ap",
]
