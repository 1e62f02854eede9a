"""Tests for the viewers' fast rendering (issue 13): fixed layouts, live pictures and their PNGs, the study
explorer and the fixed-layout history plot."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from PIL import Image  # noqa: E402

from seglib.data.classes import JETCAR_CLASS_NAMES, palette  # noqa: E402
from seglib.inspect import (  # noqa: E402
    DepthSegViewer,
    SegmentationViewer,
    plot_history,
    plot_loss_comparison,
    render_depth_sample,
    render_sample,
)
from seglib.inspect.live import LegendTiles, panel_layout  # noqa: E402

NAMES4 = ["bg", "road", "line", "sign"]


def _img(h=6, w=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _overlaps(a, b) -> bool:
    """Whether two display-space Bboxes share an area (touching edges do not count)."""
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _drawn(fig):
    """Draw ``fig`` with the Agg canvas; its renderer (for get_window_extent)."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _png_pixels(output: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(output["data"]["image/png"]))).convert("RGB"))


@pytest.mark.parametrize("shape", [(224, 224), (90, 320), (320, 120)])
def test_render_sample_legend_below_title_and_inside(shape):
    h, w = shape
    names = list(JETCAR_CLASS_NAMES)
    tm = np.arange(h * w).reshape(h, w) % len(names)  # every class present: the tallest legend
    fig = render_sample(_img(h, w), tm, tm[::-1].copy(), class_names=names, show="both", title="x" * 40)
    assert fig.get_layout_engine() is None
    r = _drawn(fig)
    page = fig.bbox
    legend = fig.legends[0].get_window_extent(r)
    title = fig._suptitle.get_window_extent(r)
    assert len(fig.legends[0].get_texts()) == len(names)
    assert not _overlaps(legend, title), (legend, title)
    assert legend.y1 < title.y0  # below the title band, not level with it
    for box in (legend, title):
        assert page.x0 <= box.x0 and box.x1 <= page.x1 + 1 and page.y0 <= box.y0 and box.y1 <= page.y1 + 1
    for ax in fig.axes:
        assert not _overlaps(legend, ax.get_window_extent(r))
        assert not _overlaps(ax.title.get_window_extent(r), title)


def test_depth_figure_titles_readable():
    rng = np.random.default_rng(2)
    d = rng.random((8, 10)).astype(np.float32)
    m = rng.integers(0, 2, (8, 10))
    fig = render_depth_sample(_img(8, 10), m, m, d, d, mask_view="true", depth_view="error", title="a long sample name")
    r = _drawn(fig)
    boxes = [fig._suptitle.get_window_extent(r)] + [ax.title.get_window_extent(r) for ax in fig.axes]
    assert [ax.get_title() for ax in fig.axes] == ["mask: ground truth", "|pred - true| depth (0 to 0)"]
    for i, a in enumerate(boxes):
        assert fig.bbox.x0 <= a.x0 and a.x1 <= fig.bbox.x1 and a.y1 <= fig.bbox.y1
        assert a.height * 72 / fig.dpi >= 10  # 10 pt text or larger
        assert not any(_overlaps(a, b) for b in boxes[i + 1:])


def _smooth_samples(n=3, h=40, w=48):
    yy, xx = np.mgrid[0:h, 0:w]
    imgs = [np.stack([xx * 5 % 256, yy * 6 % 256, (xx + yy + 40 * k) % 256], -1).astype(np.uint8) for k in range(n)]
    tms = [((xx // 16 + yy // 20 + k) % 4) for k in range(n)]
    pms = [np.where(xx < 24, t, (t + 1) % 4) for t in tms]
    return imgs, tms, pms


def test_viewer_png_changes_with_every_action_and_matches_the_figure():
    imgs, tms, pms = _smooth_samples()
    v = SegmentationViewer(imgs, tms, pms, class_names=NAMES4, names=["a", "b", "c"])
    assert v.current_figure.get_layout_engine() is None
    seen = [v.output.outputs[0]["data"]["image/png"]]
    for act in (lambda: setattr(v.slider, "value", 1), lambda: setattr(v.view, "value", "true"),
                lambda: setattr(v.view, "value", "both"), lambda: setattr(v.opacity, "value", 0.9),
                lambda: setattr(v.worst_first, "value", True), lambda: setattr(v.slider, "value", 2)):
        count = v.render_count
        act()
        assert v.render_count == count + 1
        out = v.output.outputs
        assert len(out) == 1 and out[0]["output_type"] == "display_data"
        png = out[0]["data"]["image/png"]
        assert png != seen[-1]
        seen.append(png)
    # the live PNG (texts by matplotlib, panels and legend pasted) shows what matplotlib draws of current_figure
    live = _png_pixels(v.output.outputs[0])
    fig = v.current_figure
    r = _drawn(fig)
    full = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    assert live.shape == full.shape
    diff = np.abs(live.astype(int) - full.astype(int)).max(-1)
    assert diff.mean() < 4 and (diff > 60).mean() < 0.02, (diff.mean(), (diff > 60).mean())
    # the legend (pixels) sits below the suptitle and right of the panels
    title = fig._suptitle.get_window_extent(r)
    leg = fig.images[0]
    lh, lw = leg.get_array().shape[:2]
    assert leg.oy + lh < title.y0 and leg.ox + lw <= fig.bbox.x1
    assert all(leg.ox > ax.get_window_extent(r).x1 for ax in fig.axes)


def test_viewer_controls_are_labelled():
    import ipywidgets as W

    imgs, tms, pms = _smooth_samples()
    v = SegmentationViewer(imgs, tms, pms, class_names=NAMES4)
    row = v.widget.children[1].children[0]
    assert isinstance(row, W.HBox) and row.children[0].value == "mask" and row.children[1] is v.view
    assert v.view.description == ""  # ipywidgets 8 would put it on a line of its own above the buttons
    assert v.view.style.button_width == "auto" and len(v.view.tooltips) == 3
    assert v.worst_first.description.startswith("worst first ")
    assert "1 of 3" in v.label.value
    v.worst_first.value = True
    assert "worst first" in v.label.value
    d = DepthSegViewer(imgs, [t > 1 for t in tms], [p > 1 for p in pms], [i[..., 0] / 255.0 for i in imgs],
                       [i[..., 1] / 255.0 for i in imgs])
    labels = [r.children[0].value for r in d.widget.children[1].children[:2]]
    assert labels == ["mask", "depth"] and d.depth_view.description == ""


def test_depth_viewer_png_changes_with_every_action():
    imgs, tms, _ = _smooth_samples()
    depth = [i[..., 0].astype(np.float32) / 255 for i in imgs]
    d = DepthSegViewer(imgs, [t > 1 for t in tms], [t > 2 for t in tms], depth, [x[::-1].copy() for x in depth])
    seen = [d.output.outputs[0]["data"]["image/png"]]
    for act in (lambda: setattr(d.slider, "value", 1), lambda: setattr(d.mask_view, "value", "true"),
                lambda: setattr(d.depth_view, "value", "error"), lambda: setattr(d.depth_view, "value", "true"),
                lambda: setattr(d.opacity, "value", 0.1), lambda: setattr(d.worst_first, "value", True)):
        act()
        png = d.output.outputs[0]["data"]["image/png"]
        assert png != seen[-1]
        seen.append(png)
    assert d.current_figure.axes[1].get_title().startswith("depth: ground truth")


def test_study_explorer_draws_each_config_once():
    from seglib.inspect.study_plots import MASK_KEY, StudyExplorer, plot_config_predictions

    rng = np.random.default_rng(0)
    hist = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "train_fg_dice": 0.1 * e, "val_fg_dice": 0.09 * e,
             "lr": 1e-3 * 0.7 ** e} for e in range(1, 4)]
    final = {"val_fg_dice": 0.7, "val_fg_iou": 0.6, "val_loss": 0.3, "train_fg_dice": 0.8}

    class Run:
        calls = 0

        def results(self):
            return [{"study": "opt", "key": k, "history": hist, "best_epoch": 2, "epochs_completed": 3, "state": "done",
                     "final": final} for k in ("adam-cos-1a2b3c4d", "sgd-step-1a2b3c4d")]

        def predictions(self, r, n):
            Run.calls += 1
            return {"images": [_img(12, 12, k) for k in range(n)], "true": [rng.integers(0, 2, (12, 12)) for _ in range(n)],
                    "pred": [rng.integers(0, 2, (12, 12)) for _ in range(n)]}

    e = StudyExplorer(Run(), n=2)
    first, count = e.output.outputs, e.render_count
    e.config.value = 1
    assert e.output.outputs != first and Run.calls == 2
    e.config.value = 0
    assert e.output.outputs == first and Run.calls == 2 and e.render_count == count + 2
    preds = Run().predictions(None, 2)
    fig = plot_config_predictions({"adam-cos": preds}, 2)
    assert fig.get_layout_engine() is None and len(fig.axes) == 1  # one picture, not one axes per panel
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [t for _, t in MASK_KEY]
    assert [t.get_text() for t in fig.texts] == ["image", "truth", "adam-cos"]
    grid = fig.axes[0].images[0].get_array()
    assert grid.shape == (2 * 12 + 1, 3 * 12 + 2, 3)  # 2 rows x 3 columns of 12 px cells, 1 px gaps
    np.testing.assert_array_equal(grid[13:, :12], preds["images"][1])
    truth = grid[:12, 13:25]
    assert (truth[preds["true"][0] > 0] == MASK_KEY[0][0]).all()  # the first image's mask, in yellow
    assert (truth[preds["true"][0] == 0] == 30).all()


def test_viewer_png_is_the_live_picture():
    imgs, tms, pms = _smooth_samples()
    v = SegmentationViewer(imgs, tms, pms, class_names=NAMES4)
    v.view.value = "both"
    live = next(reversed(v._live.values()))
    assert live.fig is v.current_figure
    np.testing.assert_array_equal(_png_pixels(v.output.outputs[0]), live.pixels())  # Pillow's PNG is lossless


def test_saved_notebook_shows_the_picture_where_widgets_do_not_render():
    imgs, tms, pms = _smooth_samples()
    v = SegmentationViewer(imgs, tms, pms, class_names=NAMES4)
    v.slider.value = 1
    bundle = v._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle  # JupyterLab and Colab render the widget
    assert bundle["image/png"] == v.output.outputs[0]["data"]["image/png"]  # GitHub / nbviewer: the picture shown


def test_legend_tiles_are_drawn_once_and_stacked():
    colors = palette(4)
    labels = [f"{i} {c}" for i, c in enumerate(NAMES4)]
    tiles = LegendTiles(colors, labels, panel_layout(1, 10, 10, labels)["col_pt"])
    one = tiles.tile(2)
    assert one.dtype == np.uint8 and one.shape == (tiles.row, tiles.col, 3) and tiles.tile(2) is one
    assert (one == colors[2]).all(-1).sum() > 20  # the swatch
    img = tiles.image([0, 1, 2], ncol=2)  # 2 columns of 2 rows, filled top to bottom
    assert img.shape == (2 * tiles.pad + 2 * tiles.row, 2 * tiles.pad + 2 * tiles.col + tiles.gap, 3)
    np.testing.assert_array_equal(img[tiles.pad + tiles.row:tiles.pad + 2 * tiles.row, tiles.pad:tiles.pad + tiles.col],
                                  tiles.tile(1))
    assert (img[0] == 204).all() and (img[:, -1] == 204).all()  # the frame


@pytest.mark.parametrize("epochs", [2, 40])
def test_history_fixed_layout_readable(epochs):
    hist = [{"epoch": e, "lr": 1e-3 * 0.93 ** e, "train_loss": 1 / e, "val_loss": 1.2 / e, "train_fg_dice": 1 - 1 / (e + 1),
             "val_fg_dice": 0.9 - 1 / (e + 2)} for e in range(1, epochs + 1)]
    for fig in (plot_history(hist, ["loss", "fg_dice", "lr"]), plot_loss_comparison({"a": hist, "b": hist[:1]},
                                                                                   ("val_loss", "val_fg_dice", "lr"))):
        assert fig.get_layout_engine() is None
        r = _drawn(fig)
        page = fig.bbox
        boxes = []
        for ax in fig.axes:
            (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
            ticks = [t for t in ax.get_xticklabels() if x0 <= t.get_position()[0] <= x1]  # drawn: inside the view
            ticks += [t for t in ax.get_yticklabels(which="both") if y0 <= t.get_position()[1] <= y1]
            shown = [t for t in [ax.title, ax.xaxis.label, *ticks] if t.get_visible() and t.get_text()]
            assert not any("$" in t.get_text() for t in shown)  # plain text, no mathtext to parse
            boxes.append([t.get_window_extent(r) for t in shown] + [ax.get_window_extent(r)])
        for i, own in enumerate(boxes):
            for b in own:
                assert page.x0 <= b.x0 and b.x1 <= page.x1 and page.y0 <= b.y0 and b.y1 <= page.y1, b
            for other in boxes[i + 1:]:  # no text of one axes on another axes or its texts
                assert not any(_overlaps(a, b) for a in own for b in other)
    lr_ax = plot_history(hist, ["lr"]).axes[0]
    assert lr_ax.get_yscale() == "log" and lr_ax.get_legend() is None


def test_history_and_predictions_figures_updated_in_place_match_new_ones():
    def hist(n, s):
        return [{"epoch": e, "lr": s * 1e-3 * 0.8 ** e, "train_loss": s / e, "val_loss": 1.3 * s / e} for e in range(1, n + 1)]

    def pixels(fig):
        _drawn(fig)
        return np.asarray(fig.canvas.buffer_rgba()).copy()

    fig = plot_history(hist(5, 1.0))
    again = plot_history(hist(5, 3.0), fig=fig)
    assert again is fig  # same panels and keys: reused
    np.testing.assert_array_equal(pixels(again), pixels(plot_history(hist(5, 3.0))))
    assert plot_history(hist(40, 1.0), fig=fig) is not fig  # no markers on 40 epochs: a new figure
    assert plot_history(hist(5, 1.0), ["loss"], fig=fig) is not fig

    from seglib.inspect.study_plots import plot_config_predictions

    rng = np.random.default_rng(3)

    def preds():
        return {"images": [_img(16, 16, k) for k in range(2)], "true": [rng.integers(0, 2, (16, 16)) for _ in range(2)],
                "pred": [rng.integers(0, 2, (16, 16)) for _ in range(2)]}

    fig = plot_config_predictions({"a": preds()}, 2)
    p = preds()
    assert plot_config_predictions({"a": p}, 2, fig=fig) is fig
    np.testing.assert_array_equal(pixels(fig), pixels(plot_config_predictions({"a": p}, 2)))
    assert plot_config_predictions({"b": p}, 2, fig=fig) is not fig
