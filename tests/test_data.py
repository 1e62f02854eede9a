"""Layouts, decoding and every bad input named in issue 2, on real files written to tmp_path and on CamVid."""

import re
import zipfile

import numpy as np
import pytest
from PIL import Image

import seglib.data
from seglib.data import convert_color_masks
from seglib.data.checks import check_samples, class_id_reader
from seglib.data.classes import JETCAR_CLASSES, palette
from seglib.data.datasets import SegmentationDataset
from seglib.data.io import ColorMaskError, DataError, read_image, read_mask
from seglib.data.layouts import load_splits, split_counts
from seglib.data.sources import drive_file_id, resolve_data, safe_extract, sha256_file
from seglib.data.splits import seeded_split


def _img(path, size=(32, 24), mode="RGB", value=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    shape = (size[1], size[0]) + ((len(mode),) if mode in ("RGB", "RGBA") else ())
    arr = rng.integers(0, 256, shape, dtype=np.uint8) if value is None else np.full(shape, value, np.uint8)
    Image.fromarray(arr, mode).save(path)
    return path


def _mask(path, size=(32, 24), values=(0, 1, 2)):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.resize(np.array(values, np.uint8), size[0] * size[1]).reshape(size[1], size[0])
    Image.fromarray(arr, "L").save(path)
    return path


def jetcar(root, n=(3, 2, 1)):
    for split, k in zip(("Train", "Val", "Test"), n):
        for i in range(k):
            _img(root / "DataSet" / "Img" / split / f"Img_{i:03d}.jpg")
            if split != "Test":
                _mask(root / "DataSet" / "Mask" / split / f"Mask_{i:03d}.png")
    return root


def test_jetcar_layout_and_junk_files(tmp_path):
    jetcar(tmp_path)
    (tmp_path / "DataSet" / "Img" / "Train" / ".DS_Store").write_bytes(b"junk")
    (tmp_path / "DataSet" / "Mask" / "Train" / "Thumbs.db").write_bytes(b"junk")
    name, splits = load_splits(tmp_path)
    assert name == "jetcar"
    assert split_counts(splits) == "train: 3 images, val: 2 images, test: 1 images"
    s = splits["train"][0]
    assert s.image.name == "Img_000.jpg" and s.mask.name == "Mask_000.png" and splits["test"][0].mask is None


def test_camvid_pairs_layout(camvid):
    name, splits = load_splits(camvid)
    assert name == "pairs" and len(splits["train"]) == 92 and len(splits["val"]) == 101 and not splits["test"]
    mask = read_mask(splits["val"][0].mask, 12, 11)
    assert mask.shape == (360, 480) and mask.max() <= 11
    ds = SegmentationDataset(splits["train"][:2], 12, 64, "flip", seed=0, ignore_index=11)
    item = ds[(3, 1)]
    assert item["input"].shape == (3, 64, 64) and item["target"].shape == (64, 64) and item["index"] == 1
    assert int(item["target"].max()) <= 11


def test_pairs_seeded_split_without_split_files(tmp_path):
    for i in range(10):
        _img(tmp_path / "images" / f"{i}.png")
        _mask(tmp_path / "masks" / f"{i}.png", values=(0, 255))
    _, a = load_splits(tmp_path, seed=1)
    _, b = load_splits(tmp_path, seed=1)
    _, c = load_splits(tmp_path, seed=2)
    assert [s.name for s in a["val"]] == [s.name for s in b["val"]] != [s.name for s in c["val"]]
    assert len(a["val"]) == 2 and len(a["train"]) == 8
    m = read_mask(a["train"][0].mask, 2)
    assert set(np.unique(m)) == {0, 1}  # {0,255} -> {0,1}


def test_seeded_split_keeps_a_sample_in_each_split_or_says_why(tmp_path):
    for i in range(2):  # 2 images at val_fraction 0.2: round(0.4) = 0 left val empty before
        _img(tmp_path / "images" / f"{i}.png")
        _mask(tmp_path / "masks" / f"{i}.png", values=(0, 255))
    _, splits = load_splits(tmp_path, seed=0, val_fraction=0.2)
    assert len(splits["train"]) == 1 and len(splits["val"]) == 1
    parts = seeded_split(list(range(5)), seed=3, val_fraction=0.9, test_fraction=0.05)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [1, 3, 1]  # train keeps one, test gets one
    assert sorted(parts["train"] + parts["val"] + parts["test"]) == [0, 1, 2, 3, 4]
    with pytest.raises(DataError, match="1 labelled samples cannot be split into train, val .*add samples"):
        seeded_split(["only"], val_fraction=0.2)
    with pytest.raises(DataError, match=r"val_fraction=1.5 must be in \[0, 1\)"):
        seeded_split([1, 2, 3], val_fraction=1.5)


def test_a_depth_layout_is_not_a_segmentation_layout(tmp_path):
    import seglib.depthseg  # noqa: F401  (registers the depth layouts first, as a notebook kernel might)
    from seglib.config import TrainConfig
    from seglib.segmentation import SegmentationRun

    jetcar(tmp_path / "d")
    for layout in ("modest", "nope"):
        run = SegmentationRun(TrainConfig(n_classes=3), str(tmp_path / "d"), workdir=tmp_path / "w", layout=layout,
                              device="cpu")
        with pytest.raises(KeyError, match=f"unknown segmentation layout '{layout}'; valid segmentation layout "
                                           'names: jetcar, pairs"?$'):
            run.prepare()
        assert not run.splits  # nothing was read with a depth layout


def test_the_one_check_reports_every_bad_file(tmp_path):
    jetcar(tmp_path, n=(8, 2, 0))
    mask = tmp_path / "DataSet" / "Mask"
    _mask(mask / "Train" / "Mask_001.png", size=(16, 16))  # size mismatch
    _mask(mask / "Val" / "Mask_000.png", values=(0, 7))  # out-of-range id
    _colour_mask(mask / "Train" / "Mask_002.png", _ids(2))  # colour masks: one entry for both
    _colour_mask(mask / "Train" / "Mask_003.png", _ids(3))
    (tmp_path / "DataSet" / "Img" / "Train" / "Img_004.jpg").write_bytes(b"not a jpeg")  # unreadable image
    (mask / "Train" / "Mask_005.png").write_bytes(b"not a png")  # unreadable mask
    _, splits = load_splits(tmp_path)
    with pytest.raises(DataError) as err:
        check_samples(splits["train"] + splits["val"], class_id_reader(3))
    msg = str(err.value)
    assert msg.startswith("6 of 10 samples have problems:\n2 masks are colour (RGB) images: ")
    assert "convert_color_masks(" in msg and "Mask_002.png" in msg and "Mask_003.png" in msg
    assert "Mask_001.png is 16x16" in msg and "Mask_000.png has values [7] >= N_CLASSES=3" in msg
    assert "cannot read image file " in msg and "Img_004.jpg" in msg and "Mask_005.png" in msg
    with pytest.raises(DataError, match=r"^6 of 10 .*\n(.*\n){2}\.\.\. and 3 more$"):
        check_samples(splits["train"] + splits["val"], class_id_reader(3), limit=2)
    assert check_samples(splits["train"][6:] + splits["val"][1:], class_id_reader(3)) == 3


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_image_modes_read_as_rgb(tmp_path, mode):
    arr = read_image(_img(tmp_path / "x.png", mode=mode))
    assert arr.shape == (24, 32, 3) and arr.dtype == np.uint8


# ------------------------------------------------------------------------------------ bad input
def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_splits(tmp_path / "nope")
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match="no image files"):
        load_splits(tmp_path)
    with pytest.raises(DataError, match="cannot tell the layout"):
        load_splits(tmp_path / "images")


def test_empty_split(tmp_path):
    jetcar(tmp_path, n=(2, 0, 0))
    (tmp_path / "DataSet" / "Img" / "Val").mkdir(parents=True, exist_ok=True)
    (tmp_path / "DataSet" / "Mask" / "Val").mkdir(parents=True, exist_ok=True)
    with pytest.raises(DataError, match="val split .* is empty"):
        load_splits(tmp_path)


def test_image_without_mask_and_mask_without_image(tmp_path):
    jetcar(tmp_path)
    _img(tmp_path / "DataSet" / "Img" / "Train" / "Img_777.jpg")
    with pytest.raises(DataError, match="images without a mask.*Img_777.jpg.*Mask_"):
        load_splits(tmp_path)
    (tmp_path / "DataSet" / "Img" / "Train" / "Img_777.jpg").unlink()
    _mask(tmp_path / "DataSet" / "Mask" / "Val" / "Mask_555.png")
    with pytest.raises(DataError, match="masks without an image.*Mask_555.png"):
        load_splits(tmp_path)


def test_pairs_split_file_naming_missing_image(tmp_path):
    _img(tmp_path / "images" / "a.png")
    _mask(tmp_path / "masks" / "a.png")
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "train.txt").write_text("a.png\n")
    (tmp_path / "splits" / "val.txt").write_text("ghost.png\n")
    with pytest.raises(DataError, match="val.txt lists 'ghost.png'"):
        load_splits(tmp_path)


def test_size_mismatch_named(tmp_path):
    jetcar(tmp_path)
    _mask(tmp_path / "DataSet" / "Mask" / "Train" / "Mask_001.png", size=(16, 16))
    _, splits = load_splits(tmp_path)
    ds = SegmentationDataset(splits["train"], 3, 32)
    with pytest.raises(DataError, match=r"mask .*Mask_001.png is 16x16 but its image .*Img_001.jpg is 32x24"):
        ds[1]


def test_mask_values_out_of_range(tmp_path):
    p = _mask(tmp_path / "m.png", values=(0, 5, 30))
    with pytest.raises(DataError, match=r"m.png has values \[5, 30\] >= N_CLASSES=3"):
        read_mask(p, 3)
    with pytest.raises(DataError, match=r"values \[5\].*IGNORE_INDEX is 30"):
        read_mask(p, 3, ignore_index=30)
    assert read_mask(p, 6, ignore_index=30).max() == 30


def _colour_mask(path, ids, table=JETCAR_CLASSES):
    """An RGB mask drawing class ``ids`` (H x W ints) in the colours of ``table``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(palette(len(table), table)[ids], "RGB").save(path)
    return path


def _ids(seed, size=(32, 24), classes=(0, 1, 5, 21)):
    return np.random.default_rng(seed).choice(classes, (size[1], size[0]))


def test_colour_masks_are_listed_and_the_named_call_converts_them(tmp_path, capsys):
    jetcar(tmp_path)
    truth = {}
    for split, k in (("Train", 3), ("Val", 2)):
        for i in range(k):
            p = tmp_path / "DataSet" / "Mask" / split / f"Mask_{i:03d}.png"
            truth[p] = _ids(len(truth))
            _colour_mask(p, truth[p])
    _, splits = load_splits(tmp_path)
    with pytest.raises(ColorMaskError, match=r"Mask_000.png is a colour \(RGB\) image; colours found: .*#E70E13"):
        read_mask(splits["train"][0].mask, 22)
    with pytest.raises(DataError) as err:
        check_samples(splits["train"] + splits["val"], class_id_reader(22))
    msg = str(err.value)
    assert msg.startswith("5 masks are colour (RGB) images: ") and "Val/Mask_001.png" in msg
    assert all(c in msg for c in ("#000000", "#E70E13", "#00FF00", "#D7D700"))  # ids 0, 1, 5, 21
    call = re.search(r"seglib\.data\.convert_color_masks\(.*?'jetcar'\)", msg).group(0)
    assert call == f"seglib.data.convert_color_masks({str(tmp_path / 'DataSet' / 'Mask')!r}, 'jetcar')"
    eval(call, {"seglib": seglib})  # the exact call the message names
    assert "5 colour masks converted" in capsys.readouterr().out
    _, splits = load_splits(tmp_path)
    assert check_samples(splits["train"] + splits["val"], class_id_reader(22)) == 5
    for p, ids in truth.items():
        assert np.array_equal(read_mask(p, 22), ids)
        assert (tmp_path / "DataSet" / "Mask_color" / p.parent.name / p.name).is_file()  # originals kept


def test_convert_color_masks_refuses_unknown_colours_and_writes_nothing(tmp_path):
    folder = tmp_path / "masks"
    _colour_mask(folder / "a.png", _ids(0))
    bad = np.array(Image.open(_colour_mask(folder / "sub" / "b.png", _ids(1))))
    bad[0, :3], bad[1, :3] = (0x12, 0x34, 0x56), (1, 2, 3)
    Image.fromarray(bad).save(folder / "sub" / "b.png")
    Image.fromarray(bad).save(folder / "c.png")
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(DataError, match=r"2 colours are not in the jetcar palette:\n#010203 in .*/c.png, .*sub/b.png\n"
                                        r"#123456 in .*\nNothing was written"):
        convert_color_masks(folder, "jetcar")
    assert sorted(tmp_path.rglob("*")) == before  # no partial output, originals untouched
    table = JETCAR_CLASSES + [(22, "x", "123456"), (23, "y", "010203")]
    out = convert_color_masks(folder, table, out=tmp_path / "ids")
    assert out == tmp_path / "ids" and read_mask(out / "c.png", 24)[0, :3].tolist() == [22, 22, 22]
    assert np.array_equal(read_mask(out / "a.png", 24), _ids(0)) and (folder / "a.png").is_file()
    with pytest.raises(DataError, match="is inside the mask folder"):
        convert_color_masks(folder, table, out=folder / "x")
    with pytest.raises(DataError, match="exists and is not empty"):
        convert_color_masks(folder, table, out=out)
    with pytest.raises(KeyError, match="unknown palette 'nope'; built-in palettes: jetcar, camvid"):
        convert_color_masks(folder, "nope")
    with pytest.raises(ValueError, match="gives colour #000000 to classes 0 and 1"):
        convert_color_masks(folder, [[0, 0, 0], [0, 0, 0]])


def test_a_colour_mask_outside_any_palette_asks_for_a_class_table(tmp_path):
    p = _img(tmp_path / "colour.png")  # random colours
    with pytest.raises(ColorMaskError, match=r"colours found: #\w{6}, .*\(7\d\d in all\).*convert_color_masks\("
                                             r".*\[\(0, 'background', '000000'\).*none is a colour of a built-in "
                                             "palette.*JPEG artefacts"):
        read_mask(p, 3)


def test_unreadable_image(tmp_path):
    jetcar(tmp_path)
    (tmp_path / "DataSet" / "Img" / "Train" / "Img_000.jpg").write_bytes(b"not a jpeg at all")
    _, splits = load_splits(tmp_path)
    with pytest.raises(DataError, match="cannot read image file .*Img_000.jpg"):
        SegmentationDataset(splits["train"], 3, 32)[0]


# ------------------------------------------------------------------------------------ sources
def test_zip_source_extracts_once_and_checks_sha(tmp_path):
    src = jetcar(tmp_path / "src")
    z = tmp_path / "JetCar_DataSet.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(src))
        zf.writestr("__MACOSX/._junk", b"x")
    cache = tmp_path / "cache"
    root = resolve_data(str(z), cache=cache, sha256=sha256_file(z))
    assert root == resolve_data(str(z), cache=cache)  # cached
    assert not (root / "__MACOSX").exists()
    assert load_splits(root)[0] == "jetcar"
    with pytest.raises(DataError, match="sha256"):
        resolve_data(str(z), cache=tmp_path / "c2", sha256="0" * 64)


@pytest.mark.parametrize("bad", ["/etc/evil.txt", "../evil.txt", "a/../../evil.txt", "C:/evil.txt"])
def test_zip_with_unsafe_paths_is_refused(tmp_path, bad):
    z = tmp_path / "bad.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("ok.txt", b"fine")
        zf.writestr(bad, b"evil")
    with pytest.raises(DataError, match="unsafe path"):
        safe_extract(z, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.txt").exists()


def test_drive_ids_and_offline_download_fails_fast(tmp_path):
    fid = "1AbCdEfGhIjKlMnOpQrStUvWxYz012345"
    assert drive_file_id(f"https://drive.google.com/file/d/{fid}/view?usp=sharing") == fid
    assert drive_file_id(f"https://drive.google.com/uc?id={fid}") == fid
    assert drive_file_id(f"gdrive:{fid}") == fid and drive_file_id(fid) == fid
    assert drive_file_id("runs/data") is None
    with pytest.raises(DataError, match="could not download Google Drive file"):
        resolve_data(f"gdrive:{fid}", cache=tmp_path)


def test_unknown_data_string(tmp_path):
    with pytest.raises(DataError, match="not an existing folder"):
        resolve_data("no/such/dir", cache=tmp_path)
    with pytest.raises(KeyError, match="streets"):
        resolve_data("synthetic:nope", cache=tmp_path)
