"""A run checkpointed by seglib before the one-training-state change (checkpoint format 1: ``tests/fixtures/run_v1``,
written by seglib 9f66800 as ``tests/fixtures/make_checkpoint_v1.py`` records: a tiny U-Net on the synthetic
streets, stopped after optimizer step 5 = epoch 1 done and 1 of the 4 batches of epoch 2) resumes under the
current code at epoch 2 batch 1, keeps its epoch-1 record, and ends with the weights of an uninterrupted run of
the current code, bit for bit (CPU, one thread)."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from seglib.config import TrainConfig
from seglib.segmentation import SegmentationRun

FIXTURE = Path(__file__).with_name("fixtures") / "run_v1"


def make_run(workdir):
    """The configuration and data of make_checkpoint_v1.py."""
    cfg = TrainConfig(experiment="fixture_v1", model="unet", model_kwargs={"width_divisor": 32, "batchnorm": True},
                      n_classes=22, img_size=64, batch_size=4, epochs=3, encoder_weights=None, num_workers=0,
                      checkpoint_minutes=0, augment="street", optimizer="adamw", lr=3e-3, loss="dice_ce",
                      scheduler="plateau", monitor="val_miou", seed=5, log_images=0)
    run = SegmentationRun(cfg, "synthetic", workdir=workdir, local=workdir, smoke=True,
                          synthetic_kwargs={"n_train": 16, "n_val": 8, "n_test": 2, "size": 96})
    run.prepare()
    return run


def without_times(history):
    return json.dumps([{k: v for k, v in h.items() if "seconds" not in k} for h in history])  # NaN-aware


def test_format_1_checkpoint_resumes_and_ends_like_a_fresh_run(tmp_path, one_thread, capsys):
    old = tmp_path / "old"
    shutil.copytree(FIXTURE, old)
    written = torch.load(old / "checkpoints" / "last.pt", weights_only=True)
    assert written["format"] == "seglib-checkpoint/1" and "engine" not in written
    assert type(written["train_acc"]["seen"]) is int  # the old form of the loss accumulator
    assert (written["epoch"], written["batch"], written["step"]) == (1, 1, 5)

    run = make_run(old)
    resumed = run.train(progress=False)
    out = capsys.readouterr().out
    assert "resumed from" in out and "epoch 2, batch 1/4 (1 epochs done)" in out
    assert "records no data fingerprint" in out  # accepted, and recorded from the next save on
    assert torch.load(old / "checkpoints" / "last.pt", weights_only=True)["data"] == run.data_fingerprint()
    assert resumed.resumed_from == {"epoch": 2, "batch": 1} and resumed.epochs_completed == 3
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert json.dumps(resumed.history[0]) == json.dumps(written["history"][0])  # the old record, as written

    fresh = make_run(tmp_path / "fresh").train(progress=False)
    assert fresh.resumed_from is None and fresh.epochs_completed == 3
    a = torch.load(old / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "fresh" / "checkpoints" / "last.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["step"] == b["step"] == 12 and a["scheduler"] == b["scheduler"] and a["best"] == b["best"]
    assert without_times(a["history"][1:]) == without_times(b["history"][1:])  # epochs 2 and 3 of today's code
    assert json.loads((old / "history.json").read_text())[0]["epoch"] == 1


def test_binary_checkpoint_from_before_the_rename_keeps_its_best():
    """A study trial checkpoint written before the binary keys were renamed (``val_dice`` -> ``val_fg_dice``):
    history, last_val and every monitored key are renamed, so the best value survives the resume."""
    from seglib.train.state import upgrade_checkpoint

    old = {"config": {"monitor": "val_dice"}, "history": [{"epoch": 1, "val_dice": 0.5, "val_iou": 0.3,
                                                          "val_pixel_ap": 0.7, "train_loss": 1.0}],
           "last_val": {"dice": 0.5, "iou": 0.3}, "best": {"monitor": "val_dice", "value": 0.5, "epoch": 1},
           "early_stopping": {"wait": 0, "best": {"monitor": "val_dice", "value": 0.5, "epoch": 1}}}
    new = upgrade_checkpoint(old, "binary")
    assert new["history"] == [{"epoch": 1, "val_fg_dice": 0.5, "val_fg_iou": 0.3, "val_pixel_ap": 0.7,
                               "train_loss": 1.0}]
    assert new["last_val"] == {"fg_dice": 0.5, "fg_iou": 0.3}
    assert new["config"]["monitor"] == new["best"]["monitor"] == "val_fg_dice"
    assert new["early_stopping"]["best"] == {"monitor": "val_fg_dice", "value": 0.5, "epoch": 1}
    assert old["best"]["monitor"] == "val_dice"  # the loaded dict is not changed in place
    assert upgrade_checkpoint(old, "multiclass")["best"]["monitor"] == "val_dice"  # multiclass dice is unchanged


def test_old_monitor_name_says_its_new_name():
    from seglib.metrics import BinaryMetrics
    from seglib.train.state import check_monitor

    with pytest.raises(ValueError, match="'val_dice' is now called 'val_fg_dice'"):
        check_monitor("val_dice", BinaryMetrics(objects=False))
