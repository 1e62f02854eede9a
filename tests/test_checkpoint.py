"""Atomic checkpoint writes, the kept previous copy, RNG capture and mirroring."""

import random

import numpy as np
import pytest
import torch

from seglib.train.checkpoint import (
    atomic_save,
    clean_stale,
    load_checkpoint,
    mirror,
    previous_path,
    rng_state,
    set_rng_state,
)


def test_atomic_save_keeps_previous_and_loads_weights_only(tmp_path):
    p = tmp_path / "ck" / "last.pt"
    atomic_save({"model": {"w": torch.ones(2)}, "epoch": 1}, p, keep_previous=True)
    atomic_save({"model": {"w": torch.zeros(2)}, "epoch": 2}, p, keep_previous=True)
    assert torch.load(p, weights_only=True)["epoch"] == 2
    assert torch.load(previous_path(p), weights_only=True)["epoch"] == 1
    assert sorted(x.name for x in p.parent.iterdir()) == ["last.prev.pt", "last.pt"]


def test_corrupt_last_falls_back_to_previous(tmp_path):
    p = tmp_path / "last.pt"
    atomic_save({"model": {}, "epoch": 1}, p, keep_previous=True)
    atomic_save({"model": {}, "epoch": 2}, p, keep_previous=True)
    p.write_bytes(b"PK\x03\x04torn copy")
    with pytest.warns(UserWarning, match="resumed from .*last.prev.pt"):
        assert load_checkpoint(p)["epoch"] == 1
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
