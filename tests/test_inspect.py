"""Tests for seglib.inspect: rendering helpers, plots and headless widget viewers."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from seglib.data.classes import JETCAR_CLASS_NAMES, colorize, palette  # noqa: E402
from seglib.inspect import (  # noqa: E402
    DepthSegViewer,
    SegmentationViewer,
    binary_iou,
    depth_rmse,
    depth_to_rgb,
    error_map,
    normalize_confusion,
    order_worst_first,
    overlay,
    per_image_iou,
    plot_confusion_matrix,
    plot_history,
    plot_loss_comparison,
    plot_per_class_iou,
    prediction_grid,
    render_sample,
)
from seglib.metrics import DepthSegMetrics, SegmentationMetrics  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAMES4 = ["bg", "road", "line", "sign"]
COLORS4 = palette(4)


def _img(h=6, w=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _mask(h=6, w=8, n=4, seed=0):
    return np.random.default_rng(seed).integers(0, n, (h, w))


# ---------------------------------------------------------------- render
def test_overlay_alpha_extremes_and_ignore():
    img, m = _img(), _mask()
    np.testing.assert_array_equal(overlay(img, m, COLORS4, alpha=0.0), img)
    np.testing.assert_array_equal(overlay(img, m, COLORS4, alpha=1.0), colorize(m, COLORS4))
    m[0, :] = 255
    out = overlay(img, m, COLORS4, alpha=1.0, ignore_index=255)
    np.testing.assert_array_equal(out[0], img[0])
    np.testing.assert_array_equal(out[1:], colorize(m, COLORS4)[1:])
    half = overlay(img, m, COLORS4, alpha=0.5, ignore_index=255)
    expect = np.rint(0.5 * img[1:].astype(float) + 0.5 * COLORS4[m[1:]]).astype(np.uint8)
    np.testing.assert_array_equal(half[1:], expect)


def test_overlay_bad_input():
    img, m = _img(), _mask()
    with pytest.raises(ValueError, match="uint8"):
        overlay(img.astype(np.float32), m, COLORS4)
    with pytest.raises(ValueError, match="integer"):
        overlay(img, m.astype(np.float32), COLORS4)
    with pytest.raises(ValueError, match="same H x W"):
        overlay(img, m[:-1], COLORS4)
    m[2, 3] = 7
    with pytest.raises(ValueError, match=r"\[7\].*0\.\.3"):
        overlay(img, m, COLORS4)
    with pytest.raises(ValueError, match="alpha"):
        overlay(img, _mask(), COLORS4, alpha=1.5)


def test_per_image_iou_hand_computed():
    pred = np.array([[0, 0, 1], [1, 2, 2]])
    target = np.array([[0, 1, 1], [1, 255, 2]])
    # class 0: I=1 U=2; class 1: I=2 U=3; class 2: I=1 U=1 (pred 2 under the ignore pixel excluded);
    # class 3 absent from both -> not averaged.
    expect = (1 / 2 + 2 / 3 + 1) / 3
    assert per_image_iou(pred, target, 4, ignore_index=255) == pytest.approx(expect)
    assert per_image_iou(target.clip(0, 3), target.clip(0, 3), 4) == pytest.approx(1.0)
    assert math.isnan(per_image_iou(np.zeros((2, 2), int), np.full((2, 2), 255), 4, ignore_index=255))
    with pytest.raises(ValueError, match="outside"):
        per_image_iou(pred, target, 4)  # 255 without ignore_index


def test_per_image_iou_in_range_ignore_class_not_averaged():
    pred = np.array([[0, 1, 2]])
    target = np.array([[0, 1, 1]])  # class 2 is the void class -> its prediction counts as wrong only
    assert per_image_iou(pred, target, 3, ignore_index=2) == pytest.approx((1 + 1 / 2) / 2)


def test_viewer_iou_is_the_metrics_iou():
    rng = np.random.default_rng(3)
    for _ in range(20):
        target = rng.integers(0, 5, (6, 7))
        target[rng.random((6, 7)) < 0.2] = 255
        pred = np.where(rng.random((6, 7)) < 0.5, target.clip(0, 4), rng.integers(0, 5, (6, 7)))
        m = SegmentationMetrics(5, ignore_index=255)
        m.update(torch.nn.functional.one_hot(torch.from_numpy(pred), 5).permute(2, 0, 1)[None].float(),
                 torch.from_numpy(target)[None])
        assert per_image_iou(pred, target, 5, ignore_index=255) == m.compute()["miou"]


def test_order_worst_first_nan_last():
    np.testing.assert_array_equal(order_worst_first([0.5, np.nan, 0.1, 0.9, np.nan, 0.1]), [2, 5, 0, 3, 1, 4])
    with pytest.raises(ValueError):
        order_worst_first(np.zeros((2, 2)))


def test_prediction_grid_layout():
    n, h, w = 3, 5, 7
    imgs = [_img(h, w, k) for k in range(n)]
    tms = [_mask(h, w, seed=10 + k) for k in range(n)]
    pms = [_mask(h, w, seed=20 + k) for k in range(n)]
    grid = prediction_grid(imgs, tms, pms, COLORS4)
    assert grid.dtype == np.uint8 and grid.shape == (n * h + 2 * (n - 1), 3 * w + 4, 3)
    for k in range(n):
        y = k * (h + 2)
        np.testing.assert_array_equal(grid[y:y + h, :w], imgs[k])
        np.testing.assert_array_equal(grid[y:y + h, w + 2:2 * w + 2], colorize(tms[k], COLORS4))
        np.testing.assert_array_equal(grid[y:y + h, 2 * (w + 2):2 * (w + 2) + w], colorize(pms[k], COLORS4))
    assert (grid[h:h + 2] == 255).all() and (grid[:, w:w + 2] == 255).all()
    with pytest.raises(ValueError, match="resize"):
        prediction_grid([imgs[0], _img(4, 4)], tms[:2], pms[:2], COLORS4)
    with pytest.raises(ValueError, match="same non-zero number"):
        prediction_grid(imgs, tms, pms[:2], COLORS4)


def test_render_sample_legend_title_and_show():
    img, tm = _img(), np.zeros((6, 8), int)
    tm[:3] = 1
    pm = tm.copy()
    pm[:, :4] = 2
    fig = render_sample(img, tm, pm, class_names=NAMES4, show="both", title="s0")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["0 bg", "1 road", "2 line"]
    iou = per_image_iou(pm, tm, 4)
    assert fig.get_suptitle() == f"s0 | IoU {iou:.3f}"
    only_true = render_sample(img, tm, class_names=NAMES4)
    assert len(only_true.axes) == 1 and only_true.get_suptitle() == ""
    assert [t.get_text() for t in only_true.legends[0].get_texts()] == ["0 bg", "1 road"]
    with pytest.raises(ValueError, match="needs pred_mask"):
        render_sample(img, tm, class_names=NAMES4, show="pred")
    with pytest.raises(ValueError, match="show"):
        render_sample(img, tm, pm, class_names=NAMES4, show="left")


def test_depth_helpers():
    d = np.array([[0.0, 0.5], [1.0, np.nan]], np.float32)
    rgb = depth_to_rgb(d)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert (rgb[1, 1] == 128).all() and not (rgb[0, 0] == rgb[1, 0]).all()
    with pytest.raises(ValueError, match="vmax"):
        depth_to_rgb(d, vmin=1, vmax=1)
    with pytest.raises(ValueError, match="float"):
        depth_to_rgb(np.zeros((2, 2), np.uint8))
    t = np.zeros((2, 2), np.float32)
    p = np.array([[0.1, 0.3], [0.0, 0.2]], np.float32)
    valid = np.array([[True, True], [True, False]])
    em = error_map(p, t, valid)
    assert (em[1, 1] == 128).all() and em.dtype == np.uint8
    assert depth_rmse(p, t, valid) == pytest.approx(math.sqrt((0.01 + 0.09) / 3))
    assert math.isnan(depth_rmse(p, t, np.zeros((2, 2), bool)))
    assert binary_iou(np.array([[1, 1, 0]]), np.array([[1, 0, 0]])) == pytest.approx(0.5)
    # one rule for empty masks (seglib.metrics.functional): the viewers score an empty prediction of an empty
    # mask 1, like the metrics (the old viewer said NaN, the old metrics 1)
    empty = np.zeros((2, 2), bool)
    assert binary_iou(empty, empty) == 1.0
    one = torch.zeros(1, 1, 2, 2)
    m = DepthSegMetrics()
    m.update((one, one - 8.0), {"depth": one + 0.5, "mask": one})
    assert m.compute()["mask_iou"] == binary_iou(empty, empty)
    assert per_image_iou(np.zeros((2, 2), int), np.zeros((2, 2), int), 2) == 1.0  # background only: its IoU is 1


# ---------------------------------------------------------------- plots
HISTORY = [
    {"epoch": e, "lr": 1e-3 * 0.5 ** e, "train_loss": 1.0 / e, "val_loss": 1.1 / e, "val_miou": 0.1 * e,
     "train_miou": 0.12 * e, "val_dice": 0.2 * e, "val_pixel_accuracy": 0.8, "seconds": 12.0,
     "img_size": 160, "val_iou_per_class": [0.1, 0.2]}
    for e in range(1, 5)
]


def test_plot_history_axes_and_labels():
    fig = plot_history(HISTORY)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "miou", "dice", "pixel_accuracy", "learning rate"]
    labels = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes[:2]]
    assert labels[0] == ["train_loss", "val_loss"] and labels[1] == ["train_miou", "val_miou"]
    assert fig.axes[-1].get_legend() is None  # one curve: the title names it
    assert fig.axes[-1].get_yscale() == "log"
    np.testing.assert_allclose(fig.axes[0].lines[1].get_xdata(), [1, 2, 3, 4])
    sub = plot_history(HISTORY, metrics=["miou", "seconds"])
    assert [ax.get_title() for ax in sub.axes] == ["miou", "seconds"]
    with pytest.raises(ValueError, match="non-empty"):
        plot_history([])
    with pytest.raises(ValueError, match="not in the history"):
        plot_history(HISTORY, metrics=["bogus"])


def test_plot_per_class_iou():
    iou = [0.5, np.nan, 1.0, 0.0]
    fig = plot_per_class_iou(iou, NAMES4, colors=COLORS4)
    (ax,) = fig.axes
    assert len(ax.patches) == 4
    assert [t.get_text() for t in ax.texts].count("n/a") == 1
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["mean IoU 0.500"]
    assert [t.get_text() for t in ax.get_yticklabels()] == NAMES4
    with pytest.raises(ValueError, match="class names"):
        plot_per_class_iou(iou, NAMES4[:3])


def test_confusion_matrix_normalised_rows():
    n = len(JETCAR_CLASS_NAMES)
    cm = np.random.default_rng(0).integers(0, 30, (n, n)).astype(np.int64)
    cm[4] = 0  # class 4 never occurs in the ground truth
    fig = plot_confusion_matrix(cm, JETCAR_CLASS_NAMES)
    assert len(fig.axes) == 2  # matrix + colour bar
    shown = np.ma.filled(fig.axes[0].images[0].get_array().astype(float), np.nan)
    np.testing.assert_allclose(shown, normalize_confusion(cm, "true"))
    present = cm.sum(1) > 0
    np.testing.assert_allclose(np.nansum(shown[present], 1), 1.0)
    assert np.isnan(shown[4]).all()
    np.testing.assert_allclose(np.nansum(normalize_confusion(cm, "pred"), 0), 1.0)
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix(cm[:, :3], JETCAR_CLASS_NAMES)
    with pytest.raises(ValueError, match="integer"):
        plot_confusion_matrix(cm.astype(float), JETCAR_CLASS_NAMES)


def test_plot_loss_comparison():
    other = [dict(r, val_loss=r["val_loss"] * 2) for r in HISTORY]
    fig = plot_loss_comparison({"unet": HISTORY, "fpn": other}, metrics=("val_loss", "val_miou"))
    assert [ax.get_title() for ax in fig.axes] == ["val_loss", "val_miou"]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["unet", "fpn"]
    np.testing.assert_allclose(fig.axes[0].lines[1].get_ydata(), [r["val_loss"] * 2 for r in HISTORY])
    with pytest.raises(ValueError, match="no run has metric"):
        plot_loss_comparison({"a": HISTORY}, metrics=("val_nope",))
    with pytest.raises(ValueError):
        plot_loss_comparison({})


# ---------------------------------------------------------------- widgets
def _seg_samples():
    sizes = [(6, 8), (10, 12), (6, 8), (8, 8)]
    imgs = [_img(h, w, k) for k, (h, w) in enumerate(sizes)]
    tms = [_mask(h, w, seed=30 + k) for k, (h, w) in enumerate(sizes)]
    pms = [t.copy() for t in tms]
    pms[1][:5] = 0  # mostly right
    pms[2] = (pms[2] + 1) % 4  # all wrong
    pms[3][:, :4] = 3  # half wrong
    return imgs, tms, pms


def names_at(v, pos):
    return v.names[v.order[pos]] + " |"


def test_segmentation_viewer_headless(tmp_path):
    imgs, tms, pms = _seg_samples()
    v = SegmentationViewer(imgs, tms, pms, class_names=NAMES4, names=["a", "b", "c", "d"])
    ious = np.array([per_image_iou(p, t, 4) for p, t in zip(pms, tms)])
    np.testing.assert_allclose(v.ious, ious)
    np.testing.assert_array_equal(v.order, [0, 1, 2, 3])
    assert v.render_count == 1 and "<b>a</b>" in v.label.value
    v.worst_first.value = True
    np.testing.assert_array_equal(v.order, np.argsort(ious, kind="stable"))
    assert v.order[0] == 2 and np.all(np.diff(v.ious[v.order]) >= 0)
    assert v.slider.value == 0 and "<b>c</b>" in v.label.value
    assert v.current_figure.get_suptitle().startswith("c | IoU 0.000")
    assert "c | IoU" in v.output.outputs[0]["data"]["text/plain"]
    before = v.render_count
    v.slider.value = 1  # next-worst sample
    assert v.render_count == before + 1 and v.current_figure.get_suptitle().startswith(names_at(v, 1))
    v.view.value = "true"
    titles_true = [ax.get_title() for ax in v.current_figure.axes]
    img_true = v.current_figure.axes[0].images[0].get_array().copy()
    v.view.value = "pred"
    assert [ax.get_title() for ax in v.current_figure.axes] == ["prediction"] != titles_true
    assert not np.array_equal(v.current_figure.axes[0].images[0].get_array(), img_true)
    v.view.value = "both"
    assert len(v.current_figure.axes) == 2
    v.opacity.value = 0.0  # overlay shows the bare image
    idx = v.order[1]
    np.testing.assert_array_equal(v.current_figure.axes[0].images[0].get_array(), imgs[idx])
    assert v.render_count == before + 5
    out = v.save_png(tmp_path / "s.png", i=0)
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert v.figure(0).get_suptitle().startswith("c |")
    with pytest.raises(ValueError, match="out of range"):
        v.figure(4)


def test_segmentation_viewer_bad_input():
    imgs, tms, pms = _seg_samples()
    with pytest.raises(ValueError, match="same non-zero number"):
        SegmentationViewer(imgs, tms, pms[:2], class_names=NAMES4)
    tms[1] = tms[1][:-1]
    with pytest.raises(ValueError, match="true_masks\\[1\\]"):
        SegmentationViewer(imgs, tms, pms, class_names=NAMES4)


def test_depthseg_viewer(tmp_path):
    rng = np.random.default_rng(1)
    n, h, w = 3, 8, 10
    imgs = [_img(h, w, k) for k in range(n)]
    tmask = [rng.integers(0, 2, (h, w)) for _ in range(n)]
    pmask = [tmask[0].copy(), 1 - tmask[1], rng.integers(0, 2, (h, w))]
    tdep = [rng.random((h, w)).astype(np.float32) for _ in range(n)]
    pdep = [np.clip(d + 0.1 * k, 0, 1) for k, d in enumerate(tdep)]
    valid = [rng.random((h, w)) > 0.2 for _ in range(n)]
    v = DepthSegViewer(imgs, tmask, pmask, tdep, pdep, valid)
    assert v.ious[0] == pytest.approx(1.0) and v.ious[1] == pytest.approx(0.0)
    assert v.rmses[0] == pytest.approx(0.0)
    assert v.rmses[2] == pytest.approx(depth_rmse(pdep[2], tdep[2], valid[2]))
    assert "RMSE" in v.label.value and "IoU 1.000" in v.current_figure.get_suptitle()
    v.worst_first.value = True
    np.testing.assert_array_equal(v.order, order_worst_first(v.ious))
    assert v.order[0] == 1
    count = v.render_count
    v.depth_view.value = "error"
    assert v.render_count == count + 1
    top = float(np.abs(pdep[v.order[0]] - tdep[v.order[0]])[valid[v.order[0]]].max())
    assert v.current_figure.axes[1].get_title() == f"|pred - true| depth (0 to {top:.3g})"  # the colour scale's top
    v.mask_view.value = "true"
    assert v.current_figure.axes[0].get_title() == "mask: ground truth"
    assert v.save_png(tmp_path / "d.png").read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError):
        DepthSegViewer(imgs, tmask, pmask, tdep, pdep[:2])
