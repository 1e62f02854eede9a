"""The notebooks' Colab branches, headless in SMOKE mode under the ``google.colab`` test double: Drive mounted
(for real, see tests/colab_double) and verified, results mirrored to Drive, and for the JetCar notebook a
disconnect -- the kernel SIGKILLed mid-training, the local folder deleted, Drive unmounted -- after which Run all
again restores from Drive alone and ends with the weights of an uninterrupted run.

The full kill/restore runs for the JetCar notebook only (the other two share the same workspace, checkpoint and
mirror code; each gets a mount + mirror run), to keep ``make test`` short."""

import json
import os
import shutil
import signal
import threading
import time

import pytest
import torch
from colab_double.control import FakeDrive

from seglib.nbrun import run_notebook

pytestmark = pytest.mark.slow
JETCAR = {"SMOKE": True, "EXPERIMENT": "colab_jetcar", "CHECKPOINT_MINUTES": 0.0005, "CPU_THREADS": 1,
          "ONNX": False}  # the ONNX export is checked by test_notebook_jetcar / test_onnx_export


@pytest.fixture
def colab(tmp_path, monkeypatch):
    """Colab under the double for this test's notebook kernels (they inherit the environment)."""
    fd = FakeDrive(tmp_path / "colab")
    for k, v in fd.env().items():
        monkeypatch.setenv(k, v)
    yield fd
    fd.close()


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def run_and_disconnect(colab: FakeDrive, out_dir, drive_seglib):
    """Run the JetCar notebook; SIGKILL its kernel as soon as a checkpoint is on Drive (in ``drive_seglib``'s one
    run folder). Returns the epoch and batch of that checkpoint."""
    failure = []
    t = threading.Thread(target=lambda: failure.append(_run(JETCAR, out_dir)))
    t.start()
    deadline = time.monotonic() + 600
    found = []
    while not found and t.is_alive() and time.monotonic() < deadline:
        found = list(drive_seglib.glob("*/checkpoints/last.pt"))
        time.sleep(0.02)
    assert found and t.is_alive(), "no checkpoint reached Drive while the notebook ran"
    os.kill(colab.events()[0]["pid"], signal.SIGKILL)  # the kernel that mounted Drive: a disconnect
    t.join(120)
    assert failure and failure[0] is not None, "the killed notebook should not have finished"
    ck = torch.load(found[0], map_location="cpu", weights_only=True)
    return ck["epoch"], ck["batch"]


def _run(params, out_dir):
    try:
        run_notebook("jetcar_segmentation", params, out_dir=out_dir)
    except Exception as err:  # noqa: BLE001 - the dead kernel's error is what we expect
        return err
    return None


def test_jetcar_on_colab_survives_a_disconnect_with_drive_alone(tmp_path, colab, monkeypatch):
    with monkeypatch.context() as m:  # the uninterrupted reference, off Colab
        m.setenv("SEGLIB_ENV", "local")
        run_notebook("jetcar_segmentation", {**JETCAR, "WORKDIR": str(tmp_path / "ref")}, out_dir=tmp_path / "ref")
    reference = weights(tmp_path / "ref" / "checkpoints" / "last.pt")

    drive_seglib = colab.mydrive / "seglib"  # WORKDIR=None on Colab: MyDrive/seglib/<experiment>[_synthetic]
    epoch, batch = run_and_disconnect(colab, tmp_path / "nb1", drive_seglib)
    (drive_run,) = drive_seglib.iterdir()
    assert colab.events()[0]["mode"] in ("bind", "bind+patched", "symlink+patched")
    assert (epoch, batch) < (2, 0), f"the disconnect came after training ended ({epoch}, {batch})"
    shutil.rmtree(colab.local)  # the VM is gone: its local disk ...
    colab.unmount()  # ... and its Drive mount

    out = run_notebook("jetcar_segmentation", JETCAR, out_dir=tmp_path / "nb2")  # Run all again
    assert len(colab.events()) == 2 and os.path.ismount(colab.mountpoint)
    text = json.dumps(json.loads(out.read_text()))
    assert "resumed from" in text.lower()
    summary = json.loads((drive_run / "summary.json").read_text())
    assert summary["resumed_from"] and summary["epochs_completed"] == 2
    got = weights(drive_run / "checkpoints" / "last.pt")
    assert got.keys() == reference.keys() and all(torch.equal(got[k], reference[k]) for k in got)
    for rel in ("checkpoints/best.pt", "history.json", "predictions.zip"):
        assert (drive_run / rel).is_file(), rel
    assert list((drive_run / "tensorboard").rglob("events.out.tfevents.*"))


def test_depth_notebook_on_colab_mounts_drive_and_mirrors(tmp_path, colab):
    run_notebook("depth_segmentation", {"SMOKE": True, "EXPERIMENT": "colab_depth", "CPU_THREADS": 1},
                 out_dir=tmp_path)
    (run,) = (colab.mydrive / "seglib").iterdir()  # WORKDIR=None on Colab: MyDrive/seglib/<experiment>[_synthetic]
    assert len(colab.events()) == 1 and json.loads((run / "summary.json").read_text())["epochs_completed"] >= 1
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "predictions.zip").is_file()
    (local,) = colab.local.iterdir()  # the fast local folder, keyed by WORKDIR
    assert local.name.startswith(run.name + "-") and (local / "checkpoints" / "last.pt").is_file()


def test_study_notebook_on_colab_mounts_drive_and_mirrors(tmp_path, colab):
    run_notebook("hyperparameter_study", {"SMOKE": True, "EXPERIMENT": "colab_hparam", "LR_SEARCH": False,
                                          "STUDIES": ["dropout"], "CPU_THREADS": 1}, out_dir=tmp_path)
    (run,) = (colab.mydrive / "seglib").iterdir()
    assert len(colab.events()) == 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best"] and summary["trials"]
    assert len(list((run / "trials" / "dropout").glob("*/checkpoints/best.pt"))) == len(summary["trials"])
