"""The JetCar notebook executed headless (papermill) in SMOKE mode on the synthetic default and on CamVid."""

import json
import zipfile
from io import BytesIO

import numpy as np
import pytest
import torch
from PIL import Image

from seglib.nbrun import run_notebook

SUMMARY_KEYS = {"notebook", "data", "epochs_completed", "resumed_from", "best", "final_metrics", "seconds",
                "checkpoint", "predictions", "tensorboard"}


def check_workdir(workdir, n_classes, n_predictions, prefix):
    s = json.loads((workdir / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(s)
    assert s["notebook"] == "jetcar_segmentation" and s["epochs_completed"] == 2 and s["resumed_from"] is None
    assert s["best"]["metric"] == s["config"]["monitor"] and s["best"]["epoch"] in (1, 2)
    fm = s["final_metrics"]
    assert {"loss", "miou", "dice", "pixel_accuracy"} <= set(fm) and 0 <= fm["miou"] <= 1
    # the final evaluation of best.pt reproduces the validation numbers of its epoch
    ck = torch.load(workdir / "checkpoints" / "last.pt", weights_only=True)
    best_epoch = ck["history"][s["best"]["epoch"] - 1]
    assert fm["miou"] == pytest.approx(best_epoch["val_miou"], abs=1e-6)
    assert fm["loss"] == pytest.approx(best_epoch["val_loss"], rel=1e-4)
    assert "model" in ck and ck["config"]["n_classes"] == n_classes
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    with zipfile.ZipFile(s["predictions"]) as zf:
        names = zf.namelist()
        preds = [n for n in names if not n.startswith("preview/")]
        assert len(preds) == n_predictions and all(n.startswith(prefix) and n.endswith(".png") for n in preds)
        assert len(names) == 2 * n_predictions
        m = np.asarray(Image.open(BytesIO(zf.read(preds[0]))))
        assert m.ndim == 2 and m.dtype == np.uint8 and m.max() < n_classes
    return s


def test_jetcar_notebook_smoke_synthetic(tmp_path):
    out = run_notebook("jetcar_segmentation", {"SMOKE": True, "EXPERIMENT": "nb_syn", "WORKDIR": str(tmp_path)},
                       out_dir=tmp_path)
    s = check_workdir(tmp_path, 22, 4, "Pred_")
    assert s["data"]["layout"] == "jetcar" and s["data"]["counts"] == {"train": 16, "val": 8, "test": 4}
    nb = json.loads(out.read_text())
    assert all(c.get("outputs") is not None for c in nb["cells"] if c["cell_type"] == "code")
    text = json.dumps(nb)
    assert "train: 16 images, val: 8 images, test: 4 images" in text and "image/png" in text
    assert (tmp_path / "model.onnx").is_file() and "pixels agree" in text  # ONNX next to the predictions
    viewer = next(c for c in nb["cells"] if "viewer.show()" in "".join(c["source"]))
    assert any("image/png" in o.get("data", {}) for o in viewer["outputs"])  # saved without widget state: a picture


def test_jetcar_notebook_smoke_camvid(tmp_path, camvid):
    run_notebook("jetcar_segmentation", {"SMOKE": True, "EXPERIMENT": "nb_camvid", "WORKDIR": str(tmp_path),
                                         "DATA": str(camvid), "N_CLASSES": 12, "IGNORE_INDEX": 11,
                                         "AUGMENT": "flip", "ONNX": False, "DEVICES": 2}, out_dir=tmp_path)
    s = check_workdir(tmp_path, 12, 8, "Pred_0")  # no test split in CamVid: the val split is exported
    last = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)  # DDP from the notebook (issue 15)
    assert last["world_size"] == 2 and [r["rank"] for r in last["ranks"]] == [0, 1]
    assert s["data"]["layout"] == "pairs"
    assert set(s["final_metrics"]["iou_per_class"]) == {"Sky", "Building", "Pole", "Road", "Pavement", "Tree",
                                                         "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
                                                         "Unlabelled"}


@pytest.mark.parametrize("name", ["jetcar_segmentation", "depth_segmentation", "hyperparameter_study"])
def test_papermill_reads_every_parameter_of_the_parameters_cell(name):
    """papermill (``--help-notebook``, parameter injection) parses each ``NAME = value  # comment`` line of the
    tagged cell; a comment holding ``=`` or ``>=`` made it skip the line with "Unable to parse line"."""
    from pathlib import Path

    from papermill.translators import PythonTranslator

    nb = json.loads((Path(__file__).resolve().parents[1] / "notebooks" / f"{name}.ipynb").read_text())
    (cell,) = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    src = "".join(cell["source"])
    assigned = {line.split("=")[0].strip() for line in src.splitlines() if line[:1].isupper() and "=" in line}
    assert {p.name for p in PythonTranslator.inspect({"source": src})} == assigned
