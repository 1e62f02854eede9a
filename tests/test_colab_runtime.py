"""Drive that is really mounted, the fast local folder keyed by WORKDIR, and the GPU warning, under the
``google.colab`` test double (tests/colab_double: ``drive.mount`` binds a temporary folder as Drive)."""

import os
import time

import pytest
import torch
from colab_double.control import FakeDrive

from seglib.runtime import DriveError, ensure_drive, gpu_warning, local_folder, on_drive, workspace


@pytest.fixture
def fake_drive(tmp_path, monkeypatch):
    """A Colab runtime whose Drive is the double's; yields the FakeDrive, unmounted afterwards."""
    fd = FakeDrive(tmp_path)
    for k, v in fd.env().items():
        monkeypatch.setenv(k, v)
    yield fd
    fd.close()


def test_workdir_on_drive_mounts_and_verifies_before_writing(fake_drive):
    workdir = fake_drive.mountpoint / "MyDrive" / "runs" / "a"
    assert on_drive(workdir) and not os.path.ismount(fake_drive.mountpoint)
    ws = workspace("jetcar", workdir)
    assert os.path.ismount(fake_drive.mountpoint)  # a real mount (or the double's patched check; see its docstring)
    assert fake_drive.events()[0]["event"] == "mount" and ws.mirrored
    assert (fake_drive.mydrive / "runs" / "a").is_dir()  # created in "the cloud", not on the VM's disk
    assert ws.local.parent == fake_drive.local and ws.local.name.startswith("a-")
    workspace("jetcar", workdir)  # mounted already: no second mount
    assert len(fake_drive.events()) == 1


def test_double_without_mount_permission_patches_only_ismount(fake_drive, monkeypatch, tmp_path):
    with monkeypatch.context() as m:
        m.setenv("PATH", str(tmp_path / "no-bin"))  # no `mount` command: the double's fallback
        ws = workspace("jetcar", fake_drive.mountpoint / "MyDrive" / "w")
    assert fake_drive.events()[0]["mode"] == "symlink+patched" and os.path.ismount(fake_drive.mountpoint)
    assert (fake_drive.mydrive / "w").is_dir() and ws.workdir.is_dir()
    fake_drive.unmount()
    assert not os.path.ismount(fake_drive.mountpoint) and not fake_drive.mountpoint.exists()


def test_default_workdir_on_colab_is_on_drive(fake_drive):
    ws = workspace("exp")
    assert ws.workdir == fake_drive.mountpoint / "MyDrive" / "seglib" / "exp"
    assert (fake_drive.mydrive / "seglib" / "exp").is_dir()


def test_same_experiment_two_workdirs_never_share_the_local_folder(fake_drive, tmp_path):
    a = workspace("jetcar", fake_drive.mountpoint / "MyDrive" / "one")
    b = workspace("jetcar", fake_drive.mountpoint / "MyDrive" / "two")
    c = workspace("jetcar", tmp_path / "elsewhere" / "one")  # same folder name, other place
    assert len({a.local, b.local, c.local}) == 3
    assert workspace("other_name", fake_drive.mountpoint / "MyDrive" / "one").local == a.local  # keyed by WORKDIR
    assert local_folder(tmp_path / "x" / ".." / "elsewhere" / "one") == c.local  # by the resolved path


def test_declined_mount_stops_with_a_way_forward_and_writes_nothing(fake_drive, monkeypatch):
    monkeypatch.setenv("COLAB_DOUBLE_MOUNT", "decline")
    workdir = fake_drive.mountpoint / "MyDrive" / "seglib" / "jetcar"
    with pytest.raises(DriveError) as e:
        workspace("jetcar", workdir)
    msg = str(e.value)
    assert str(workdir) in msg and "credential propagation was unsuccessful" in msg
    assert "run this cell again" in msg and "WORKDIR" in msg and "local path" in msg
    assert not fake_drive.mountpoint.exists() and not fake_drive.local.exists()


def test_slow_mount_is_waited_for_and_a_timeout_is_a_clear_error(fake_drive, monkeypatch):
    monkeypatch.setenv("COLAB_DOUBLE_MOUNT", "slow:0.5")
    t0 = time.monotonic()
    ensure_drive(fake_drive.mountpoint / "MyDrive" / "data.zip")
    assert time.monotonic() - t0 >= 0.5 and os.path.ismount(fake_drive.mountpoint)
    fake_drive.unmount()
    from google.colab import drive

    monkeypatch.setattr(drive, "mount", lambda mp: (_ for _ in ()).throw(ValueError("mount failed")))
    with pytest.raises(DriveError, match="not mounted \\(ValueError: mount failed\\)"):
        ensure_drive(fake_drive.mountpoint / "MyDrive" / "data.zip")


def test_a_mount_that_does_not_happen_is_caught(fake_drive, monkeypatch):
    from google.colab import drive

    monkeypatch.setattr(drive, "mount", lambda mp: None)  # returns, mounts nothing
    with pytest.raises(DriveError, match="os.path.ismount is False"):
        workspace("jetcar", fake_drive.mountpoint / "MyDrive" / "w")
    assert not fake_drive.mountpoint.exists()


def test_drive_path_without_colab_is_refused_and_nothing_is_created(tmp_path, monkeypatch):
    mount = tmp_path / "content" / "drive"
    monkeypatch.setenv("SEGLIB_DRIVE_MOUNT", str(mount))  # SEGLIB_ENV=local (conftest): not Colab
    workdir = mount / "MyDrive" / "seglib" / "jetcar"
    with pytest.raises(DriveError) as e:
        workspace("jetcar", workdir)
    assert str(workdir) in str(e.value) and "not Colab" in str(e.value) and "local folder" in str(e.value)
    assert not mount.exists()
    assert ensure_drive(tmp_path / "data") == tmp_path / "data"  # not on Drive: nothing to do


def test_mount_point_is_the_documented_default(monkeypatch):
    monkeypatch.delenv("SEGLIB_DRIVE_MOUNT", raising=False)
    assert on_drive("/content/drive/MyDrive/x") and on_drive("/content/drive")
    assert not on_drive("/content/drive2/x") and not on_drive("/content/seglib_local/x")


def test_gpu_warning_on_colab_without_gpu(monkeypatch, capsys):
    assert gpu_warning() is None  # not Colab
    monkeypatch.setenv("SEGLIB_ENV", "colab")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    msg = gpu_warning()
    assert "no GPU" in msg and "Change runtime type" in msg and msg in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert gpu_warning() is None
