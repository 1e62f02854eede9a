"""Tests for seglib.data.synthetic.streets (synthetic JetCar-layout street scenes)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from PIL import Image

from seglib.data.classes import JETCAR_CLASSES, palette
from seglib.data.synthetic.streets import generate_streets, render_street


def _files(root):
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def test_render_shapes_dtypes_and_errors():
    img, mask = render_street(np.random.default_rng(0), 96)
    assert img.shape == (96, 96, 3) and img.dtype == np.uint8
    assert mask.shape == (96, 96) and mask.dtype == np.uint8
    assert mask.max() < 22
    # the image is photo-like, not the mask palette painted over
    pal = palette(22, JETCAR_CLASSES)
    assert np.all(img == pal[mask], axis=-1).mean() < 0.01
    with pytest.raises(ValueError, match="size"):
        render_street(np.random.default_rng(0), 16)


def test_determinism():
    a = render_street(np.random.default_rng([3, 0, 5]), 96)
    b = render_street(np.random.default_rng([3, 0, 5]), 96)
    c = render_street(np.random.default_rng([4, 0, 5]), 96)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    assert a[0].tobytes() != c[0].tobytes() and a[1].tobytes() != c[1].tobytes()


def test_layout(tmp_path):
    root = tmp_path / "jetcar"
    assert generate_streets(root, n_train=6, n_val=3, n_test=2, size=96, seed=1) == root
    files = _files(root)
    expected = {f"DataSet/Img/Train/Img_{i:05d}.jpg" for i in range(6)}
    expected |= {f"DataSet/Mask/Train/Mask_{i:05d}.png" for i in range(6)}
    expected |= {f"DataSet/Img/Val/Img_{i:05d}.jpg" for i in range(3)}
    expected |= {f"DataSet/Mask/Val/Mask_{i:05d}.png" for i in range(3)}
    expected |= {f"DataSet/Img/Test/Img_{i:05d}.jpg" for i in range(2)}
    assert set(files) == expected | {"DataSet/.complete.json"}
    assert not (root / "DataSet" / "Mask" / "Test").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["jetcar"]  # no temporary folder left behind
    for split in ("Train", "Val"):
        for img_path in (root / "DataSet" / "Img" / split).glob("Img_*.jpg"):
            mask_path = root / "DataSet" / "Mask" / split / img_path.name.replace("Img", "Mask").replace(".jpg", ".png")
            with Image.open(img_path) as im, Image.open(mask_path) as mk:
                assert im.mode == "RGB" and mk.mode == "L" and im.size == mk.size == (96, 96)
                assert np.asarray(mk).max() < 22
    meta = json.loads((root / "DataSet" / ".complete.json").read_text())
    assert (meta["n_train"], meta["n_val"], meta["n_test"], meta["size"], meta["seed"]) == (6, 3, 2, 96, 1)


def test_samples_independent_of_counts(tmp_path):
    a = generate_streets(tmp_path / "a", n_train=3, n_val=1, n_test=1, size=64, seed=5)
    b = generate_streets(tmp_path / "b", n_train=5, n_val=2, n_test=0, size=64, seed=5)
    for rel in ("Img/Train/Img_00002.jpg", "Mask/Train/Mask_00002.png", "Img/Val/Img_00000.jpg"):
        assert (a / "DataSet" / rel).read_bytes() == (b / "DataSet" / rel).read_bytes()
    # the stored mask is exactly render_street(default_rng([seed, split_code, i]))
    _, mask = render_street(np.random.default_rng([5, 1, 1]), 64)
    with Image.open(b / "DataSet/Mask/Val/Mask_00001.png") as stored:
        assert np.array_equal(np.asarray(stored), mask)
    assert (a / "DataSet/Img/Train/Img_00000.jpg").read_bytes() != (a / "DataSet/Img/Val/Img_00000.jpg").read_bytes()


def test_class_coverage():
    n, seen, line = 150, np.zeros(22, int), 0
    for i in range(n):
        _, mask = render_street(np.random.default_rng([7, i]), 64)
        present = np.bincount(mask.ravel(), minlength=22) > 0
        seen += present
        line += present[1:5].any()
    assert np.all(seen >= 1), f"classes never drawn: {np.flatnonzero(seen == 0).tolist()}"
    assert np.all(seen[[0, 5, 6]] > 0.9 * n), seen[[0, 5, 6]]
    assert line > 0.9 * n


def test_idempotent_and_param_mismatch(tmp_path):
    root = generate_streets(tmp_path / "ds", n_train=3, n_val=2, n_test=1, size=64, seed=2)
    before = {k: p.stat().st_mtime_ns for k, p in _files(root).items()}
    t0 = time.perf_counter()
    assert generate_streets(tmp_path / "ds", n_train=3, n_val=2, n_test=1, size=64, seed=2) == root
    assert time.perf_counter() - t0 < 0.5
    assert {k: p.stat().st_mtime_ns for k, p in _files(root).items()} == before
    with pytest.raises(FileExistsError, match="delete"):
        generate_streets(root, n_train=4, n_val=2, n_test=1, size=64, seed=2)
    assert {k: p.stat().st_mtime_ns for k, p in _files(root).items()} == before


@pytest.mark.parametrize("kind", ["file_inside", "dataset_without_marker", "plain_file"])
def test_foreign_target_is_untouched(tmp_path, kind):
    root = tmp_path / "mine"
    if kind == "plain_file":
        root.write_text("user data")
    else:
        sub = root / ("DataSet" if kind == "dataset_without_marker" else "notes")
        sub.mkdir(parents=True)
        (sub / "keep.txt").write_text("user data")
    before = {k: p.read_bytes() for k, p in _files(tmp_path).items()}
    with pytest.raises(FileExistsError, match=str(root.name)) as err:
        generate_streets(root, n_train=2, n_val=1, n_test=1, size=64)
    assert "choose another folder" in str(err.value)
    assert {k: p.read_bytes() for k, p in _files(tmp_path).items()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]


def test_empty_folder_is_filled(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    generate_streets(root, n_train=1, n_val=1, n_test=1, size=64)
    assert (root / "DataSet" / ".complete.json").is_file()


def test_speed_report():
    """Prints ms/sample at 224 px (run with -s to see it); not asserted."""
    render_street(np.random.default_rng(0))
    t0 = time.perf_counter()
    for i in range(20):
        render_street(np.random.default_rng([0, 0, i]))
    print(f"\nrender_street: {(time.perf_counter() - t0) / 20 * 1000:.1f} ms/sample at 224 px")
