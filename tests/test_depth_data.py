"""Issue 3: depth layouts, the depth convention on the real files, bad input, the synthetic generator."""

import csv
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, need
from PIL import Image

import seglib.data.depth as depth_mod
from seglib.data.depth import DepthSegDataset, load_sample, read_binary_mask, read_depth
from seglib.data.depth_layouts import DEPTH_LAYOUTS, detect_depth_layout, load_depth_splits
from seglib.data.io import DataError
from seglib.data.synthetic.depth_scenes import generate_depth_scenes
from seglib.depthseg import DepthSegRun, depth_config

EVA = SHARED_DATA / "eva_fgbg_samples"
RGBD = SHARED_DATA / "rgbd_sod_mix"


def _all(root, layout, **kw):
    return DEPTH_LAYOUTS.get(layout)(Path(root), val_fraction=0.0, **kw)["train"]


def _fg_bg(sample, inputs="rgb"):
    d = load_sample(sample, inputs)
    m, v = d["mask"].astype(bool), d["valid"].astype(bool)
    return d, d["depth"][m & v].mean(), d["depth"][~m & v].mean()


# ----------------------------------------------------------------------------------------------- real files
def test_rgbd_near_is_near_after_loading():
    """Every pairs.csv row whose raw fg/bg means say 'the object is nearer' (in its near_is direction) loads
    with the object nearer (larger [0, 1] depth) than the rest -- 8-bit bright, 8-bit dark and 16-bit mm."""
    root = need(RGBD)
    rows = {r["image"]: r for r in csv.DictReader(open(root / "pairs.csv"))}
    samples = _all(root, "rgbd")
    assert len(samples) == 29 and {s.near for s in samples} == {"bright", "dark"}
    checked = 0
    for s in samples:
        r = rows[s.image.name]
        raw_fg, raw_bg = float(r["depth_fg_mean"]), float(r["depth_bg_mean"])
        flagged = raw_fg > raw_bg if r["near_is"].startswith("bright") else raw_fg < raw_bg
        if not flagged:
            continue
        d, fg, bg = _fg_bg(s)
        assert fg > bg, s.name
        assert d["depth"].dtype == np.float32 and 0 <= d["depth"].min() and d["depth"].max() <= 1
        assert set(np.unique(d["mask"])) <= {0, 1}
        assert d["depth"].shape == d["mask"].shape == d["image"].shape[:2]
        checked += 1
    assert checked == 29


def test_rgbd_16bit_millimetres_are_scaled_per_sample_and_inverted():
    root = need(RGBD)
    raw = np.asarray(Image.open(root / "depth" / "10_01-00-02_Depth.png")).astype(float)
    depth, valid = read_depth(root / "depth" / "10_01-00-02_Depth.png", "dark")
    assert valid.all() and depth.max() == pytest.approx(1.0) and depth.min() == pytest.approx(0.0)
    near = np.unravel_index(raw.argmin(), raw.shape)  # smallest distance = nearest
    assert depth[near] == pytest.approx(1.0)
    auto, _ = read_depth(root / "depth" / "10_01-00-02_Depth.png", "auto")  # 16-bit: larger = farther
    np.testing.assert_array_equal(auto, depth)
    eight, _ = read_depth(root / "depth" / "000851_left.jpg", "bright")
    np.testing.assert_allclose(eight[eight > 0], np.asarray(Image.open(root / "depth" / "000851_left.jpg"))[eight > 0] / 255, atol=1e-6)


def test_eva_depth_files_are_dark_near_contrary_to_their_readme():
    """Finding: eva_fgbg_samples' README says bright = near, but in all 15 maps the image bottom (road, lawn)
    is darker than the top (sky) and the pasted person darker than its surroundings in 13: dark = near."""
    root = need(EVA)
    samples = _all(root, "fgbg", near="dark")
    assert len(samples) == 15 and all(s.bg is not None for s in samples)
    nearer = 0
    for s in samples:
        d, _, _ = _fg_bg(s, "bg+bg_fg")
        depth, m = d["depth"], d["mask"].astype(bool)
        h = depth.shape[0]
        assert depth[-h // 4:].mean() > depth[: h // 4].mean(), s.name  # ground nearer than sky
        ring = cv2.dilate(d["mask"], np.ones((15, 15), np.uint8)).astype(bool) & ~m
        nearer += depth[m].mean() > depth[ring].mean()
        assert d["bg"].shape == d["image"].shape  # 256 px backgrounds resized to the 220 px composite
    assert nearer >= 12


def test_direction_check_warns_when_the_setting_is_inverted(tmp_path):
    root = need(EVA)
    cfg = depth_config("eva", width=2)
    run = DepthSegRun(cfg, str(root), workdir=tmp_path / "a", near="bright")
    with pytest.warns(UserWarning, match="DEPTH_NEAR='dark'"):
        run.prepare()
    run = DepthSegRun(cfg, str(root), workdir=tmp_path / "b", near="dark")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run.prepare()
    assert run.layout == "fgbg" and len(run.splits["train"]) == 12 and len(run.splits["val"]) == 3


def test_direction_check_reads_only_masks_and_depth(tmp_path, monkeypatch):
    run = DepthSegRun(depth_config("eva", width=2), str(need(EVA)), workdir=tmp_path, near="dark")
    run.prepare(check=False)

    def no_images(path):
        raise AssertionError(f"decoded {path}")

    monkeypatch.setattr(depth_mod, "read_image", no_images)
    nearer, checked = run.check_depth_direction()
    assert checked == 12 and nearer >= checked / 2
    d = depth_mod.load_targets(run.splits["train"][0])
    assert set(d) == {"mask", "depth", "valid"} and d["mask"].shape == d["depth"].shape


def test_fgbg_without_near_is_reads_depth_by_bit_depth(tmp_path):
    """As the depth module documents for "auto": 8-bit bright = near (EVA's files load as before), 16-bit dark = near."""
    eva = _all(need(EVA), "fgbg")
    assert {s.near for s in eva} == {"auto"}
    np.testing.assert_array_equal(load_sample(eva[0], "rgb")["depth"], read_depth(eva[0].depth, "bright")[0])
    root = tmp_path / "f16"
    for i in range(2):
        for sub in ("images", "bg"):
            _png(root / sub / f"a{i}.png", np.zeros((8, 8, 3), np.uint8))
        _png(root / "masks" / f"a{i}.png", np.zeros((8, 8), np.uint8))
        _png(root / "depth" / f"a{i}.png", np.array([[1000] * 8] * 4 + [[3000] * 8] * 4, np.uint16))  # mm
    (root / "pairs.csv").write_text("image,mask,depth,bg\n" + "".join(f"a{i}.png,a{i}.png,a{i}.png,a{i}.png\n" for i in range(2)))
    d = load_sample(_all(root, "fgbg")[0])
    assert d["depth"][0, 0] == 1.0 and d["depth"][-1, 0] == 0.0  # the smaller distance is near
    bright = _all(root, "fgbg", near="bright")[0]
    assert bright.near == "bright" and load_sample(bright)["depth"][0, 0] == 0.0


def test_masks_of_any_encoding_become_binary():
    root = need(EVA)
    ringing = read_binary_mask(root / "masks" / "fg_bg_mask_638.jpg")  # RGB JPEG with ringing
    assert ringing.dtype == np.uint8 and set(np.unique(ringing)) == {0, 1}
    one_bit = read_binary_mask(need(RGBD) / "masks" / "RGBD_data_1_GT.png")  # mode "1"
    assert set(np.unique(one_bit)) == {0, 1}


# ----------------------------------------------------------------------------------------------- bad input
def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr)).save(path)


def _rgbd(root, n=3, size=(32, 40)):
    for i in range(n):
        _png(root / "images" / f"s{i}.png", np.full((*size, 3), 100, np.uint8))
        _png(root / "depth" / f"s{i}_depth.png", np.full(size, 200, np.uint16))
        _png(root / "masks" / f"s{i}_GT.png", np.zeros(size, np.uint8))
    return root


def test_rgbd_without_pairs_matches_names_and_reports_partners(tmp_path):
    root = _rgbd(tmp_path / "ok")
    name, splits = load_depth_splits(root)
    assert name == "rgbd" and len(splits["train"]) + len(splits["val"]) == 3
    _png(root / "depth" / "extra.png", np.zeros((32, 40), np.uint16))
    with pytest.raises(DataError, match="depth maps without an image.*extra.png"):
        load_depth_splits(root)
    (root / "depth" / "extra.png").unlink()
    (root / "depth" / "s1_depth.png").unlink()
    with pytest.raises(DataError, match="s1.png has no depth map"):
        load_depth_splits(root)


def test_depth_of_another_size_and_unreadable_files(tmp_path):
    root = _rgbd(tmp_path / "d")
    _png(root / "depth" / "s0_depth.png", np.full((16, 20), 5, np.uint16))
    run = DepthSegRun(depth_config("bad", inputs="rgb", width=2), str(root), workdir=tmp_path / "w", val_fraction=0.34)
    with pytest.raises(DataError, match=r"s0_depth.png is 20x16 but its image .*s0.png is 40x32"):
        run.prepare()
    (root / "depth" / "s0_depth.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image file .*s0_depth.png"):
        run.prepare()


def test_two_inputs_need_backgrounds_and_splits_must_not_be_empty(tmp_path):
    root = _rgbd(tmp_path / "r")
    with pytest.raises(DataError, match="INPUTS='rgb'"):
        DepthSegRun(depth_config("x", width=2), str(root), workdir=tmp_path / "w").prepare()
    with pytest.raises(DataError, match="1 depth samples cannot be split into train, val with at least one each"):
        load_depth_splits(_rgbd(tmp_path / "one", n=1))


def test_modest_file_map_naming_a_missing_file(tmp_path):
    root = generate_depth_scenes(tmp_path / "m", n_bg=1, n_fg=1, per_pair=2, size=64)
    assert detect_depth_layout(root) == "modest"
    with open(root / "file_map.txt", "a") as f:
        f.write("bg001\tbg001_fg009_01\tbg001_fg009_01_mask\tbg001_fg009_01_depth_map\n")
    with pytest.raises(DataError, match=r"file_map.txt line 3 names bg_fg/bg001_fg009_01"):
        load_depth_splits(root)


def test_fgbg_depth_without_image_and_colour_depth(tmp_path):
    root = tmp_path / "f"
    for sub, arr in (("images", np.zeros((8, 8, 3), np.uint8)), ("bg", np.zeros((8, 8, 3), np.uint8)),
                     ("masks", np.zeros((8, 8), np.uint8)), ("depth", np.full((8, 8), 9, np.uint8))):
        for i in range(2):
            _png(root / sub / f"a{i}.png", arr)
    (root / "pairs.csv").write_text("image,mask,depth,bg\na0.png,a0.png,a0.png,a0.png\na1.png,a1.png,a1.png,a1.png\n")
    assert detect_depth_layout(root) == "fgbg"
    _png(root / "depth" / "lonely.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match="lonely.png"):
        load_depth_splits(root)
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[..., 0] = 200
    _png(root / "depth" / "a0.png", colour)
    with pytest.raises(DataError, match="colour"):
        read_depth(root / "depth" / "a0.png")


def test_zero_depth_is_invalid_and_dark_is_inverted(tmp_path):
    arr = np.array([[0, 1000], [2000, 3000]], np.uint16)
    _png(tmp_path / "d.png", arr)
    depth, valid = read_depth(tmp_path / "d.png", "dark")
    assert valid.tolist() == [[False, True], [True, True]]
    np.testing.assert_allclose(depth, [[0, 1], [0.5, 0]])
    depth, _ = read_depth(tmp_path / "d.png", "bright", value_range=(0, 4000))
    np.testing.assert_allclose(depth, [[0, 0.25], [0.5, 0.75]])


# ----------------------------------------------------------------------------------------------- synthetic + dataset
def test_synthetic_scenes_are_deterministic_and_the_foreground_is_nearer(tmp_path):
    a = generate_depth_scenes(tmp_path / "a", n_bg=2, n_fg=2, per_pair=2, size=64, seed=5)
    b = generate_depth_scenes(tmp_path / "b", n_bg=2, n_fg=2, per_pair=2, size=64, seed=5)
    assert generate_depth_scenes(a, n_bg=2, n_fg=2, per_pair=2, size=64, seed=5) == a  # idempotent
    assert (a / "bg_fg" / "bg002_fg002_02.jpeg").read_bytes() == (b / "bg_fg" / "bg002_fg002_02.jpeg").read_bytes()
    samples = _all(a, "modest")
    assert len(samples) == 8
    for s in samples:
        d = load_sample(s)
        m = d["mask"].astype(bool)
        assert m.any() and d["valid"].all()
        ring = cv2.dilate(d["mask"], np.ones((5, 5), np.uint8)).astype(bool) & ~m
        assert d["depth"][m].min() >= d["depth"][ring].mean()  # everywhere nearer than around it
        assert (np.abs(d["image"].astype(int) - d["bg"])[~m].mean()) < 6  # bg_fg = bg outside the mask (JPEG)


def test_dataset_items_and_identical_photometric_change_on_bg_and_bg_fg(tmp_path):
    root = tmp_path / "same"
    img = np.random.default_rng(0).integers(0, 255, (40, 40, 3), np.uint8)
    for i in range(4):
        for sub in ("images", "bg"):
            _png(root / sub / f"a{i}.png", img)
        _png(root / "masks" / f"a{i}.png", np.zeros((40, 40), np.uint8))
        _png(root / "depth" / f"a{i}.png", np.full((40, 40), 128, np.uint8))
    (root / "pairs.csv").write_text("image,mask,depth,bg\n" + "".join(f"a{i}.png,a{i}.png,a{i}.png,a{i}.png\n" for i in range(4)))
    _, splits = load_depth_splits(root, val_fraction=0.25)
    ds = DepthSegDataset(splits["train"], lambda e: 32 if e < 3 else 64, "bg+bg_fg", "photometric", seed=1)
    for epoch in (1, 2):
        for i in range(len(ds)):
            item = ds[(epoch, i)]
            x, t = item["input"], item["target"]
            assert x["bg"].shape == x["bg_fg"].shape == (3, 32, 32) and x["bg"].dtype == torch.float32
            assert torch.equal(x["bg"], x["bg_fg"])  # the same photometric change on both inputs
            assert t["depth"].shape == t["mask"].shape == t["valid"].shape == (1, 32, 32)
            assert torch.allclose(t["depth"], torch.full_like(t["depth"], 128 / 255))  # targets never augmented
    plain = DepthSegDataset(splits["train"], 32, "bg+bg_fg", "none")[(1, 0)]["input"]["bg_fg"]
    fixed = DepthSegDataset(splits["train"], 32, "bg+bg_fg", "photometric", seed=1)
    assert any(not torch.equal(fixed[(e, 0)]["input"]["bg_fg"], plain) for e in range(1, 13))  # p = 0.25 each
    assert ds[(3, 0)]["input"]["bg"].shape == (3, 64, 64)
    rgb = DepthSegDataset(splits["train"], 32, "rgb")[0]["input"]
    assert isinstance(rgb, torch.Tensor) and rgb.shape == (3, 32, 32)


def test_backgrounds_are_cached_read_only_and_not_changed_by_augmentation(tmp_path):
    root = tmp_path / "shared_bg"
    rng = np.random.default_rng(3)
    for i in range(3):
        _png(root / "images" / f"a{i}.png", rng.integers(0, 255, (32, 32, 3), np.uint8))
        _png(root / "masks" / f"a{i}.png", np.zeros((32, 32), np.uint8))
        _png(root / "depth" / f"a{i}.png", np.full((32, 32), 128, np.uint8))
    _png(root / "bg" / "b.png", rng.integers(0, 255, (48, 48, 3), np.uint8))
    (root / "pairs.csv").write_text("image,mask,depth,bg\n" + "".join(f"a{i}.png,a{i}.png,a{i}.png,b.png\n" for i in range(3)))
    samples = _all(root, "fgbg")
    a, b = load_sample(samples[0])["bg"], load_sample(samples[1])["bg"]
    assert a is b and a.shape == (32, 32, 3) and a.dtype == np.uint8 and not a.flags.writeable
    with pytest.raises(ValueError):
        a[0, 0, 0] = 1
    full = depth_mod.read_background(root / "bg" / "b.png", (48, 48))  # another size: its own entry, not resized
    np.testing.assert_array_equal(full, np.asarray(Image.open(root / "bg" / "b.png")))
    before = a.copy()
    ds = DepthSegDataset(samples, 32, "bg+bg_fg", "photometric", seed=2)  # same size: no resize copy first
    changed = 0
    for e in range(1, 17):
        for i in range(len(ds)):
            x = ds[(e, i)]["input"]
            changed += not torch.equal(x["bg"], DepthSegDataset(samples, 32, "bg+bg_fg")[(e, i)]["input"]["bg"])
    assert changed > 0  # photometric changes did run on the cached background ...
    np.testing.assert_array_equal(load_sample(samples[2])["bg"], before)  # ... and left it as it was
    _png(root / "bg" / "b.png", np.zeros((48, 48, 3), np.uint8))  # a rewritten file is read again
    os.utime(root / "bg" / "b.png", ns=(1, 1))
    assert load_sample(samples[0])["bg"].max() == 0
