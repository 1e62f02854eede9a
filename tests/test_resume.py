"""Kill a real training process (SIGKILL) mid-epoch and during a checkpoint write; the resumed run must end
with weights equal (torch.equal) to an uninterrupted run's. Each run is a separate process (resume_driver.py)."""

import json
from pathlib import Path

import pytest
import torch
from killing import run_driver

DRIVER = Path(__file__).with_name("resume_driver.py")


def drive(workdir, *args, expect_kill=False):
    return run_driver(DRIVER, workdir, "synthetic", *args, expect_kill=expect_kill)


def final(workdir):
    return torch.load(Path(workdir) / "checkpoints" / "last.pt", weights_only=True)


def assert_same_run(a, b):
    assert a["epoch"] == b["epoch"] == 3 and a["step"] == b["step"]
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        for k in sa:
            assert torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb[k])), k
    assert a["scheduler"] == b["scheduler"]
    assert a["early_stopping"] == b["early_stopping"] and a["best"] == b["best"]
    def strip(hist):  # NaN-aware comparison of everything but wall-clock times
        return json.dumps([{k: v for k, v in h.items() if "seconds" not in k} for h in hist])

    assert strip(a["history"]) == strip(b["history"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    ref = tmp_path_factory.mktemp("uninterrupted")
    out = drive(ref, "--workers", "2")
    assert "RESUMED_FROM None EPOCHS 3" in out
    return final(ref)


def test_sigkill_mid_epoch_resumes_exactly(tmp_path, reference):
    # checkpoint after every batch; killed right after step 6 (epoch 2, batch 2), before that step is saved
    drive(tmp_path, "--workers", "2", "--minutes", "0", "--kill-at-step", "6", expect_kill=True)
    killed = final(tmp_path)
    assert (killed["epoch"], killed["batch"]) == (1, 1)  # mid-epoch state on disk
    out = drive(tmp_path, "--workers", "2")
    assert "resumed from" in out and "epoch 2, batch 1/4" in out
    assert "RESUMED_FROM {'epoch': 2, 'batch': 1} EPOCHS 3" in out
    assert_same_run(final(tmp_path), reference)
    # the image size changed at epoch 3 as the schedule says, after the resume too
    assert [h["img_size"] for h in final(tmp_path)["history"]] == [64, 64, 96]


def test_sigkill_during_checkpoint_write_loses_nothing(tmp_path, reference):
    # the 3rd torch.save call (the epoch-2 'last' checkpoint here: saves are last@1, best@1, last@2 ...) dies half-written
    drive(tmp_path, "--minutes", "1000", "--kill-in-save", "3", expect_kill=True)
    ck = tmp_path / "checkpoints"
    assert any(".tmp-" in p.name for p in ck.iterdir())  # the torn temporary file
    assert torch.load(ck / "last.pt", weights_only=True)["epoch"] == 1  # the previous checkpoint is intact
    out = drive(tmp_path)
    assert "RESUMED_FROM {'epoch': 2, 'batch': 0} EPOCHS 3" in out
    assert not any(".tmp-" in p.name for p in ck.iterdir())
    assert_same_run(final(tmp_path), reference)
