"""The one write-once mechanism behind the synthetic generators (seglib.data.synthetic.build)."""

import pytest

from seglib.data.synthetic.build import build_once


def _writer(text):
    def write(folder):
        (folder / "data.txt").write_text(text)
    return write


def test_another_process_finishing_first_keeps_its_copy(tmp_path):
    root, params = tmp_path / "ds", {"generator": "test", "n": 1}

    def slow_write(folder):  # while we write, "another process" completes the same dataset
        build_once(root, params, _writer("theirs"))
        (folder / "data.txt").write_text("ours")

    assert build_once(root, params, slow_write) == root
    assert (root / "data.txt").read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # our temporary folder is gone


def test_failed_write_leaves_nothing_and_other_params_refuse(tmp_path):
    root, params = tmp_path / "ds", {"generator": "test", "n": 1}

    def broken(folder):
        (folder / "half.txt").write_text("x")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        build_once(root, params, broken)
    assert list(tmp_path.iterdir()) == []
    build_once(root, params, _writer("a"))
    with pytest.raises(FileExistsError, match="other parameters"):
        build_once(root, {"generator": "test", "n": 2}, _writer("b"))
    assert (root / "data.txt").read_text() == "a"
