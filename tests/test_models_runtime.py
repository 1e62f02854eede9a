"""Model registry, offline fallback, parameter groups, the torchvision guard and the runtime helpers."""

import os
import subprocess
import sys
import time

import pytest
import torch

import seglib
from seglib.models import build_model
from seglib.runtime import in_colab, pick_device, workspace
from seglib.train.optim import build_optimizer, param_groups, set_lr


def test_torchvision_guard_makes_smp_and_timm_import():
    assert seglib.TORCHVISION in ("ok", "shimmed")
    import segmentation_models_pytorch  # noqa: F401
    import timm  # noqa: F401
    import torchvision

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=torch.float)
    assert torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist() == [0, 2]


def test_guard_is_a_noop_where_torchvision_is_absent():
    code = ("import sys; sys.modules['torchvision'] = None\n"
            "from seglib._torchvision_guard import ensure_torchvision; print(ensure_torchvision())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "absent"


def test_jetcar_unet_shape_and_parameter_count():
    m = build_model("unet_mobilenet_v2", classes=22, encoder_weights=None)
    assert sum(p.numel() for p in m.parameters()) == 6_631_990
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 22, 64, 64)


def test_offline_imagenet_weights_fall_back_fast_and_say_so(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    t0 = time.monotonic()
    with pytest.warns(UserWarning, match="randomly initialised encoder"):
        m = build_model("unet_mobilenet_v2", classes=3, encoder_weights="imagenet")
    assert time.monotonic() - t0 < 10 and m.encoder_weights_loaded is None
    assert c.HF_HUB_OFFLINE is False  # restored


def test_encoder_group_gets_half_lr_and_own_weight_decay():
    m = build_model("unet_mobilenet_v2", classes=4, encoder_weights=None)
    groups = param_groups(m, 1e-3, 3e-4, 0.5, 3e-5)
    enc, rest = groups
    assert (enc["name"], enc["lr"], enc["weight_decay"]) == ("encoder", 5e-4, 3e-5)
    assert (rest["name"], rest["lr"], rest["weight_decay"]) == ("rest", 1e-3, 3e-4)
    n_enc = sum(p.numel() for p in m.encoder.parameters())
    assert sum(p.numel() for p in enc["params"]) == n_enc
    opt = build_optimizer("radam_lookahead", m, 1e-3, 3e-4, 0.5, 3e-5)
    assert type(opt).__name__ == "Lookahead" and type(opt._base_optimizer).__name__ == "RAdam"
    assert set_lr(opt, 1e-4) == [5e-5, 1e-4]


def test_workspace_defaults_and_colab_detection(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ws = workspace("exp1")
    assert ws.workdir == ws.local and str(ws.workdir) == os.path.join("runs", "exp1") and not ws.mirrored
    assert workspace("e", tmp_path / "d", tmp_path / "l").mirrored
    with pytest.raises(ValueError, match="plain folder name"):
        workspace("../escape")
    assert not in_colab()
    monkeypatch.setenv("SEGLIB_ENV", "colab")
    assert in_colab()
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda")


def test_show_tensorboard_inline_on_colab_and_a_command_elsewhere(monkeypatch, capsys):
    import IPython

    from seglib.runtime import show_tensorboard

    show_tensorboard("runs/x/tensorboard")
    assert capsys.readouterr().out.strip() == "tensorboard --logdir runs/x/tensorboard"

    calls = []

    class FakeShell:
        def run_line_magic(self, name, line):
            calls.append((name, line))

    monkeypatch.setenv("SEGLIB_ENV", "colab")
    monkeypatch.setattr(IPython, "get_ipython", lambda: FakeShell())
    show_tensorboard("/content/x/tensorboard")
    assert calls == [("load_ext", "tensorboard"), ("tensorboard", "--logdir /content/x/tensorboard")]
