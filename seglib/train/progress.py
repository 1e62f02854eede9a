"""One line per epoch while a run trains: the table fastai prints, as plain text for notebooks and logs.

:class:`EpochTable` is a :class:`~seglib.train.state.TrainingState` callback (``on_epoch_end(state,
record)``), so both engines (the seglib :class:`~seglib.train.trainer.Trainer` and the Catalyst adapter)
print the same rows. A header once, then per epoch: epoch/epochs, train loss, the monitored metric first
(``*`` when it is a new best), ``val_loss`` and the task's next validation metrics, LR, image size and
seconds; the numbers are the history record's (``history.json``), rounded. A resumed run first prints
the rows of the epochs restored from the checkpoint, marked ``(restored)``, so the table is whole after
Run all again. Lines go through ``tqdm.write`` (no clash with running tqdm bars in a terminal).

Example (the default of every notebook run, see :meth:`seglib.experiment.Experiment.train`)::

    epoch  train_loss   val_loss    val_miou    val_dice   val_pixel_accuracy          lr    px       s
      1/2      2.4907     2.4274*     0.0016      0.0031               0.0078       0.001    64     1.9
      2/2      2.4241     2.4102*     0.0036      0.0070               0.0206       0.001    64     0.9
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

from tqdm.auto import tqdm

from ..metrics import higher_is_better, is_improvement


def _cell(value, width: int, fmt: str) -> str:
    """``value`` formatted right-aligned in ``width`` characters; ``-`` when missing or not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{'-':>{width}s}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value!s:>{width}s}"
    return f"{value:>{width}{fmt}}"


def best_epochs(history: list[dict], monitor: str) -> set[int]:
    """The epochs of ``history`` whose ``monitor`` value was a new best when it was recorded (the rule of
    :class:`~seglib.train.callbacks.BestTracker`; NaN never improves). Raises KeyError for an unknown metric."""
    higher, best, out = higher_is_better(monitor), None, set()
    for record in history:
        value = record.get(monitor)
        if isinstance(value, (int, float)) and is_improvement(value, best, higher):
            best = float(value)
            out.add(int(record["epoch"]))
    return out


class TableFormat:
    """The fixed-width layout of the epoch table: ``keys`` (history keys after ``train_loss``; ``monitor`` gets
    the ``*`` of a new best) and ``epochs`` (the planned number, shown as ``k/epochs``; None: ``k``)."""

    def __init__(self, keys: Sequence[str], monitor: str, epochs: int | None = None):
        self.keys, self.monitor, self.epochs = list(keys), monitor, epochs
        self.widths = [max(10, len(k) + 1) for k in self.keys]
        self.epoch_width = max(5, 2 * len(str(epochs or 0)) + 1)

    def header(self) -> str:
        """The header line: ``epoch  train_loss  <keys>  lr  px  s``."""
        return (f"{'epoch':>{self.epoch_width}s}  {'train_loss':>10s}  "
                + "  ".join(f"{k:>{w - 1}s} " for k, w in zip(self.keys, self.widths))
                + f"  {'lr':>9s}  {'px':>4s}  {'s':>6s}")

    def row(self, record: dict, best: set[int], note: str = "") -> str:
        """``record``'s line (a history record; ``best``: the epochs that set a new best, see :func:`best_epochs`)."""
        cells = [_cell(record.get(k), w - 1, ".4f") + ("*" if k == self.monitor and record["epoch"] in best else " ")
                 for k, w in zip(self.keys, self.widths)]
        epoch = f"{record['epoch']}/{self.epochs}" if self.epochs else str(record["epoch"])
        return (f"{epoch:>{self.epoch_width}s}  {_cell(record.get('train_loss'), 10, '.4f')}  " + "  ".join(cells)
                + f"  {_cell(record.get('lr'), 9, '.3g')}  {_cell(record.get('img_size'), 4, '.0f')}  "
                f"{_cell(record.get('seconds'), 6, '.1f')}{note}")


class EpochTable:
    """Print a header once and one row per finished epoch (a training-state callback).

    Args:
        metrics: history keys shown after ``train_loss`` (e.g. ``["val_miou", "val_loss"]``); default: the
            monitored key, then ``val_loss``, then the first ``max_metrics`` other ``val_<k>`` of the task's
            metric keys in their declaration order (:func:`seglib.train.state.monitor_keys`).
        max_metrics: how many further validation metrics the default shows (>= 0).
        prefix: put before every line (e.g. an indent under a study trial's line).
        file: where to write (default: ``sys.stdout`` at the time of writing, so a notebook captures it).

    Columns: ``epoch`` (``k/epochs``), ``train_loss``, the metrics (4 decimals; ``*`` marks a new best of
    the monitored key), ``lr`` (the LR the epoch trained with, last parameter group, 3 significant
    digits), ``px`` (image side length), ``s`` (the epoch's wall-clock seconds: training, validation and
    checkpoint). Missing or non-numeric values print as ``-``. Written lines are kept in :attr:`lines`.

    Raises:
        ValueError: ``max_metrics`` negative.
    """

    def __init__(self, metrics: Sequence[str] | None = None, *, max_metrics: int = 3, prefix: str = "", file=None):
        if max_metrics < 0:
            raise ValueError(f"max_metrics must be >= 0, got {max_metrics}")
        self.metrics = list(metrics) if metrics else None
        self.max_metrics, self.prefix, self.file = max_metrics, prefix, file
        self.format: TableFormat | None = None
        self.lines: list[str] = []

    def columns(self, state) -> list[str]:
        """The metric keys shown for ``state`` (a :class:`~seglib.train.state.TrainingState`)."""
        if self.metrics:
            return self.metrics
        from .state import monitor_keys

        monitor = state.cfg.monitor
        others = [k for k in monitor_keys(state.metrics_factory()) if k not in ("train_loss", "val_loss", monitor)]
        return [k for k in dict.fromkeys((monitor, "val_loss")) if k != "train_loss"] + others[:self.max_metrics]

    def _write(self, line: str) -> None:
        line = self.prefix + line
        self.lines.append(line)
        tqdm.write(line, file=self.file or sys.stdout)

    def on_epoch_end(self, state, record: dict) -> None:
        """Write the header and the restored epochs' rows on the first call, then ``record``'s row.

        ``state``: the training state (its ``cfg``, ``history`` with ``record`` last, ``metrics_factory``);
        ``record``: the epoch's history record (``epoch``, ``train_loss``, ``val_<k>``, ``lr``, ``img_size``,
        ``seconds``)."""
        best = best_epochs(state.history, state.cfg.monitor)
        if self.format is None:
            self.format = TableFormat(self.columns(state), state.cfg.monitor, state.cfg.epochs)
            self._write(self.format.header())
            for old in state.history:
                if old["epoch"] < record["epoch"]:
                    self._write(self.format.row(old, best, "  (restored)"))
        self._write(self.format.row(record, best))
