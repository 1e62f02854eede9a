"""One run, one identity: a WORKDIR's checkpoints record their data; a resume on other data stops before training,
FINE_TUNE_FROM starts a new run from another run's weights, a finished run says so once, best.pt is slim, the copy
to WORKDIR runs in the background without losing errors, and synthetic demos get folders of their own."""

import json
import threading

import pytest
import torch

import seglib.train.mirror as mirror_module
from seglib.config import TrainConfig
from seglib.experiment import experiment_name
from seglib.segmentation import SegmentationRun
from seglib.train.identity import DataMismatch, FineTuneError
from seglib.train.mirror import BackgroundCopy, MirrorError

SYN = {"n_train": 8, "n_val": 4, "n_test": 2, "size": 64}


def make_run(workdir, syn=SYN, local=None, **kw):
    cfg = TrainConfig(**{"experiment": "ident", "img_size": 32, "batch_size": 4, "epochs": 1, "encoder_weights": None,
                         "num_workers": 0, "log_images": 0, **kw})
    run = SegmentationRun(cfg, "synthetic", workdir=workdir, local=local, synthetic_kwargs=syn)
    run.prepare(check=False)
    return run


def test_other_data_on_an_existing_workdir_stops_before_training(tmp_path, capsys, one_thread):
    first = make_run(tmp_path / "w")
    first.train(progress=False, epoch_table=False)
    ck = tmp_path / "w" / "checkpoints" / "last.pt"
    saved = torch.load(ck, weights_only=True)["data"]
    assert saved == first.data_fingerprint() and len(saved["id"]) == 8 and saved["counts"]["train"] == 8
    before = ck.read_bytes()
    other = make_run(tmp_path / "w", syn={**SYN, "n_train": 10})  # only DATA changed
    now = other.data_fingerprint()["id"]
    assert now != saved["id"]
    with pytest.raises(DataMismatch) as err:
        other.train(progress=False, epoch_table=False)
    msg = str(err.value)
    assert saved["id"] in msg and now in msg and str(tmp_path / "w") in msg
    assert "set WORKDIR (or EXPERIMENT) to a new folder" in msg and "FINE_TUNE_FROM=" in msg
    assert "already finished" not in capsys.readouterr().out  # no word of the old model as if it were this run
    assert ck.read_bytes() == before and other.fit_result is None


def test_fine_tune_starts_a_new_run_from_the_weights_and_resumes_as_itself(tmp_path, capsys, one_thread):
    old = make_run(tmp_path / "old")
    old.train(progress=False, epoch_table=False)
    best = torch.load(tmp_path / "old" / "checkpoints" / "best.pt", weights_only=True)
    new = make_run(tmp_path / "new", syn={**SYN, "n_train": 10}, epochs=2)
    tr = new.trainer(progress=False, fine_tune_from=tmp_path / "old")
    tr.restore()
    assert all(torch.equal(v, best["model"][k]) for k, v in tr.model.state_dict().items())
    assert tr.epoch == 0 and tr.status == "fresh" and not tr.optimizer.state  # fresh optimizer, epoch 0
    assert "fine-tuning: a new run from the weights of" in capsys.readouterr().out
    res = new.train(progress=False, epoch_table=False, fine_tune_from=tmp_path / "old")
    source = str((tmp_path / "old" / "checkpoints" / "best.pt").resolve())
    assert res.status == "fresh" and res.resumed_from is None and res.epochs_completed == 2
    assert res.fine_tuned_from["path"] == source and res.fine_tuned_from["data"]["id"] == best["data"]["id"]
    ck = torch.load(tmp_path / "new" / "checkpoints" / "last.pt", weights_only=True)
    assert ck["step"] == 2 * 3 and ck["data"]["id"] == new.data_fingerprint()["id"]  # 10 images, batch 4: 3 steps
    # Run all again with FINE_TUNE_FROM still set: the fine-tuning run resumes, not restarts
    again = make_run(tmp_path / "new", syn={**SYN, "n_train": 10}, epochs=3)
    res = again.train(progress=False, epoch_table=False, fine_tune_from=tmp_path / "old")
    assert res.status == "resumed" and res.resumed_from == {"epoch": 3, "batch": 0}
    assert res.fine_tuned_from["path"] == source
    summary = json.loads(again.write_summary().read_text())
    assert summary["status"] == "resumed" and summary["fine_tuned_from"]["path"] == source
    # a WORKDIR that holds another run, or the source's own WORKDIR, is refused
    with pytest.raises(FineTuneError, match="already holds another run.*trained from scratch"):
        make_run(tmp_path / "old", epochs=2).train(progress=False, fine_tune_from=tmp_path / "new")
    with pytest.raises(FineTuneError, match="no checkpoint found"):
        make_run(tmp_path / "x").train(progress=False, fine_tune_from=tmp_path / "missing")


def test_finished_run_says_so_once_and_summary_status(tmp_path, capsys, one_thread):
    run = make_run(tmp_path)
    run.train(progress=False, epoch_table=False)
    assert json.loads(run.write_summary().read_text())["status"] == "fresh"
    capsys.readouterr()
    again = make_run(tmp_path)
    res = again.train(progress=False, epoch_table=False)
    out = capsys.readouterr().out
    assert out.count("training already finished") == 1 and "resumed from" not in out
    assert str(tmp_path / "checkpoints" / "last.pt") in out
    assert res.status == "already finished" and res.resumed_from is None
    summary = json.loads(again.write_summary().read_text())
    assert summary["status"] == "already finished" and summary["resumed_from"] is None
    assert summary["data"]["fingerprint"] == again.data_fingerprint()["id"]


def test_best_checkpoint_holds_weights_config_metrics_and_data_only(tmp_path, one_thread):
    run = make_run(tmp_path)
    run.train(progress=False, epoch_table=False)
    ck = tmp_path / "checkpoints"
    best, last = (torch.load(ck / n, weights_only=True) for n in ("best.pt", "last.pt"))
    assert {"optimizer", "scheduler", "scaler", "rng", "train_acc"}.isdisjoint(best)
    assert {"model", "config", "best", "last_val", "data", "epoch"} <= set(best) and "optimizer" in last
    assert (ck / "best.pt").stat().st_size < (ck / "last.pt").stat().st_size
    model = run.load_model("best")
    assert all(torch.equal(v.cpu(), best["model"][k]) for k, v in model.state_dict().items())
    assert run.evaluate()["miou"] == pytest.approx(best["last_val"]["miou"], abs=1e-6)


def test_background_copy_does_not_block_and_waits(tmp_path, monkeypatch):
    (tmp_path / "local").mkdir()
    (tmp_path / "drive").mkdir()  # WORKDIR exists: mirror never creates it
    (tmp_path / "local" / "a.bin").write_bytes(b"x" * 10)
    release, started = threading.Event(), threading.Event()
    real = mirror_module.mirror

    def slow_mirror(*args):
        started.set()
        release.wait(10)
        real(*args)

    monkeypatch.setattr(mirror_module, "mirror", slow_mirror)
    copier = BackgroundCopy(tmp_path / "local", tmp_path / "drive", ["a.bin"])
    copier.request()  # returns while the copy is held
    assert started.wait(10) and not (tmp_path / "drive" / "a.bin").exists()
    copier.request()  # merged into one more copy after the running one
    threading.Timer(0.2, release.set).start()
    copier.wait()
    assert (tmp_path / "drive" / "a.bin").read_bytes() == b"x" * 10 and copier.copies == 2


def test_background_copy_errors_are_reported_retried_and_never_tear_a_good_file(tmp_path, monkeypatch, capsys):
    import seglib.train.checkpoint as ck

    local, drive = tmp_path / "local", tmp_path / "drive"
    local.mkdir()
    (local / "last.pt").write_bytes(b"new" * 1000)
    drive.mkdir()
    (drive / "last.pt").write_bytes(b"good")
    real = ck._copy_open_file

    def drive_gone(src, tmp, size, mbps):
        tmp.write_bytes(b"ne")  # half a copy, then the drive disconnects
        raise OSError("Transport endpoint is not connected")

    monkeypatch.setattr(ck, "_copy_open_file", drive_gone)
    copier = BackgroundCopy(local, drive, ["last.pt"])
    copier.request()
    with pytest.raises(MirrorError, match="Transport endpoint.*local folder"):
        copier.wait()
    assert (drive / "last.pt").read_bytes() == b"good" and [p.name for p in drive.iterdir()] == ["last.pt"]
    copier.request()  # the next save reports the error and retries
    copier.wait(raise_errors=False)
    assert "copying" in capsys.readouterr().err
    monkeypatch.setattr(ck, "_copy_open_file", real)
    copier.request()
    copier.wait()
    assert (drive / "last.pt").read_bytes() == b"new" * 1000 and copier.error is None


def test_synthetic_demo_runs_under_its_own_name(tmp_path, monkeypatch):
    assert experiment_name("jetcar", "synthetic") == "jetcar_synthetic"
    assert experiment_name("jetcar", "synthetic:streets") == "jetcar_synthetic"
    assert experiment_name("demo_jetcar", "synthetic") == "demo_jetcar"  # seglib.nbrun's demo names
    assert experiment_name("jetcar", "/data/jetcar.zip") == "jetcar"
    monkeypatch.chdir(tmp_path)
    cfg = TrainConfig(experiment="jetcar", encoder_weights=None)
    assert SegmentationRun(cfg, "synthetic").ws.workdir.resolve() == (tmp_path / "runs" / "jetcar_synthetic").resolve()
    assert SegmentationRun(cfg, str(tmp_path)).ws.workdir.name == "jetcar"
