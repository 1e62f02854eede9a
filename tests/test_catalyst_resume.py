"""Kill a real Catalyst training process (SIGKILL) mid-epoch and while a checkpoint is being written; the rerun
resumes at the right epoch and batch with optimizer, scheduler, early stopping and RNG restored, and ends
bit for bit where an uninterrupted Catalyst run ends. Each run is a separate process (catalyst_driver.py)."""

import json
from pathlib import Path

import pytest
import torch
from catalyst_testing import catalyst_or_fail
from killing import run_driver

catalyst_or_fail()

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

DRIVER = Path(__file__).with_name("catalyst_driver.py")


def drive(workdir, *args, expect_kill=False):
    return run_driver(DRIVER, workdir, *args, expect_kill=expect_kill)


def load(workdir, name="last.pt"):
    return torch.load(Path(workdir) / "checkpoints" / name, weights_only=True)


def assert_same_run(a, b):
    assert a["epoch"] == b["epoch"] == 3 and a["step"] == b["step"] == 12 and a["catalyst"] == b["catalyst"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        for k in sa:
            assert torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb[k])), k
    assert a["scheduler"] == b["scheduler"]
    assert a["early_stopping"] == b["early_stopping"] and a["best"] == b["best"]

    def strip(hist):  # everything but wall-clock times
        return json.dumps([{k: v for k, v in h.items() if "seconds" not in k} for h in hist])

    assert strip(a["history"]) == strip(b["history"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    ref = tmp_path_factory.mktemp("uninterrupted")
    assert "RESUMED_FROM None EPOCHS 3" in drive(ref)
    ck = load(ref)
    # state that changes between epochs, so that losing any of it on resume shows: the plateau scheduler halved
    # the LR after epochs 2 and 3, val_miou peaked at epoch 1 (best.pt, early-stopping wait 2)
    assert [h["lr"] for h in ck["history"]] == [1e-3, 1e-3, 5e-4]
    assert ck["scheduler"]["_last_lr"] == [1.25e-4, 2.5e-4]
    assert ck["early_stopping"]["wait"] == 2 and ck["best"]["epoch"] == 1 == load(ref, "best.pt")["epoch"]
    return ck


def test_sigkill_mid_epoch_resumes_exactly(tmp_path, reference):
    # checkpoint after every batch; killed right after step 6 (epoch 2, batch 2), before that step is saved
    drive(tmp_path, "--minutes", "0", "--kill-at-step", "6", expect_kill=True)
    killed = load(tmp_path)
    assert (killed["epoch"], killed["batch"], killed["step"]) == (1, 1, 5)  # mid-epoch state on disk
    assert killed["catalyst"]["epoch_step"] == 2  # the runner counters (epoch_step only informational)
    out = drive(tmp_path)
    assert "resumed from" in out and "epoch 2, batch 1/4" in out
    assert "RESUMED_FROM {'epoch': 2, 'batch': 1} EPOCHS 3" in out
    assert_same_run(load(tmp_path), reference)
    assert [h["img_size"] for h in load(tmp_path)["history"]] == [64, 64, 96]  # the schedule, after the resume too


def test_sigkill_during_checkpoint_write_loses_nothing(tmp_path, reference):
    # the 3rd torch.save (saves are last@1, best@1, last@2, ...) dies half-written: epoch 2 is lost, epoch 1 is not
    drive(tmp_path, "--kill-in-save", "3", expect_kill=True)
    ck = tmp_path / "checkpoints"
    assert any(".tmp-" in p.name for p in ck.iterdir())  # the torn temporary file
    killed = load(tmp_path)
    assert (killed["epoch"], killed["batch"]) == (1, 0) and load(tmp_path, "best.pt")["epoch"] == 1
    epoch1 = killed["scheduler"]
    out = drive(tmp_path)
    assert "epoch 2, batch 0/4 (1 epochs done), LR 0.001" in out and "best val_miou" in out
    assert "RESUMED_FROM {'epoch': 2, 'batch': 0} EPOCHS 3" in out
    assert not any(".tmp-" in p.name for p in ck.iterdir())
    final = load(tmp_path)
    assert epoch1["last_epoch"] == 1 and final["scheduler"]["last_epoch"] == 3
    assert_same_run(final, reference)
    assert load(tmp_path, "best.pt")["epoch"] == 1
    # TensorBoard: one value per epoch, the killed run's partial epoch not repeated
    tb = EventAccumulator(str(tmp_path / "tensorboard" / "valid")).Reload()
    assert [e.step for e in tb.Scalars("loss/epoch")] == [1, 2, 3]


def test_early_stopping_agrees_with_seglib_engine_and_survives_resume(tmp_path):
    # val_miou peaks at epoch 1: with patience 1 both engines stop after epoch 2, by seglib's EarlyStopping rule
    # (the rule of best.pt), and write the same early-stopping state
    stopped = {}
    for engine in ("seglib", "catalyst"):
        out = drive(tmp_path / engine, "--engine", engine, "--epochs", 6, "--patience", 1)
        assert "early stopping after epoch 2: no val_miou improvement for 1 epochs" in out
        assert "RESUMED_FROM None EPOCHS 2" in out
        stopped[engine] = load(tmp_path / engine)
    s, c = stopped["seglib"], stopped["catalyst"]
    assert c["early_stopping"] == s["early_stopping"] == {"wait": 1, "best": s["best"]} and c["best"] == s["best"]
    assert s["best"]["epoch"] == 1 == load(tmp_path / "catalyst", "best.pt")["epoch"]
    out = drive(tmp_path / "catalyst", "--epochs", 6, "--patience", 1)
    assert "training already finished (early stopping) after 2 epochs" in out
    # a larger patience trains on; the counter (1) survives the resume: epochs 3 and 4 bring it to 3 and stop
    out = drive(tmp_path / "catalyst", "--epochs", 6, "--patience", 3)
    assert "RESUMED_FROM {'epoch': 3, 'batch': 0} EPOCHS 4" in out
    final = load(tmp_path / "catalyst")
    assert max(h["val_miou"] for h in final["history"][1:]) < final["history"][0]["val_miou"]
    assert final["early_stopping"]["wait"] == 3 and final["best"]["epoch"] == 1
