"""Nothing lost on resume (issue 11): the kill window between last.pt and best.pt (a real SIGKILL), best.pt rebuilt,
moved aside or the record corrected, the recovery order local/WORKDIR last.pt/last.prev.pt, the warm restart from
best.pt, stale temporary files, and evaluation with a torn best.pt. Tiny U-Net, 8 images of 32 px, 2 batches/epoch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seglib.config import TrainConfig
from seglib.segmentation import SegmentationRun

SYN = {"n_train": 8, "n_val": 4, "n_test": 2, "size": 64}
TINY = {"model": "unet", "model_kwargs": {"width_divisor": 32, "batchnorm": True}}


def make_run(workdir, local=None, **kw):
    cfg = TrainConfig(**{"experiment": "rec", "img_size": 32, "batch_size": 4, "epochs": 2, "encoder_weights": None,
                         "num_workers": 0, "log_images": 0, "checkpoint_minutes": 1000, **TINY, **kw})
    run = SegmentationRun(cfg, "synthetic", workdir=workdir, local=local, synthetic_kwargs=SYN)
    run.prepare(check=False)
    return run


def load(path):
    return torch.load(path, weights_only=True)


def tear(path: Path, newer: bool = False):
    """Cut ``path`` to half its bytes (an interrupted Drive copy); ``newer``: its mtime 1 h later."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    if newer:
        t = path.stat().st_mtime + 3600
        os.utime(path, (t, t))


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


KILLED = """
import sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from test_recovery import make_run
make_run({workdir!r}, {local!r}, epochs=2).train(progress=False, epoch_table=False)
"""


def killed_run(workdir, local, fault):
    """Train 2 epochs in a subprocess that ``SEGLIB_FAULT_AT=fault`` SIGKILLs."""
    env = dict(os.environ, SEGLIB_FAULT_AT=fault, HF_HUB_OFFLINE="1", SEGLIB_ENV="local")
    code = KILLED.format(tests=str(Path(__file__).parent), workdir=str(workdir), local=str(local) if local else None)
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == -9, p.stdout + p.stderr


def test_kill_between_last_and_best_rebuilds_best_and_the_summary_describes_one_file(tmp_path, capsys, one_thread):
    # epoch 1 always improves: SIGKILL at its save, after last.pt (the commit point), before best.pt
    killed_run(tmp_path / "w", None, "save.between:1")
    ck = tmp_path / "w" / "checkpoints"
    last = load(ck / "last.pt")
    assert (last["epoch"], last["batch"], last["best"]["epoch"]) == (1, 0, 1) and not (ck / "best.pt").exists()
    make_run(tmp_path / "w", epochs=2).trainer(progress=False).restore()
    assert "best.pt of epoch 1 was missing; rebuilt from last.pt" in capsys.readouterr().out
    assert load(ck / "best.pt")["epoch"] == 1 and same_weights(load(ck / "best.pt")["model"], last["model"])
    run = make_run(tmp_path / "w", epochs=2)
    res = run.train(progress=False, epoch_table=False)
    best = load(ck / "best.pt")
    assert best["epoch"] == res.best["epoch"] == load(ck / "last.pt")["best"]["epoch"]
    final = run.evaluate()
    summary = json.loads(run.write_summary().read_text())
    assert summary["best"]["epoch"] == summary["evaluated"]["epoch"] == best["epoch"] and summary["note"] is None
    assert Path(summary["best_checkpoint"]).is_file()
    record = res.history[best["epoch"] - 1]
    assert final["loss"] == pytest.approx(record["val_loss"], abs=1e-5)  # that epoch's history record
    ref = make_run(tmp_path / "ref", epochs=2).train(progress=False, epoch_table=False)
    assert same_weights(load(ck / "last.pt")["model"], load(tmp_path / "ref" / "checkpoints" / "last.pt")["model"])
    assert ref.best == res.best  # bit-equal to an uninterrupted run, same best


def test_stale_best_is_rebuilt_and_lost_best_corrects_the_record(tmp_path, capsys, one_thread):
    run = make_run(tmp_path, epochs=1)
    run.train(progress=False, epoch_table=False)
    ck = tmp_path / "checkpoints"
    old_best = (ck / "best.pt").read_bytes()
    res = make_run(tmp_path, epochs=2).train(progress=False, epoch_table=False)
    assert res.best["epoch"] == 2  # val_loss improves at epoch 2 (seeded)
    (ck / "best.pt").write_bytes(old_best)  # a kill between the writes of epoch 2: best.pt still of epoch 1
    capsys.readouterr()
    tr = make_run(tmp_path, epochs=3).trainer(progress=False)
    tr.restore()
    assert "best.pt of epoch 2 was stale (epoch 1); rebuilt from last.pt" in capsys.readouterr().out
    assert load(ck / "best.pt")["epoch"] == 2 and tr.best.epoch == 2
    # the expected best weights are gone and last.pt is mid-epoch: the record says "no best yet", loudly
    ckpt = load(ck / "last.pt")
    ckpt.update(epoch=2, batch=1, best={"monitor": "val_loss", "value": 0.1, "epoch": 1})
    torch.save(ckpt, ck / "last.pt")
    (ck / "best.pt").unlink()
    tr = make_run(tmp_path, epochs=3).trainer(progress=False)
    tr.restore()
    out = capsys.readouterr().out
    assert "WARNING: the best model of epoch 1 (val_loss 0.1) is lost: best.pt is missing" in out
    assert "corrected to no best yet" in out and tr.best.epoch is None and tr.best.value is None
    assert tr.result().best_checkpoint is None


def test_best_from_a_lost_future_is_moved_aside(tmp_path, capsys, one_thread):
    make_run(tmp_path, epochs=2).train(progress=False, epoch_table=False)
    ck = tmp_path / "checkpoints"
    future = load(ck / "best.pt")
    tear(ck / "last.pt")  # resume falls back to last.prev.pt (end of epoch 1); best.pt is of epoch 2
    capsys.readouterr()
    tr = make_run(tmp_path, epochs=2).trainer(progress=False)
    tr.restore()
    out = capsys.readouterr().out
    assert "local last.pt is torn (" in out and "resumed from local last.prev.pt" in out
    assert "holds epoch 2, after the checkpoint resumed from (epoch 1): a lost future; moved aside" in out
    assert same_weights(load(ck / "best.epoch2.orphan.pt")["model"], future["model"])  # kept, not deleted
    assert tr.epoch == 1 and load(ck / "best.pt")["epoch"] == tr.best.epoch == 1
    assert (ck / "last.pt.torn").exists() and load(ck / "last.pt")["epoch"] == 1


def test_torn_workdir_last_never_replaces_a_good_local_one(tmp_path, capsys, one_thread):
    local, work = tmp_path / "local", tmp_path / "work"
    make_run(work, local, epochs=1).train(progress=False, epoch_table=False)
    remote = work / "checkpoints" / "last.pt"
    assert (work / "checkpoints" / "last.pt").read_bytes() == (local / "checkpoints" / "last.pt").read_bytes()
    good = (local / "checkpoints" / "last.pt").read_bytes()
    tear(remote, newer=True)  # a torn, newer Drive copy
    capsys.readouterr()
    tr = make_run(work, local, epochs=2).trainer(progress=False)
    tr.restore()
    out = capsys.readouterr().out
    assert "WORKDIR last.pt is torn (" in out and "resumed from local last.pt" in out
    assert (local / "checkpoints" / "last.pt").read_bytes() == good and tr.epoch == 1
    assert not list((local / "checkpoints").glob("*.tmp-*"))  # the verified-copy attempt left nothing


def test_new_vm_with_torn_workdir_last_resumes_from_workdir_prev(tmp_path, capsys, one_thread):
    work = tmp_path / "work"
    make_run(work, tmp_path / "vm1", epochs=2).train(progress=False, epoch_table=False)
    wc = work / "checkpoints"
    assert load(wc / "last.prev.pt")["epoch"] == 1  # last.prev.pt is mirrored
    tear(wc / "last.pt")
    capsys.readouterr()
    tr = make_run(work, tmp_path / "vm2", epochs=2).trainer(progress=False)  # a new VM: empty local folder
    tr.restore()
    out = capsys.readouterr().out
    assert "WORKDIR last.pt is torn (" in out and "resumed from WORKDIR last.prev.pt" in out
    assert tr.epoch == 1 and load(tmp_path / "vm2" / "checkpoints" / "last.pt")["epoch"] == 1
    assert list((tmp_path / "vm2" / "tensorboard").iterdir())  # TensorBoard came with it
    assert load(tmp_path / "vm2" / "checkpoints" / "best.pt")["epoch"] == tr.best.epoch


def test_only_best_readable_is_a_warm_restart(tmp_path, capsys, one_thread):
    make_run(tmp_path, epochs=2).train(progress=False, epoch_table=False)
    ck = tmp_path / "checkpoints"
    best = load(ck / "best.pt")
    tear(ck / "last.pt")
    tear(ck / "last.prev.pt")
    capsys.readouterr()
    res = make_run(tmp_path, epochs=3).train(progress=False, epoch_table=False)
    out = capsys.readouterr().out
    assert f"warm restart from {ck / 'best.pt'} (epoch {best['epoch']}" in out and "not bit-exact" in out
    assert "local last.pt is torn" in out and "local last.prev.pt is torn" in out
    assert res.status == "resumed" and res.resumed_from == {"epoch": best["epoch"] + 1, "batch": 0}
    assert [h["epoch"] for h in res.history] == list(range(1, 4)) and res.epochs_completed == 3
    assert (ck / "last.pt.torn").exists()


def test_stale_temporaries_are_cleaned_locally_and_in_workdir(tmp_path, one_thread):
    local, work = tmp_path / "local", tmp_path / "work"
    make_run(work, local, epochs=1).train(progress=False, epoch_table=False)
    stale = [root / rel for root in (local, work) for rel in
             ("checkpoints/last.pt.tmp-4242", "tensorboard/events.out.tmp-4242", "history.json.tmp-4242")]
    for p in stale:
        p.write_bytes(b"partial")
    make_run(work, local, epochs=1).trainer(progress=False).restore()
    assert not any(p.exists() for p in stale)


def test_torn_best_falls_back_to_last_for_evaluation(tmp_path, capsys, one_thread):
    run = make_run(tmp_path, epochs=1)
    run.train(progress=False, epoch_table=False)
    tear(tmp_path / "checkpoints" / "best.pt")
    capsys.readouterr()
    scores = run.evaluate()
    out = capsys.readouterr().out
    assert "best.pt is torn (" in out and "using last.pt (epoch 1) instead" in out and scores["loss"] > 0
    summary = run.summary()
    assert summary["best"] is None and summary["best_checkpoint"] is None and "no readable best.pt" in summary["note"]
    assert summary["evaluated"]["checkpoint"].endswith("last.pt")


def test_kill_while_best_is_copied_to_drive_loses_no_tensorboard_epoch_on_a_new_vm(tmp_path, capsys, one_thread):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    work = tmp_path / "work"
    # epoch 1's copy to WORKDIR: TensorBoard, history.json, last.pt, then best.pt, killed half-way (4th copy)
    killed_run(work, tmp_path / "vm1", "mirror.mid_copy:4")
    wc = work / "checkpoints"
    assert load(wc / "last.pt")["epoch"] == 1 and not (wc / "best.pt").exists() and list(wc.glob("best.pt.tmp-*"))
    run = make_run(work, tmp_path / "vm2", epochs=2)  # a new VM: Drive alone
    res = run.train(progress=False, epoch_table=False)
    out = capsys.readouterr().out
    assert "resumed from WORKDIR last.pt" in out and "best.pt of epoch 1 was missing; rebuilt from last.pt" in out
    assert res.resumed_from == {"epoch": 2, "batch": 0} and not list(work.rglob("*.tmp-*"))
    steps = []
    for f in sorted((work / "tensorboard").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f))
        acc.Reload()
        steps += [e.step for e in acc.Scalars("val/loss")] if "val/loss" in acc.Tags()["scalars"] else []
    assert sorted(steps) == [1, 2]  # epoch 1 came to Drive before its last.pt did; no step twice
    assert load(wc / "best.pt")["epoch"] == res.best["epoch"]
