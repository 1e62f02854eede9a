"""Metric declarations: every scalar metric's key, direction and description, declared once.

:data:`METRICS` maps a key (``"miou"``, ``"fg_dice"``, ``"mask_iou"``, ...) to its :class:`MetricSpec`.
Save-best, early stopping and ReduceLROnPlateau read :func:`higher_is_better` of the monitored key instead of
separate ``mode``/``minimize`` flags. A key means one thing in the whole package: declaring it again with
another direction or description raises.

Keys renamed by issue 9 (a name had two meanings) stay readable in old histories and results through
:func:`upgrade_keys` and :data:`LEGACY_KEYS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..registry import Registry

SPLITS = ("train_", "val_", "test_")
"""Prefixes of history keys: ``val_miou`` is metric ``miou`` on the validation split."""


@dataclass(frozen=True)
class MetricSpec:
    """A scalar metric's key, direction and meaning.

    Attributes:
        key: the name in ``compute()`` results and, with a split prefix, in histories (``val_<key>``).
        higher_is_better: True / False; None for a count that is reported but cannot be monitored.
        description: what it measures, with its formula's source.
    """

    key: str
    higher_is_better: bool | None
    description: str


METRICS = Registry("metric")
"""Key -> :class:`MetricSpec`, filled by the task modules of :mod:`seglib.metrics` when imported."""


def register_metric(key: str, higher_is_better: bool | None, description: str) -> str:
    """Declare a scalar metric in :data:`METRICS` and return ``key``.

    Declaring the identical spec again (a re-imported module) is a no-op.

    Raises:
        ValueError: ``key`` is already declared with another direction (message names ``higher_is_better``)
            or another description: a key means one thing; give the new metric another key.
    """
    spec = MetricSpec(key, higher_is_better, description)
    if key in METRICS:
        old = METRICS.get(key)
        if old.higher_is_better != higher_is_better:
            raise ValueError(f"metric {key!r} is already declared with higher_is_better={old.higher_is_better}; "
                             "give this metric another key")
        if old != spec:
            raise ValueError(f"metric {key!r} is already declared as {old.description!r}; a key means one thing, "
                             "give this metric another key")
        return key
    METRICS.register(key, spec)
    return key


register_metric("loss", False, "training objective, mean over the samples of the epoch")


def metric_key(monitor: str) -> str:
    """The metric key of a history key: ``"val_miou"`` -> ``"miou"`` (one split prefix of :data:`SPLITS` stripped)."""
    for prefix in SPLITS:
        if monitor.startswith(prefix):
            return monitor[len(prefix):]
    return monitor


def higher_is_better(monitor: str) -> bool:
    """Direction of a monitored key such as ``"val_loss"`` or ``"val_miou"`` (split prefix stripped).

    Raises:
        KeyError: unknown metric (the message lists the declared keys).
        ValueError: the key is a count, not a score (``higher_is_better`` None), so it cannot be monitored.
    """
    spec = METRICS.get(metric_key(monitor))
    if spec.higher_is_better is None:
        raise ValueError(f"{monitor!r} is a count ({spec.description}), not a score; monitor a score such as "
                         "'val_loss'")
    return spec.higher_is_better


def is_improvement(value: float | None, best: float | None, higher: bool, min_delta: float = 0.0) -> bool:
    """True if ``value`` beats ``best`` by more than ``min_delta`` in the metric's direction.

    A NaN or None ``value`` never improves; any number improves on a None or NaN ``best``.
    """
    if value is None or math.isnan(value):
        return False
    if best is None or math.isnan(best):
        return True
    return value > best + min_delta if higher else value < best - min_delta


LEGACY_KEYS: dict[str, dict[str, str]] = {
    "multiclass": {},
    "binary": {"dice": "fg_dice", "iou": "fg_iou"},
    "depth": {"iou": "mask_iou", "iou_soft": "mask_iou_soft"},
}
"""Per task, the metric keys written before issue 9 and their keys now. Multi-class keys did not change."""


def upgrade_key(key: str, task: str) -> str:
    """The current name of a key written by an older seglib for ``task`` (``"multiclass"``, ``"binary"``,
    ``"depth"``); other keys come back unchanged.

    A key is renamed when it is an old metric key, alone or after a split prefix with any head:
    ``"dice"``, ``"val_dice"``, ``"best_val_dice"``, ``"hparam/train_dice"`` -> ``"fg_dice"``, ``"val_fg_dice"``, ...
    Keys such as ``"bce_dice"`` or ``"val_iou_per_class"`` are not metric keys and stay.

    Raises:
        KeyError: unknown ``task`` (the message lists the tasks).
    """
    if task not in LEGACY_KEYS:
        raise KeyError(f"unknown task {task!r}; valid tasks: {', '.join(LEGACY_KEYS)}")
    for old, new in LEGACY_KEYS[task].items():
        if key == old:
            return new
        for prefix in SPLITS:
            head = key[: len(key) - len(prefix + old)]
            if key.endswith(prefix + old) and (head == "" or head[-1] in "_/"):
                return key[: len(key) - len(old)] + new
    return key


def upgrade_keys(record, task: str):
    """A copy of ``record`` (a history record, a result or summary dict, or a list of them, nested) with
    every key renamed by :func:`upgrade_key`; values and other keys are unchanged.

    A key whose new name is already present keeps the present value. Use it wherever a saved history or
    result may come from before the rename: ``history = upgrade_keys(json.load(f)["history"], "binary")``.

    Raises:
        KeyError: unknown ``task``.
    """
    if isinstance(record, dict):
        out = {}
        for k, v in record.items():
            new = upgrade_key(k, task) if isinstance(k, str) else k
            if new != k and new in record:
                continue
            out[new] = upgrade_keys(v, task)
        return out
    if isinstance(record, list):
        return [upgrade_keys(v, task) for v in record]
    return record
