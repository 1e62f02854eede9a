"""Issue 14: a trained run from its checkpoint alone (seglib.load_run): preprocess, class names and colours,
prediction of a folder / zip / list at the original resolution, written as PNGs, and clear refusals."""

import shutil
import zipfile
from io import BytesIO

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from deploy_runs import depth_run, jetcar_run
from PIL import Image
from torch import nn

import seglib
from seglib.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from seglib.deploy import OnnxMismatch, onnx_export
from seglib.train.ckptfile import CheckpointError


@pytest.fixture(scope="module")
def jetcar(tmp_path_factory):
    return jetcar_run(tmp_path_factory.mktemp("jetcar"))


def reference_ids(model, rgb: np.ndarray, size: int) -> np.ndarray:
    """Class ids of ``rgb`` written out independently of seglib: INTER_AREA resize, ImageNet normalisation,
    forward, bilinear resize of the logits to the image's size, argmax."""
    x = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    x = (x - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
    with torch.no_grad():
        logits = model(torch.from_numpy(x).permute(2, 0, 1)[None])
    return F.interpolate(logits, size=rgb.shape[:2], mode="bilinear", align_corners=False)[0].argmax(0).numpy()


def mixed_folder(folder, images):
    """Four real images saved as RGB, grey, RGBA and 16-bit grey (one in a sub-folder, one resized to 130 x 70),
    plus files that are not images. Returns ``{name: the RGB array the model should see}``."""
    folder.mkdir()
    (folder / "sub").mkdir()
    rgb = [np.asarray(Image.open(p).convert("RGB")) for p in images]
    wide = cv2.resize(rgb[0], (130, 70), interpolation=cv2.INTER_AREA)
    Image.fromarray(wide).save(folder / "a_rgb.png")
    grey = np.asarray(Image.fromarray(rgb[1]).convert("L"))
    Image.fromarray(grey).save(folder / "b_grey.png")
    Image.fromarray(np.dstack([rgb[2], np.full(rgb[2].shape[:2], 90, np.uint8)])).save(folder / "c_rgba.png")
    grey16 = np.asarray(Image.fromarray(rgb[3]).convert("L")).astype(np.uint16) * 257
    Image.fromarray(grey16).save(folder / "sub" / "d_16bit.png")
    assert Image.open(folder / "sub" / "d_16bit.png").mode.startswith("I;16")
    (folder / "notes.txt").write_text("not an image")
    (folder / "fake.png").write_text("not a png either")
    (folder / ".DS_Store").write_bytes(b"\0")
    g3 = lambda g: np.repeat(g[..., None], 3, 2)  # noqa: E731
    return {"a_rgb": wide, "b_grey": g3(grey), "c_rgba": rgb[2], "sub/d_16bit": g3((grey16 // 257).astype(np.uint8))}


def test_load_run_predicts_a_folder_of_any_images_as_the_model_sees_them(jetcar, tmp_path, capsys):
    run = jetcar
    loaded = seglib.load_run(run.ws.workdir)  # the Drive WORKDIR: nothing but its checkpoints is used
    assert loaded.checkpoint == run.ws.workdir / "checkpoints" / "best.pt" and not loaded.model.training
    assert loaded.task == "segmentation" and loaded.class_names == run.class_names and len(loaded.class_names) == 22
    assert np.array_equal(loaded.colors, run.colors) and loaded.img_size == run.eval_size() == 64
    assert loaded.input_names == ("image",) and loaded.output_names == ("logits",)

    x = loaded.preprocess(run.splits["val"][0].image)  # the validation pipeline, bit for bit
    assert x.shape == (1, 3, 64, 64) and x.dtype == torch.float32
    assert torch.equal(x[0], run.dataset("val")[(1, 0)]["input"])

    expected = mixed_folder(tmp_path / "in", [s.image for s in run.splits["test"]])
    preds = loaded.predict(tmp_path / "in", out=tmp_path / "out.zip", progress=False)
    assert "skipped 2 file(s)" in capsys.readouterr().out
    assert preds.names == sorted(expected) and len(preds) == 4  # sorted by relative path
    assert {n for n, _ in preds.skipped} == {"notes.txt", "fake.png"}
    model = loaded.model.cpu()
    for name, pred in zip(preds.names, preds):
        rgb = expected[name]
        assert pred.shape == rgb.shape[:2] and pred.dtype == np.uint8  # the original resolution (130 x 70 too)
        assert np.array_equal(pred, reference_ids(model, rgb, 64)), name
    with zipfile.ZipFile(tmp_path / "out.zip") as zf:
        names = sorted(zf.namelist())
        assert names == sorted(["Pred_a_rgb.png", "Pred_b_grey.png", "Pred_c_rgba.png", "sub/Pred_d_16bit.png"] +
                               [f"preview/{n}" for n in ("Pred_a_rgb.png", "Pred_b_grey.png", "Pred_c_rgba.png",
                                                        "sub/Pred_d_16bit.png")])
        png = np.asarray(Image.open(BytesIO(zf.read("sub/Pred_d_16bit.png"))))
        assert np.array_equal(png, preds[3])
        preview = np.asarray(Image.open(BytesIO(zf.read("preview/Pred_a_rgb.png"))))
        assert preview.shape == (70, 260, 3) and np.array_equal(preview[:, :130], expected["a_rgb"])

    # one array, a list, a zip and a folder output give the same masks
    one = loaded.predict(expected["c_rgba"], progress=False)
    assert len(one) == 1 and np.array_equal(one[0], preds[2])
    shutil.make_archive(str(tmp_path / "in_zip"), "zip", tmp_path / "in")
    from_zip = loaded.predict(tmp_path / "in_zip.zip", out=tmp_path / "out_dir", progress=False)
    assert from_zip.names == preds.names and all(np.array_equal(a, b) for a, b in zip(from_zip, preds))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out_dir" / "Pred_b_grey.png")), preds[1])


def test_run_export_goes_through_load_run_and_matches_the_run_model(jetcar):
    run = jetcar
    path = run.export()
    ids = {s.name: pred for s, _img, pred, _ in seglib.predict.predict_samples(
        run.load_model(), run.splits["test"], run.eval_size())}
    with zipfile.ZipFile(path) as zf:
        for name, pred in ids.items():
            png = np.asarray(Image.open(BytesIO(zf.read(name.replace("Img", "Pred") + ".png"))))
            assert np.array_equal(png, pred)


def test_checkpoints_save_task_and_classes_and_old_ones_still_load(jetcar, tmp_path):
    ck = torch.load(jetcar.ws.workdir / "checkpoints" / "best.pt", weights_only=True)
    assert ck["task"] == "multiclass" and ck["classes"]["names"] == jetcar.class_names
    old = seglib.load_run("tests/fixtures/run_v1/checkpoints/best.pt", device="cpu")  # no task, no classes
    assert old.task == "segmentation" and old.class_names[5] == "lane_my_dir" and old.config.model == "unet"
    assert old.epoch == 1 and old.img_size == 64
    pred = old.predict(np.zeros((50, 70, 3), np.uint8), progress=False)[0]
    assert pred.shape == (50, 70) and pred.max() < 22


def test_bad_checkpoints_and_inputs_are_refused_with_what_to_do(jetcar, tmp_path):
    ck = torch.load(jetcar.ws.workdir / "checkpoints" / "best.pt", weights_only=True)
    torch.save(ck["model"], tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="plain state_dict"):
        seglib.load_run(tmp_path / "plain.pt")
    other = dict(ck, config=dict(ck["config"], model="my_net"), versions={"seglib": "9.0"})
    torch.save(other, tmp_path / "other_model.pt")
    with pytest.raises(CheckpointError, match=r"model 'my_net' \(seglib 9.0\).*known: .*unet_mobilenet_v2"):
        seglib.load_run(tmp_path / "other_model.pt")
    torch.save(dict(ck, config=dict(ck["config"], n_classes=12)), tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="do not fit the model"):
        seglib.load_run(tmp_path / "mismatch.pt")
    torch.save(dict(ck, format="seglib-checkpoint/2", versions={"seglib": "0.9"}), tmp_path / "format2.pt")
    with pytest.raises(CheckpointError, match=r"format 'seglib-checkpoint/2' \(seglib 0.9\).*Upgrade seglib"):
        seglib.load_run(tmp_path / "format2.pt")
    torch.save(dict(ck, task="panoptic"), tmp_path / "newer.pt")
    with pytest.raises(CheckpointError, match="newer seglib"):
        seglib.load_run(tmp_path / "newer.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        seglib.load_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        seglib.load_run(tmp_path / "nowhere")
    loaded = seglib.load_run(jetcar.ws.workdir)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    with pytest.raises(ValueError, match=r"no readable image .*a.txt"):
        loaded.predict(tmp_path / "docs", progress=False)
    with pytest.raises(ValueError, match="is a file"):
        loaded.predict(np.zeros((8, 8, 3), np.uint8), out=tmp_path / "docs" / "a.txt", progress=False)


def test_depth_model_predicts_mask_and_depth_from_two_images(tmp_path):
    run = depth_run(tmp_path)
    loaded = seglib.load_run(run.ws.workdir)
    assert loaded.task == "depth" and loaded.input_names == ("bg", "bg_fg")
    assert loaded.output_names == ("depth_logits", "mask_logits") and loaded.img_size == run.eval_size()
    val = run.splits["val"]
    with pytest.raises(ValueError, match="backgrounds="):
        loaded.predict([s.image for s in val], progress=False)
    preds = loaded.predict([s.image for s in val], backgrounds=[s.bg for s in val], progress=False)
    for p, (_s, _d, depth, prob) in zip(preds, run.predict("val", targets=False)):
        assert p["depth"].dtype == np.float32 and p["mask"].dtype == np.uint8
        assert np.allclose(p["depth"], depth, atol=1e-6) and np.allclose(p["mask_probability"], prob, atol=1e-6)
        assert np.array_equal(p["mask"], (prob > 0.5).astype(np.uint8))
    zip_path = run.export("val")
    with zipfile.ZipFile(zip_path) as zf:
        assert "README.txt" in zf.namelist()
        d16 = np.asarray(Image.open(BytesIO(zf.read(f"depth/{val[0].name}.png"))))
        assert d16.dtype == np.uint16 and np.abs(d16 / 65535.0 - preds[0]["depth"]).max() < 1e-4


def test_onnx_exporter_refusals_and_a_failed_check_keeps_the_old_file(jetcar, tmp_path, monkeypatch):
    with pytest.raises(TypeError, match="exports seglib runs"):
        seglib.export_onnx(nn.Conv2d(3, 2, 1), tmp_path / "x.onnx")
    run = jetcar
    loaded = seglib.load_run(run.ws.workdir, device="cpu")
    with pytest.raises(ValueError, match="images="):
        seglib.export_onnx(loaded, tmp_path / "x.onnx")
    images = [s.image for s in run.splits["val"][:2]]
    with pytest.raises(RuntimeError, match="could not write opset 13"):
        seglib.export_onnx(loaded, tmp_path / "x.onnx", images=images, opset=13)
    assert not list(tmp_path.glob("x.onnx*"))
    target = tmp_path / "model.onnx"
    target.write_bytes(b"the export of yesterday")
    monkeypatch.setitem(onnx_export.ATOL, False, 1e-12)  # no graph can meet this: the check must refuse
    with pytest.raises(OnnxMismatch, match="disagrees with PyTorch"):
        seglib.export_onnx(loaded, target, images=images)
    assert target.read_bytes() == b"the export of yesterday"
    assert (tmp_path / "model.onnx.rejected").is_file() and not list(tmp_path.glob("*.tmp-*"))
