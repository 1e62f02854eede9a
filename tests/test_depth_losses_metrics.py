"""Issue 3: DSResNet shape/size facts, and the depth + mask losses and metrics against independent NumPy values."""

import math

import numpy as np
import pytest
import pytorch_msssim
import torch
from scipy.signal import convolve2d

from seglib.losses import LOSSES, RmseBceDiceLoss, RmseBceLoss, SsimDiceLoss, build_loss, masked_ssim
from seglib.metrics import DepthSegMetrics, higher_is_better, upgrade_keys
from seglib.models import build_model


# ----------------------------------------------------------------------------------------------- model
def test_dsresnet_parameter_count_matches_the_original():
    model = build_model("dsresnet", classes=1)
    assert sum(p.numel() for p in model.parameters()) == 10_343_490  # seed 000's reported count
    assert sum(p.numel() for p in build_model("dsresnet", classes=1, width=8).parameters()) < 10_343_490 / 3


@pytest.mark.parametrize("inputs", ["bg+bg_fg", "rgb"])
def test_dsresnet_outputs_depth_and_mask_logits(inputs):
    torch.manual_seed(0)
    model = build_model("dsresnet", classes=1, inputs=inputs, width=2).eval()
    x = torch.randn(2, 3, 64, 96)
    out = model({"bg": x, "bg_fg": x.flip(0)} if inputs == "bg+bg_fg" else x)
    assert isinstance(out, tuple) and len(out) == 2
    assert all(o.shape == (2, 1, 64, 96) and o.dtype == torch.float32 for o in out)


def test_dsresnet_refuses_bad_input():
    model = build_model("dsresnet", classes=1, width=2)
    with pytest.raises(ValueError, match="multiples of 32"):
        model({"bg": torch.zeros(1, 3, 48, 48), "bg_fg": torch.zeros(1, 3, 48, 48)})
    with pytest.raises(ValueError, match="dict"):
        model(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="N_CLASSES=1"):
        build_model("dsresnet", classes=2)
    with pytest.raises(ValueError, match="inputs"):
        build_model("dsresnet", classes=1, inputs="rgbd")


# ----------------------------------------------------------------------------------------------- data for losses
def _batch(seed=0, n=3, h=24, w=20, invalid=True):
    rng = np.random.default_rng(seed)
    dl, ml = rng.normal(0, 1.5, (n, 1, h, w)), rng.normal(0, 1.5, (n, 1, h, w))
    depth, mask = rng.uniform(0.05, 1, (n, 1, h, w)), (rng.uniform(size=(n, 1, h, w)) > 0.6).astype(float)
    valid = np.ones((n, 1, h, w))
    if invalid:
        valid[:, :, :5, :7] = 0
        depth[valid == 0] = 0.0
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return (t(dl), t(ml)), {"depth": t(depth), "mask": t(mask), "valid": t(valid)}, (dl, ml, depth, mask, valid)


def _sig(x):
    return 1 / (1 + np.exp(-x))


def _np_bce(logits, t):
    return np.mean(np.maximum(logits, 0) - logits * t + np.log1p(np.exp(-np.abs(logits))))


def _np_dice(p, t, smooth):
    return 1 - (2 * (p * t).sum() + smooth) / (p.sum() + t.sum() + smooth)


def _np_ssim_map(x, y):
    """Wang et al. 2004 SSIM map, Gaussian 11 x 11 window (sigma 1.5), 'valid' region, data range 1."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5 ** 2))
    win = np.outer(g, g) / g.sum() ** 2

    def f(a):
        return convolve2d(a, win, mode="valid")

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mx, my = f(x), f(y)
    sx, sy, sxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sx + sy + c2))


# ----------------------------------------------------------------------------------------------- losses
def test_rmse_bce_dice_equals_numpy_and_ignores_invalid_depth():
    outputs, target, (dl, ml, depth, mask, valid) = _batch()
    loss = build_loss("rmse_bce_dice", 1)
    d = _sig(dl)
    rmse = math.sqrt(((d - depth) ** 2 * valid).sum() / valid.sum() + 1e-6)
    expected = 2 * rmse + _np_bce(ml, mask) + 2 * _np_dice(_sig(ml), mask, 1e-6)
    assert float(loss(outputs, target)) == pytest.approx(expected, rel=1e-5)
    terms = loss.terms(outputs, target)
    assert float(terms["rmse"]) == pytest.approx(rmse, rel=1e-5)
    # predictions on invalid pixels change nothing and get no gradient
    dl2 = outputs[0].clone()
    dl2[target["valid"] == 0] += 5.0
    dl2.requires_grad_(True)
    value = loss((dl2, outputs[1]), target)
    assert float(value.detach()) == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert float(dl2.grad[target["valid"] == 0].abs().max()) == 0.0


def test_rmse_without_valid_is_the_originals_sqrt_mse_plus_eps():
    outputs, target, (dl, ml, depth, mask, _) = _batch(invalid=False)
    del target["valid"]
    expected = 2 * math.sqrt(((_sig(dl) - depth) ** 2).mean() + 1e-6) + _np_bce(ml, mask)
    assert float(RmseBceLoss()(outputs, target)) == pytest.approx(expected, rel=1e-5)


def test_loss_weights_are_parameters():
    outputs, target, _ = _batch(1)
    t = RmseBceDiceLoss().terms(outputs, target)
    custom = build_loss("rmse_bce_dice", 1, depth_weight=1.0, bce_weight=0.5, dice_weight=3.0)
    assert float(custom(outputs, target)) == pytest.approx(float(t["rmse"] + 0.5 * t["bce"] + 3 * t["dice"]), rel=1e-6)
    assert set(LOSSES.names()) >= {"rmse_bce_dice", "ssim_dice", "rmse_bce"}


def test_ssim_matches_pytorch_msssim_and_an_independent_numpy_implementation():
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(2, 1, 40, 36))
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    tx, ty = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    ours = float(masked_ssim(tx, ty))
    ref = float(pytorch_msssim.ssim(tx, ty, data_range=1.0, win_size=11, win_sigma=1.5))
    numpy_value = np.mean([_np_ssim_map(x[i, 0], y[i, 0]).mean() for i in range(2)])
    assert ours == pytest.approx(ref, abs=1e-6)
    assert ours == pytest.approx(numpy_value, abs=1e-5)
    assert float(masked_ssim(tx, tx)) == pytest.approx(1.0, abs=1e-6)


def test_ssim_dice_equals_numpy_with_invalid_windows_left_out():
    outputs, target, (dl, ml, depth, mask, valid) = _batch(2, h=30, w=28)
    d = _sig(dl)
    per_image = []
    for i in range(d.shape[0]):
        smap = _np_ssim_map(d[i, 0], depth[i, 0])
        full = convolve2d(valid[i, 0], np.ones((11, 11)), mode="valid") > 120.5  # all 121 pixels valid
        per_image.append(smap[full].mean())
    expected = 2 * (1 - np.mean(per_image)) + _np_dice(_sig(ml), mask, 1.0)
    assert float(SsimDiceLoss()(outputs, target)) == pytest.approx(expected, rel=1e-4)


# ----------------------------------------------------------------------------------------------- metrics
def test_metrics_equal_numpy_and_do_not_depend_on_batching():
    outputs, target, (dl, ml, depth, mask, valid) = _batch(4, n=5)
    p, d = _sig(ml), _sig(dl)
    soft = [((p[i] * mask[i]).sum() + 1e-6) / (p[i].sum() + mask[i].sum() - (p[i] * mask[i]).sum() + 1e-6)
            for i in range(5)]
    hard = []
    for i in range(5):
        b = p[i] > 0.5
        inter = (b & (mask[i] > 0)).sum()
        union = (b | (mask[i] > 0)).sum()
        hard.append(inter / union if union else 1.0)  # exact IoU; both empty -> 1
    v = valid > 0
    rel = v & (depth > 1e-4)
    expected = {
        "mask_iou_soft": np.mean(soft), "mask_iou": np.mean(hard),
        "rmse": math.sqrt(((d - depth)[v] ** 2).mean()),
        "abs_rel": (np.abs(d - depth)[rel] / depth[rel]).mean(),
        "delta1": (np.maximum(d[rel] / depth[rel], depth[rel] / d[rel]) < 1.25).mean(),
    }
    whole = DepthSegMetrics()
    whole.update(outputs, target)
    split = DepthSegMetrics()
    for sl in (slice(0, 2), slice(2, 5)):
        split.update(tuple(o[sl] for o in outputs), {k: t[sl] for k, t in target.items()})
    for m in (whole.compute(), split.compute()):
        for k, val in expected.items():
            assert m[k] == pytest.approx(val, rel=1e-5), k


def test_metric_names_and_directions_are_registered():
    assert higher_is_better("val_mask_iou") and higher_is_better("val_mask_iou_soft") and higher_is_better("val_delta1")
    assert not higher_is_better("val_rmse") and not higher_is_better("val_abs_rel")
    assert math.isnan(DepthSegMetrics().compute()["rmse"])
    assert DepthSegMetrics.keys == tuple(DepthSegMetrics().compute())
    old = {"epoch": 1, "val_iou": 0.5, "val_iou_soft": 0.4, "train_loss": 1.0, "val_iou_per_class": [1.0]}
    assert upgrade_keys([old], "depth") == [{"epoch": 1, "val_mask_iou": 0.5, "val_mask_iou_soft": 0.4,
                                             "train_loss": 1.0, "val_iou_per_class": [1.0]}]


def test_empty_mask_scores_one_and_mask_iou_is_exact():
    # image 0: prediction and mask empty (IoU 1 by the one rule); image 1: 1 of 3 foreground pixels found
    mask = torch.zeros(2, 1, 1, 4)
    mask[1, 0, 0, :3] = 1
    mask_logits = torch.full((2, 1, 1, 4), -8.0)
    mask_logits[1, 0, 0, 0] = 8.0
    depth = torch.full((2, 1, 1, 4), 0.5)
    m = DepthSegMetrics()
    m.update((torch.zeros(2, 1, 1, 4), mask_logits), {"depth": depth, "mask": mask})
    assert m.compute()["mask_iou"] == pytest.approx((1.0 + 1 / 3) / 2, abs=1e-12)  # old: 1e-6 smoothing
