"""The JetCar notebook with ENGINE="catalyst" (papermill, SMOKE mode) on the synthetic default and on CamVid:
the same summary, checkpoints, predictions zip and evaluation as the seglib engine, plus Catalyst's
TensorBoard folders with the seglib prediction grid."""

import json
import zipfile
from io import BytesIO

import numpy as np
import pytest
import torch
from catalyst_testing import catalyst_or_fail
from PIL import Image

catalyst_or_fail()

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from seglib.nbrun import run_notebook  # noqa: E402

# the keys of seglib.train.state.TrainingState.state_dict() (both engines): a Catalyst checkpoint has all of them
SEGLIB_CHECKPOINT_KEYS = {"format", "engine", "model", "optimizer", "scheduler", "scaler", "epoch", "batch", "step",
                          "train_acc", "early_stopping", "best", "rng", "history", "last_val", "config", "versions",
                          "saved_at", "data", "fine_tuned_from", "epoch_lr", "task", "classes", "world_size"}


def check_catalyst_workdir(workdir, n_classes, n_predictions, recipe="fast"):
    s = json.loads((workdir / "summary.json").read_text())
    assert s["notebook"] == "jetcar_segmentation" and s["engine"] == "catalyst"
    assert s["epochs_completed"] == 2 and s["resumed_from"] is None and s["stopped_early"] is False
    assert s["best"]["metric"] == ("val_miou" if recipe == "fast" else "val_loss") and s["best"]["epoch"] in (1, 2)
    ck = torch.load(workdir / "checkpoints" / "last.pt", weights_only=True)  # the seglib loading rule
    assert set(ck) - SEGLIB_CHECKPOINT_KEYS == {"catalyst"} and SEGLIB_CHECKPOINT_KEYS <= set(ck)
    assert ck["format"] == "seglib-checkpoint/1" and ck["engine"] == "catalyst" and ck["config"]["n_classes"] == n_classes
    assert ck["task"] == "multiclass" and len(ck["classes"]["names"]) == len(ck["classes"]["colors"]) == n_classes
    assert (ck["epoch"], ck["batch"]) == (2, 0) and ck["catalyst"]["epoch_step"] == 2
    assert ck["versions"]["catalyst"] == "22.04"
    best = torch.load(workdir / "checkpoints" / "best.pt", weights_only=True)
    assert best["epoch"] == s["best"]["epoch"]
    assert "optimizer" not in best and best["data"] == ck["data"] and ck["data"]["id"] == s["data"]["fingerprint"]
    assert s["status"] == "fresh"
    # evaluate() of best.pt (seglib code, new model) reproduces the Catalyst run's validation of that epoch
    fm, record = s["final_metrics"], ck["history"][s["best"]["epoch"] - 1]
    assert fm["miou"] == pytest.approx(record["val_miou"], abs=1e-6)
    assert fm["loss"] == pytest.approx(record["val_loss"], rel=1e-4)
    if recipe == "original":  # Dice + IoU + 0.8 BCE, each term logged by Catalyst
        assert {"val_loss_dice", "val_loss_iou", "val_loss_bce", "val_catalyst_dice", "val_catalyst_iou"} <= set(record)
        assert record["val_loss"] == pytest.approx(record["val_loss_dice"] + record["val_loss_iou"] +
                                                   0.8 * record["val_loss_bce"], rel=1e-5)  # the weighted sum
    else:  # one-cycle stepped by Catalyst's SchedulerCallback after every batch: its step count is the run's
        assert ck["config"]["scheduler"] == "onecycle" and ck["scheduler"]["last_epoch"] == ck["step"] > 2
        assert ck["history"][0]["lr"] != ck["history"][1]["lr"]
    history = json.loads((workdir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    # Catalyst's TensorBoard layout (a folder per loader) with the seglib grid in valid/
    tb = EventAccumulator(str(workdir / "tensorboard" / "valid")).Reload()
    assert "loss/epoch" in tb.Tags()["scalars"] and "miou/epoch" in tb.Tags()["scalars"]
    assert [e.step for e in tb.Images("predictions")] == [1, 2]
    assert list((workdir / "tensorboard" / "train").glob("events.out.tfevents.*"))
    with zipfile.ZipFile(s["predictions"]) as zf:
        preds = [n for n in zf.namelist() if not n.startswith("preview/")]
        assert len(preds) == n_predictions and len(zf.namelist()) == 2 * n_predictions
        m = np.asarray(Image.open(BytesIO(zf.read(preds[0]))))
        assert m.ndim == 2 and m.dtype == np.uint8 and m.max() < n_classes
    return s


@pytest.fixture(autouse=True)
def one_thread_kernel(monkeypatch):
    """One torch thread in the notebook kernel: on a shared 2-core machine oversubscribed threads make each
    training step several times slower (the numbers do not depend on it)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_jetcar_notebook_catalyst_smoke_synthetic(tmp_path):
    out = run_notebook("jetcar_segmentation", {"SMOKE": True, "ENGINE": "catalyst", "ONNX": False,
                                               "EXPERIMENT": "nb_cat_syn", "WORKDIR": str(tmp_path)}, out_dir=tmp_path)
    s = check_catalyst_workdir(tmp_path, 22, 4)
    assert s["data"]["counts"] == {"train": 16, "val": 8, "test": 4}
    text = json.dumps(json.loads(out.read_text()))
    assert "2 epochs done" in text and "image/png" in text and "application/vnd.jupyter.widget-view+json" in text


def test_jetcar_notebook_catalyst_smoke_camvid(tmp_path, camvid):
    run_notebook("jetcar_segmentation", {"SMOKE": True, "ENGINE": "catalyst", "ONNX": False,
                                         "EXPERIMENT": "nb_cat_camvid", "WORKDIR": str(tmp_path), "DATA": str(camvid),
                                         "N_CLASSES": 12,
                                         "IGNORE_INDEX": 11, "AUGMENT": "flip", "RECIPE": "original"}, out_dir=tmp_path)
    s = check_catalyst_workdir(tmp_path, 12, 8, recipe="original")  # no test split in CamVid: the val split is exported
    assert s["data"]["layout"] == "pairs" and len(s["final_metrics"]["iou_per_class"]) == 12
