"""Every storage fault ends in a clear error and loses nothing (issue 11): a really full disk (a small tmpfs), a
read-only or vanished WORKDIR (the copy says why, training goes on locally, the copy is retried, a vanished Drive
root is never recreated), a read-only local folder (refused before training), checkpoints that hold something else
(named), and a crafted pickle (refused, never run). Tiny U-Net, 8 images of 32 px."""

import os
import shutil
import subprocess

import pytest
import torch
from test_recovery import load, make_run

from seglib.train.checkpoint import StorageError, atomic_save
from seglib.train.ckptfile import CheckpointError
from seglib.train.mirror import MirrorError


@pytest.fixture
def tmpfs(tmp_path):
    """``mount(name, size)``: a real tmpfs of ``size`` at ``tmp_path/name`` (unmounted afterwards); skipped
    where this process may not mount."""
    mounted = []

    def mount(name, size="2m"):
        path = tmp_path / name
        path.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "seglib-test", str(path)],
                          capture_output=True).returncode != 0:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "--lazy", str(path)], check=False)


def remount(path, mode):
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


def fill(folder, leave: int):
    """Fill the disk of ``folder`` up to ``leave`` bytes free; returns the filler file."""
    filler = folder / "filler.bin"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, shutil.disk_usage(folder).free - leave))
    return filler


def test_disk_full_names_the_folder_and_space_deletes_its_partial_file_keeps_the_previous(tmpfs):
    disk = tmpfs("disk", "1m")
    target = disk / "checkpoints" / "last.pt"
    atomic_save({"model": {"w": torch.ones(1000)}, "epoch": 1}, target, keep_previous=True)
    with pytest.raises(StorageError) as err:
        atomic_save({"model": {"w": torch.zeros(500_000)}, "epoch": 2}, target, keep_previous=True)  # 2 MB
    msg = str(err.value)
    assert f"disk full: could not write last.pt in {disk / 'checkpoints'}" in msg
    assert "MB free, about 2.0 MB needed" in msg and "intact" in msg
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.pt"]  # no partial file left
    assert load(target)["epoch"] == 1


def test_disk_full_during_training_stops_clearly_and_resumes_once_space_is_freed(tmpfs, capsys, one_thread):
    disk = tmpfs("run", "2m")
    make_run(disk, epochs=1).train(progress=False, epoch_table=False)
    filler = fill(disk, leave=100_000)  # less than one last.pt (~0.5 MB)
    with pytest.raises(StorageError, match=f"disk full: could not write last.pt in {disk / 'checkpoints'}"):
        make_run(disk, epochs=2).train(progress=False, epoch_table=False)
    ck = disk / "checkpoints"
    assert load(ck / "last.pt")["epoch"] == 1 and not list(disk.rglob("*.tmp-*"))
    filler.unlink()
    capsys.readouterr()
    res = make_run(disk, epochs=2).train(progress=False, epoch_table=False)
    assert res.resumed_from == {"epoch": 2, "batch": 0} and load(ck / "last.pt")["epoch"] == 2


def test_read_only_workdir_training_goes_on_locally_and_the_copy_is_retried(tmp_path, tmpfs, capsys, one_thread):
    work, local = tmpfs("drive"), tmp_path / "local"
    make_run(work, local)  # WORKDIR created
    remount(work, "ro")
    with pytest.raises(MirrorError, match=f"WORKDIR {work} is read-only"):
        make_run(work, local, epochs=2).train(progress=False, epoch_table=False)
    err = capsys.readouterr().err
    assert f"WORKDIR {work} is read-only" in err and "copy is retried" in err  # said at the epoch-2 save
    assert load(local / "checkpoints" / "last.pt")["epoch"] == 2  # both epochs trained and kept locally
    remount(work, "rw")
    res = make_run(work, local, epochs=2).train(progress=False, epoch_table=False)  # Run all again: copies the rest
    assert res.status == "already finished" and load(work / "checkpoints" / "last.pt")["epoch"] == 2


def test_vanished_workdir_is_named_and_never_recreated_locally(tmp_path, capsys, one_thread):
    drive, local = tmp_path / "drive" / "MyDrive", tmp_path / "local"
    work = drive / "seglib" / "run"

    class Unmount:
        def on_epoch_end(self, state, record):
            if record["epoch"] == 1:
                state.sync_workdir()  # the epoch-1 copy arrived, then Drive goes away
                shutil.rmtree(drive)

    run = make_run(work, local, epochs=2)
    with pytest.raises(MirrorError, match=f"WORKDIR {work} no longer exists; is Drive still mounted"):
        run.train(callbacks=[Unmount()], progress=False, epoch_table=False)
    assert not drive.exists()  # no local stand-in for Drive
    assert load(local / "checkpoints" / "last.pt")["epoch"] == 2


def test_read_only_local_folder_fails_before_training(tmpfs):
    disk = tmpfs("ro")
    (disk / "run").mkdir()
    remount(disk, "ro")
    run = make_run(disk / "run")
    with pytest.raises(StorageError, match=f"folder {disk / 'run' / 'checkpoints'} is read-only"):
        run.train(progress=False, epoch_table=False)
    assert run.fit_result is None


@pytest.mark.parametrize("content, says", [
    ("state_dict", "holds a plain state_dict of"),
    ("tensor", "holds a bare tensor of shape (3, 4)"),
    ("no_rng", "missing 'rng'"),
])
def test_foreign_checkpoints_are_named(tmp_path, content, says, one_thread):
    run = make_run(tmp_path / "a", epochs=1)
    run.train(progress=False, epoch_table=False)
    last = load(tmp_path / "a" / "checkpoints" / "last.pt")
    obj = {"state_dict": last["model"], "tensor": torch.zeros(3, 4),
           "no_rng": {k: v for k, v in last.items() if k != "rng"}}[content]
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    torch.save(obj, tmp_path / "b" / "checkpoints" / "last.pt")
    with pytest.raises(CheckpointError) as err:
        make_run(tmp_path / "b", epochs=1).train(progress=False, epoch_table=False)
    msg = str(err.value)
    assert str(tmp_path / "b" / "checkpoints" / "last.pt") in msg and says in msg and "not a seglib checkpoint" in msg
    if content == "state_dict":
        assert f"e.g. {next(iter(last['model']))!r}" in msg
        # as FINE_TUNE_FROM a plain state_dict of this model is simply the weights
        res = make_run(tmp_path / "c", epochs=1).train(progress=False, epoch_table=False,
                                                       fine_tune_from=tmp_path / "b" / "checkpoints" / "last.pt")
        assert res.status == "fresh" and res.fine_tuned_from["epoch"] is None
    if content == "tensor":
        with pytest.raises(CheckpointError, match="cannot fine-tune from .*holds a bare tensor"):
            make_run(tmp_path / "c2", epochs=1).train(progress=False,
                                                      fine_tune_from=tmp_path / "b" / "checkpoints" / "last.pt")


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_is_refused_with_its_name_and_never_runs(tmp_path, one_thread):
    marker = tmp_path / "pwned"
    ck = tmp_path / "w" / "checkpoints"
    ck.mkdir(parents=True)
    torch.save({"model": Payload(marker)}, ck / "last.pt")
    run = make_run(tmp_path / "w", epochs=1)
    with pytest.raises(CheckpointError, match=f"{ck / 'last.pt'} holds objects that safe loading refuses"):
        run.train(progress=False, epoch_table=False)
    torch.save({"model": Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="could run code"):
        make_run(tmp_path / "x", epochs=1).train(progress=False, fine_tune_from=tmp_path / "evil.pt")
    assert not marker.exists()
