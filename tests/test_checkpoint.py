"""Atomic checkpoint writes, the kept previous copy, RNG capture and mirroring."""

import os
import random

import numpy as np
import pytest
import torch

from seglib.train.checkpoint import (
    atomic_save,
    clean_stale,
    mirror,
    previous_path,
    rng_state,
    set_rng_state,
)
from seglib.train.ckptfile import load_checkpoint


def test_atomic_save_keeps_previous_and_loads_weights_only(tmp_path):
    p = tmp_path / "ck" / "last.pt"
    atomic_save({"model": {"w": torch.ones(2)}, "epoch": 1}, p, keep_previous=True)
    atomic_save({"model": {"w": torch.zeros(2)}, "epoch": 2}, p, keep_previous=True)
    assert torch.load(p, weights_only=True)["epoch"] == 2
    assert torch.load(previous_path(p), weights_only=True)["epoch"] == 1
    assert sorted(x.name for x in p.parent.iterdir()) == ["last.prev.pt", "last.pt"]


def test_corrupt_last_falls_back_to_previous(tmp_path, capsys):
    p = tmp_path / "last.pt"
    atomic_save({"model": {}, "epoch": 1}, p, keep_previous=True)
    atomic_save({"model": {}, "epoch": 2}, p, keep_previous=True)
    p.write_bytes(b"PK\x03\x04torn copy")
    assert load_checkpoint(p)["epoch"] == 1
    out = capsys.readouterr().out
    assert f"{p} is torn (" in out and "using last.prev.pt instead" in out  # which file, why, what was used
    previous_path(p).write_bytes(b"also torn")
    with pytest.raises(RuntimeError, match="no readable checkpoint.*nothing is deleted"):
        load_checkpoint(p)
    assert p.exists() and previous_path(p).exists()  # nothing lost
    assert load_checkpoint(tmp_path / "none.pt") is None


def test_interrupted_write_leaves_old_file_and_stale_temp_is_cleaned(tmp_path, monkeypatch):
    p = tmp_path / "last.pt"
    atomic_save({"model": {}, "epoch": 1}, p)

    def boom(obj, f, *a, **k):
        f.write(b"half")
        raise KeyboardInterrupt  # the process dies mid-write

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"model": {}, "epoch": 2}, p)
    monkeypatch.undo()
    assert load_checkpoint(p)["epoch"] == 1
    stale = clean_stale(tmp_path)
    assert len(stale) == 1 and ".tmp-" in stale[0].name and not stale[0].exists()


def test_rng_state_roundtrip_through_weights_only_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    atomic_save({"rng": rng_state()}, tmp_path / "r.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    set_rng_state(torch.load(tmp_path / "r.pt", weights_only=True)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_mirror_copies_changed_files_only(tmp_path):
    src, dst = tmp_path / "local", tmp_path / "drive"
    (src / "checkpoints").mkdir(parents=True)
    dst.mkdir()  # WORKDIR exists (mirror creates only folders inside it)
    (src / "tensorboard").mkdir()
    (src / "checkpoints" / "last.pt").write_bytes(b"1" * 100)
    (src / "tensorboard" / "events.1").write_bytes(b"e")
    (src / "checkpoints" / "last.pt.tmp-99").write_bytes(b"partial")
    mirror(src, dst, ["checkpoints/last.pt", "tensorboard", "missing.json"])
    assert (dst / "checkpoints" / "last.pt").read_bytes() == b"1" * 100
    assert (dst / "tensorboard" / "events.1").exists() and not list(dst.rglob("*.tmp-*"))
    before = (dst / "checkpoints" / "last.pt").stat().st_mtime_ns
    mirror(src, dst, ["checkpoints/last.pt"])
    assert (dst / "checkpoints" / "last.pt").stat().st_mtime_ns == before


def test_json_writer_strict_for_summaries_exact_for_state(tmp_path):
    import json

    from seglib.train.checkpoint import atomic_write_json

    obj = {"a": float("nan"), "b": np.float32(0.5), "c": [float("inf"), np.int64(3)], "p": tmp_path}
    strict = json.loads((atomic_write_json(tmp_path / "s.json", obj, strict=True)).read_text())
    assert strict == {"a": None, "b": 0.5, "c": [None, 3], "p": str(tmp_path)}
    back = json.loads(atomic_write_json(tmp_path / "state.json", obj).read_text())
    assert np.isnan(back["a"]) and back["c"][0] == float("inf")
    assert not list(tmp_path.glob("*.tmp-*"))


def test_mirror_never_creates_a_vanished_root_renames_prev_and_copies_a_growing_file_as_opened(tmp_path, monkeypatch):
    import os

    import seglib.train.checkpoint as ck

    src, dst = tmp_path / "local", tmp_path / "drive" / "MyDrive" / "run"
    (src / "checkpoints").mkdir(parents=True)
    (src / "checkpoints" / "last.pt").write_bytes(b"epoch1")
    with pytest.raises(FileNotFoundError, match="no longer exists"):
        mirror(src, dst, ["checkpoints/last.pt"])
    assert not (tmp_path / "drive").exists()  # Drive unmounted: no local stand-in appears
    dst.mkdir(parents=True)
    mirror(src, dst, ["checkpoints/last.pt"])
    # the next save: last.pt becomes last.prev.pt (a hard link) and a new last.pt is written
    os.link(src / "checkpoints" / "last.pt", src / "checkpoints" / "last.prev.pt")
    (src / "checkpoints" / "last.pt.new").write_bytes(b"epoch2!")
    os.replace(src / "checkpoints" / "last.pt.new", src / "checkpoints" / "last.pt")
    copied, real = [], ck._copy_open_file
    monkeypatch.setattr(ck, "_copy_open_file", lambda s, tmp, *a: (copied.append(tmp.name), real(s, tmp, *a)))
    mirror(src, dst, ["checkpoints/last.prev.pt", "checkpoints/last.pt"])
    assert (dst / "checkpoints" / "last.prev.pt").read_bytes() == b"epoch1"  # renamed on the WORKDIR side
    assert (dst / "checkpoints" / "last.pt").read_bytes() == b"epoch2!" and len(copied) == 1  # one upload
    # a file that grows while it is copied (a TensorBoard event file) is copied as it was when opened
    (src / "tensorboard").mkdir()
    events = src / "tensorboard" / "events"
    events.write_bytes(b"a" * 10)
    monkeypatch.setattr(ck, "_copy_open_file", lambda s, tmp, size, m: (events.write_bytes(b"a" * 20),
                                                                        real(s, tmp, size, m)))
    mirror(src, dst, ["tensorboard"])
    assert (dst / "tensorboard" / "events").read_bytes() == b"a" * 10
    monkeypatch.setattr(ck, "_copy_open_file", real)
    mirror(src, dst, ["tensorboard"])  # the next copy brings the rest
    assert (dst / "tensorboard" / "events").read_bytes() == b"a" * 20


def test_a_copy_cut_off_before_last_leaves_tensorboard_at_least_as_far(tmp_path, monkeypatch):
    import seglib.train.checkpoint as ck
    from seglib.train.state import MIRRORED

    src, dst = tmp_path / "local", tmp_path / "drive"
    for rel, data in (("tensorboard/events", b"e1e2"), ("checkpoints/last.pt", b"L2"), ("checkpoints/best.pt", b"B2"),
                      ("history.json", b"[1,2]")):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    dst.mkdir()
    real = ck._copy_open_file

    def killed_at_last(s, tmp, *a):
        if tmp.name.startswith("last.pt"):
            raise OSError("Transport endpoint is not connected")  # the VM goes away during the last.pt copy
        real(s, tmp, *a)

    monkeypatch.setattr(ck, "_copy_open_file", killed_at_last)
    with pytest.raises(OSError):
        mirror(src, dst, MIRRORED)
    assert (dst / "tensorboard" / "events").read_bytes() == b"e1e2" and (dst / "history.json").exists()
    assert not (dst / "checkpoints" / "last.pt").exists() and not list(dst.rglob("*.tmp-*"))


def test_keep_previous_after_a_kill_that_left_last_and_prev_as_one_file(tmp_path):
    """A kill between linking last.pt to last.prev.pt and replacing last.pt leaves the two as hard links of one
    file; the next save must still end with prev = the old checkpoint, last = the new one and no temporary file
    (renaming a link over its twin is a no-op that used to leave last.prev.pt.tmp-<pid> behind)."""
    last, prev = tmp_path / "last.pt", tmp_path / "last.prev.pt"
    atomic_save({"model": {}, "epoch": 1}, last)
    os.link(last, prev)
    atomic_save({"model": {}, "epoch": 2}, last, keep_previous=True)
    assert torch.load(last, weights_only=True)["epoch"] == 2
    assert torch.load(prev, weights_only=True)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.prev.pt", "last.pt"]
