"""Feedback while it runs: one table row per epoch (both engines, resumed runs), the study bar with trial k/N."""

from __future__ import annotations

import json
import re

import pytest

from seglib import TrainConfig
from seglib.segmentation import SegmentationRun
from seglib.train.progress import EpochTable, best_epochs
from seglib.tune.worker import StudyPlan, StudyWorker, TrialPlan, open_storage

ROW = re.compile(r"^\s*(\d+)/(\d+)\s")


def _run(workdir, epochs: int) -> SegmentationRun:
    cfg = TrainConfig(experiment="progress", model="unet", model_kwargs={"width_divisor": 32}, encoder_weights=None,
                      n_classes=22, img_size=32, batch_size=4, epochs=epochs, optimizer="adamw", lr=1e-3,
                      loss="dice_iou_bce", num_workers=0, log_images=0, early_stop_patience=None)
    run = SegmentationRun(cfg, "synthetic", workdir=workdir,
                          synthetic_kwargs={"n_train": 8, "n_val": 4, "n_test": 1, "size": 32})
    run.prepare()
    return run


def _table(text: str) -> tuple[list[str], list[list[str]]]:
    """``(header cells, rows of cells)`` of the printed epoch table in ``text``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["epoch", "train_loss"])
    rows = [line.split() for line in lines[start + 1:] if ROW.match(line)]
    return lines[start].split(), rows


def _check_rows(header, rows, history, epochs):
    assert header == ["epoch", "train_loss", "val_loss", "val_miou", "val_dice", "val_pixel_accuracy", "lr", "px", "s"]
    assert len(rows) == len(history)
    best = best_epochs(history, "val_loss")
    for cells, rec in zip(rows, history):
        assert cells[0] == f"{rec['epoch']}/{epochs}"
        assert float(cells[1]) == pytest.approx(rec["train_loss"], abs=5e-5)
        assert cells[2].endswith("*") == (rec["epoch"] in best)  # new best of the monitored key
        for cell, key in zip(cells[2:6], header[2:6]):
            assert float(cell.rstrip("*")) == pytest.approx(rec[key], abs=5e-5), key
        assert float(cells[6]) == pytest.approx(rec["lr"], rel=5e-3)
        assert int(cells[7]) == rec["img_size"] and float(cells[8]) == pytest.approx(rec["seconds"], abs=0.05)


@pytest.mark.parametrize("engine", ["seglib", "catalyst"])
def test_one_row_per_epoch_equal_to_history_json_and_resumed_rows(tmp_path, capsys, one_thread, engine):
    if engine == "catalyst":
        from catalyst_testing import catalyst_or_fail

        catalyst_or_fail()
    _run(tmp_path, 2).train(progress=False, engine=engine)
    header, rows = _table(capsys.readouterr().out)
    history = json.loads((tmp_path / "history.json").read_text())
    _check_rows(header, rows, history, 2)
    assert all("restored" not in " ".join(r) for r in rows)
    _run(tmp_path, 3).train(progress=False, engine=engine)  # Run all again with one epoch more
    out = capsys.readouterr().out
    header, rows = _table(out)
    history = json.loads((tmp_path / "history.json").read_text())
    assert [r[-1] == "(restored)" for r in rows] == [True, True, False] and out.count("train_loss") == 1
    _check_rows(header, [r[:-1] if r[-1] == "(restored)" else r for r in rows], history, 3)
    _run(tmp_path, 4).train(progress=False, engine=engine, epoch_table=False)
    assert "train_loss" not in capsys.readouterr().out  # turned off
    _run(tmp_path, 4).train(progress=False, engine=engine)  # finished: nothing trained, no table
    assert "train_loss" not in capsys.readouterr().out


class _State:
    """What EpochTable reads from a training state."""

    class cfg:  # noqa: N801
        monitor, epochs = "val_fg_dice", 12

    def __init__(self):
        self.history = []

    @staticmethod
    def metrics_factory():
        from seglib.metrics import BinaryMetrics

        return BinaryMetrics()


def test_table_columns_marks_and_missing_values():
    state, table = _State(), EpochTable(file=open("/dev/null", "w"), prefix="  ")
    for epoch, dice in [(1, 0.5), (2, float("nan")), (3, 0.4), (4, 0.6)]:
        record = {"epoch": epoch, "train_loss": 1.0, "val_fg_dice": dice, "val_loss": None, "lr": 0.01,
                  "img_size": 64, "seconds": 1.25}
        state.history.append(record)
        table.on_epoch_end(state, record)
    head, *rows = table.lines
    assert head.split() == ["epoch", "train_loss", "val_fg_dice", "val_loss", "val_fg_iou", "val_precision",
                            "val_recall", "lr", "px", "s"]
    assert all(line.startswith("  ") for line in table.lines)
    assert [r.split()[2] for r in rows] == ["0.5000*", "nan", "0.4000", "0.6000*"]
    assert rows[0].split()[3:6] == ["-", "-", "-"] and rows[0].split()[0] == "1/12"
    assert len({len(line) for line in table.lines}) == 1  # aligned columns
    with pytest.raises(ValueError, match="max_metrics"):
        EpochTable(max_metrics=-1)


def test_study_bar_and_lines_say_trial_k_of_n_and_the_best(tmp_path, capsys):
    storage, _ = open_storage(None, tmp_path)
    points = [{"x": v} for v in ("a", "b", "c")]
    plan = StudyPlan("s", "s-test", {"x": ("a", "b", "c")},
                     [TrialPlan("s", p, f"k{p['x']}-0000000{i}", {"x": p["x"], "epochs": 2}) for i, p in enumerate(points)])
    values = {"a": 0.25, "b": 0.75, "c": 0.5}

    def run_trial(tp, callbacks):
        trainer = _State()
        for epoch in (1, 2):
            trainer.history.append({"epoch": epoch, "val_fg_dice": values[tp.params["x"]]})
            for cb in callbacks:
                cb.on_epoch_end(trainer, trainer.history[-1])
        return {"state": "complete", "best_val_fg_dice": values[tp.params["x"]]}

    lines = []
    worker = StudyWorker(storage, [plan], run_trial, heartbeat=0.2, poll=0.05, log=lines.append, bar=True)
    assert worker.run() == {"s": "done"}
    assert lines == ["  [s] trial 1/3: ka-00000000 (Optuna trial 0; no trial finished yet)",
                     "  [s] trial 2/3: kb-00000001 (Optuna trial 1; best val Dice 0.2500 (ka))",
                     "  [s] trial 3/3: kc-00000002 (Optuna trial 2; best val Dice 0.7500 (kb))"]
    bar = capsys.readouterr().out  # the tqdm bar (forced on; stdout is not a terminal here)
    assert "study s: trial 3/3; best val Dice 0.7500 (kb)" in bar and "epoch 2/2 val_fg_dice 0.5000" in bar
    assert re.search(r"3/3 \[", bar)  # the bar reached N
    StudyWorker(storage, [plan], run_trial, log=lines.append).run()  # bar None: off in a plain log
    assert capsys.readouterr().out == "" and len(lines) == 3  # and nothing left to run
