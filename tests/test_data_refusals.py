"""Issue 11, item 4: every bad input is refused by the one pre-training check (or the layout, or the zip
extraction) with a message naming the file and the fix -- before any training starts. Each bad file is built for
real with PIL/numpy/zipfile in tmp_path; the real datasets of ../shared/data still pass."""

from __future__ import annotations

import struct
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seglib.data.checks import check_samples, class_id_reader, read_binary_mask_values
from seglib.data.io import DataError, read_mask
from seglib.data.layouts import load_splits
from seglib.data.sources import safe_extract

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def rgb(path: Path, size=(32, 24), fmt=None, seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, format=fmt)
    return path


def grey(path: Path, values, size=(32, 24), fmt=None) -> Path:
    """A 1-channel mask cycling through ``values`` (16-bit when a value exceeds 255)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = np.resize(np.array(values), size[0] * size[1]).reshape(size[1], size[0])
    Image.fromarray(flat.astype(np.uint16 if max(values) > 255 else np.uint8)).save(path, format=fmt)
    return path


def pairs(root: Path, n=4, values=(0, 1), mask=grey) -> Path:
    """``root/images/s<i>.png`` + ``root/masks/s<i>.png`` (seeded split: no splits/)."""
    for i in range(n):
        rgb(root / "images" / f"s{i}.png", seed=i)
        mask(root / "masks" / f"s{i}.png", values)
    return root


def all_samples(root: Path, **kwargs) -> list:
    return [s for split in load_splits(root, **kwargs)[1].values() for s in split]


def refused(samples, reader=None) -> str:
    with pytest.raises(DataError) as err:
        check_samples(samples, reader, progress=False)
    return str(err.value)


# ------------------------------------------------------------------------------------ decoding
def test_corrupt_png_is_refused_although_its_header_reads(tmp_path):
    root = pairs(tmp_path / "d")
    bad = root / "images" / "s1.png"
    data = bytearray(bad.read_bytes())
    i = data.index(b"IDAT")
    data[i + 20] ^= 0xFF  # damage the compressed pixels, not the header
    bad.write_bytes(bytes(data))
    assert Image.open(bad).size == (32, 24)  # a header-only check passes
    msg = refused(all_samples(root), class_id_reader(2))
    assert msg.startswith(f"cannot read image file {bad}: it is truncated or corrupt") and "re-export it" in msg


def test_truncated_jpeg_test_image_is_refused(tmp_path):
    root = pairs(tmp_path / "d")
    test_img = rgb(root / "images" / "t0.jpg", size=(64, 48))  # no mask: an unlabelled test image
    test_img.write_bytes(test_img.read_bytes()[: test_img.stat().st_size // 2])
    samples = all_samples(root)
    assert any(s.mask is None and s.image == test_img for s in samples)
    msg = refused(samples, class_id_reader(2))
    assert f"cannot read image file {test_img}: it is truncated or corrupt (image file is truncated" in msg


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose IHDR claims ``width x height`` 8-bit grey pixels and holds none."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


def test_decompression_bomb_is_refused_fast_with_its_name(tmp_path):
    root = pairs(tmp_path / "d")
    bomb = _png_header_only(root / "images" / "s2.png", 100_000, 100_000)
    t0 = time.monotonic()
    msg = refused(all_samples(root), class_id_reader(2))
    assert time.monotonic() - t0 < 5
    assert msg.startswith(f"image file {bomb} claims 10000000000 pixels (10000 megapixels), over PIL's limit "
                          "PIL.Image.MAX_IMAGE_PIXELS=")
    assert "PIL.Image.MAX_IMAGE_PIXELS = 10000000001" in msg


def test_an_image_over_the_pixel_limit_but_under_twice_it_is_refused_too(tmp_path, monkeypatch):
    root = pairs(tmp_path / "d")  # 32 x 24 = 768 pixels: PIL only warns between the limit and twice it
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 700)
    msg = refused(all_samples(root)[:1], class_id_reader(2))
    assert msg.startswith("1 of 1 samples have problems:\nimage file ")  # its image and its mask, both named
    assert msg.count("claims 768 pixels") == 2 and "MAX_IMAGE_PIXELS = 769" in msg


# ------------------------------------------------------------------------------------ mask values
def test_jpeg_mask_is_refused_by_content_unless_thresholded(tmp_path):
    root = tmp_path / "d"
    for i in range(4):
        rgb(root / "images" / f"s{i}.png", seed=i)
        grey(root / "masks" / f"s{i}.png", (0, 0, 255, 255), fmt="JPEG")  # JPEG bytes behind a .png name
    msg = refused(all_samples(root), class_id_reader(2))
    assert msg.startswith("4 of 4 samples have problems:\nmask ") and "is a JPEG file (lossy" in msg
    assert "MASK_THRESHOLD=128" in msg
    assert check_samples(all_samples(root), class_id_reader(2, threshold=128), progress=False) == 4
    assert set(np.unique(read_mask(root / "masks" / "s0.png", 2, threshold=128))) == {0, 1}
    with pytest.raises(DataError, match="is a JPEG file") as err:  # the study's binary check refuses it too
        read_binary_mask_values(root / "masks" / "s0.png")
    assert "save them as PNG" in str(err.value) and "MASK_THRESHOLD" not in str(err.value)  # no such study option


def test_twelve_class_masks_are_not_merged_into_two(tmp_path):
    root = pairs(tmp_path / "d", values=tuple(range(12)))
    msg = refused(all_samples(root), class_id_reader(2))
    assert msg.startswith("4 masks have values >= N_CLASSES=2: ")
    assert msg.endswith("over all of them 12 distinct values 0, 1, ..., 11: set N_CLASSES=12 (ids 0..11), or set "
                        "IGNORE_INDEX to the value that marks unlabelled pixels; to merge classes into "
                        "background/foreground instead, set MASK_THRESHOLD explicitly (class 1 where value >= "
                        "MASK_THRESHOLD)")
    with pytest.raises(DataError, match=r"values \[2, 3, 4, 5, 6, 7, 8, 9, 10\] >= N_CLASSES=2 \(IGNORE_INDEX is 11\)"):
        read_mask(root / "masks" / "s0.png", 2, ignore_index=11)
    assert check_samples(all_samples(root), class_id_reader(12, 11), progress=False) == 4


def test_binary_0_255_masks_with_one_class_suggest_two(tmp_path):
    root = pairs(tmp_path / "d", values=(0, 255))
    msg = refused(all_samples(root), class_id_reader(1))
    assert "at least 256" not in msg
    assert msg.endswith("over all of them 2 distinct values 0, 255: a binary mask; set N_CLASSES=2 (255 is read as "
                        "class 1), or train it as the binary task (the hyperparameter study)")
    assert set(np.unique(read_mask(root / "masks" / "s0.png", 2))) == {0, 1}


def test_16_bit_masks_scaled_by_5000_suggest_the_scale(tmp_path):
    values = tuple(range(0, 60000, 5000))
    root = pairs(tmp_path / "d", values=values)
    assert Image.open(root / "masks" / "s0.png").mode.startswith("I")
    msg = refused(all_samples(root), class_id_reader(22))
    assert "55001" not in msg
    assert msg.endswith("12 distinct values 0, 5000, ..., 55000: class ids scaled by 5000; divide by 5000 (set "
                        "MASK_SCALE=5000, or re-save the masks as class ids) and set N_CLASSES=12")
    assert check_samples(all_samples(root), class_id_reader(12, scale=5000), progress=False) == 4
    assert set(np.unique(read_mask(root / "masks" / "s0.png", 12, scale=5000))) == set(range(12))
    with pytest.raises(DataError, match="not multiples of MASK_SCALE=3000"):
        read_mask(root / "masks" / "s0.png", 22, scale=3000)


def test_a_directory_named_like_an_image_is_called_a_directory(tmp_path):
    root = pairs(tmp_path / "d")
    (root / "images" / "s1.png").unlink()
    (root / "images" / "s1.png").mkdir()
    with pytest.raises(DataError) as err:
        load_splits(root)
    assert str(err.value).startswith(f"1 folder(s) in {root / 'images'} named like image files: s1.png; each is a "
                                     "directory, not an image")
    assert "without an image" not in str(err.value)


# ------------------------------------------------------------------------------------ zips
def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_zip_bombs_are_refused_before_extracting(tmp_path):
    ratio = _zip(tmp_path / "ratio.zip", {"images/a.png": b"\0" * (20 << 20)})  # 20 MiB of zeros
    with pytest.raises(DataError, match=r"ratio\.zip \(\d+\.\d kB\) declares an unpacked size of 21\.0 MB, \d+ times "
                                        r"its size \(limit 200\): a zip bomb\?.*MAX_COMPRESSION_RATIO"):
        safe_extract(ratio, tmp_path / "out")
    big = _zip(tmp_path / "big.zip", {"a.bin": np.random.default_rng(0).bytes(3 << 20)})
    with pytest.raises(DataError, match=r"big\.zip declares an unpacked size of 3\.1 MB, over the limit of 1\.0 MB"
                                        r".*MAX_UNPACKED_BYTES"):
        safe_extract(big, tmp_path / "out", max_bytes=1 << 20)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("out.partial-*"))
    assert (safe_extract(ratio, tmp_path / "ok", max_ratio=5000) / "images" / "a.png").stat().st_size == 20 << 20


def test_zip_whose_header_understates_the_size_is_stopped_while_extracting(tmp_path, monkeypatch):
    z = _zip(tmp_path / "liar.zip", {"a.bin": np.random.default_rng(0).bytes(3 << 20)})
    real_infolist = zipfile.ZipFile.infolist

    def lying(self):  # the central directory claims 1 KB per member; the data holds 3 MB
        infos = real_infolist(self)
        for info in infos:
            info.file_size = 1024
        return infos

    monkeypatch.setattr(zipfile.ZipFile, "infolist", lying)
    with pytest.raises(DataError, match=r"zip .*liar\.zip is corrupt \(Bad CRC-32|unpacks to more than"):
        safe_extract(z, tmp_path / "out", max_bytes=2 << 20)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("out.partial-*"))


# ------------------------------------------------------------------------------------ names
def drive_like(root: Path, n=4) -> Path:
    """DRIVE retina naming: ``images/<k>_training.tif`` with ``masks/<k>_manual1.gif`` (0/255)."""
    for k in range(21, 21 + n):
        rgb(root / "images" / f"{k}_training.tif", seed=k)
        grey(root / "masks" / f"{k}_manual1.gif", (0, 255))
    return root


def test_names_that_do_not_match_show_both_sides_and_the_fix(tmp_path):
    root = drive_like(tmp_path / "drive")
    with pytest.raises(DataError) as err:
        load_splits(root)
    msg = str(err.value)
    assert msg.startswith("none of the 4 images pairs with any of the 4 masks by name: images are named like "
                          "21_training.tif, 22_training.tif, 23_training.tif; masks like 21_manual1.gif, "
                          "22_manual1.gif, 23_manual1.gif.")
    assert f"add {root / 'pairs.csv'} with the columns image,mask" in msg and "PAIR_BY=r'^(\\d+)'" in msg
    assert "is empty" not in msg


def test_pair_by_regex_pairs_drive_names(tmp_path):
    root = drive_like(tmp_path / "drive")
    samples = all_samples(root, pair_by=r"^(\d+)_")
    assert sorted((s.image.name, s.mask.name) for s in samples) == [
        (f"{k}_training.tif", f"{k}_manual1.gif") for k in range(21, 25)]
    assert check_samples(samples, class_id_reader(2), progress=False) == 4
    with pytest.raises(DataError, match=r"PAIR_BY='_' finds the id '_' in two images"):
        load_splits(root, pair_by="_")


def test_pairs_csv_pairs_drive_names(tmp_path):
    root = drive_like(tmp_path / "drive")
    rgb(root / "images" / "01_test.tif", seed=1)  # unlabelled: empty mask column
    rows = [f"images/{k}_training.tif,masks/{k}_manual1.gif" for k in range(21, 25)]
    (root / "pairs.csv").write_text("image,mask\n" + "\n".join(rows) + "\nimages/01_test.tif,\n")
    _, splits = load_splits(root)
    assert [s.image.name for s in splits["test"]] == ["01_test.tif"] and splits["test"][0].mask is None
    labelled = splits["train"] + splits["val"]
    assert sorted(s.mask.name for s in labelled) == [f"{k}_manual1.gif" for k in range(21, 25)]
    assert all(s.image.name.split("_")[0] == s.mask.name.split("_")[0] for s in labelled)
    (root / "pairs.csv").write_text("image,mask\nimages/21_training.tif,masks/nope.gif\n")
    with pytest.raises(DataError, match=r"pairs\.csv names 1 file\(s\) that do not exist: line 2 mask 'masks/nope"):
        load_splits(root)


# ------------------------------------------------------------------------------------ before training
BAD_INPUTS = {
    "corrupt image": lambda root: (root / "images" / "s1.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage"),
    "jpeg mask": lambda root: grey(root / "masks" / "s1.png", (0, 255), fmt="JPEG"),
    "twelve classes": lambda root: grey(root / "masks" / "s1.png", tuple(range(12))),
    "bomb": lambda root: _png_header_only(root / "images" / "s3.png", 100_000, 100_000),
    "size mismatch": lambda root: grey(root / "masks" / "s0.png", (0, 1), size=(16, 16)),
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_every_refusal_comes_before_training(tmp_path, kind):
    from seglib.config import TrainConfig
    from seglib.segmentation import SegmentationRun

    root = pairs(tmp_path / "d", n=6)
    BAD_INPUTS[kind](root)
    cfg = TrainConfig(experiment="r", model="unet_mobilenet_v2", encoder_weights=None, n_classes=2, img_size=32,
                      epochs=1, batch_size=2, num_workers=0)
    run = SegmentationRun(cfg, str(root), workdir=tmp_path / "w", local=tmp_path / "l", device="cpu")
    with pytest.raises(DataError):
        run.prepare()  # the notebook calls run.train() only after prepare() returned
    assert not [p for p in tmp_path.rglob("*.pt")]


# ------------------------------------------------------------------------------------ real data
def _shared(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"{path} is absent (real data lives outside the repository)")
    return path


def test_real_camvid_passes_the_full_decode_and_is_refused_with_two_classes(capsys):
    root = _shared("camvid_segnet")
    samples = all_samples(root)
    t0 = time.monotonic()
    assert check_samples(samples, class_id_reader(12, 11), progress=False) == len(samples) >= 193
    print(f"camvid full decode: {len(samples)} samples in {time.monotonic() - t0:.2f} s")
    msg = refused(samples[:20], class_id_reader(2, 11))
    assert "N_CLASSES=2 (IGNORE_INDEX is 11)" in msg and "set N_CLASSES=11 (ids 0..10)" in msg


def test_real_binary_and_depth_datasets_pass_the_full_decode():
    from seglib.data.depth_layouts import load_depth_splits

    isbi = _shared("isbi2012_membrane")
    assert check_samples(all_samples(isbi), read_binary_mask_values, progress=False) == 30
    for name in ("eva_fgbg_samples", "rgbd_sod_mix"):  # eva's JPEG masks: the depth reader's explicit threshold
        _, splits = load_depth_splits(_shared(name))
        samples = [s for split in splits.values() for s in split]
        assert check_samples(samples, progress=False) == len(samples) > 10


def test_the_check_shows_a_bar_and_hands_each_decoded_sample_on(tmp_path, capsys):
    root = pairs(tmp_path / "d", n=4)
    got = []
    n = check_samples(all_samples(root), class_id_reader(2), progress=True,
                      on_sample=lambda s, d: got.append((s.name, d["image"].shape, d["image"].dtype, d["mask"].shape)))
    assert n == 4 and "checking data" in capsys.readouterr().out
    assert sorted(got) == [(f"s{i}", (24, 32, 3), np.uint8, (24, 32)) for i in range(4)]
    check_samples(all_samples(root), class_id_reader(2), progress=False)
    assert "checking data" not in capsys.readouterr().out
