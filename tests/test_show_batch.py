"""Issue 14: ``run.show_batch(n)`` draws exactly what the trainer feeds (items, order, size, augmentation) for
the three notebook runs, at the epoch the next training trains."""

import numpy as np
import pytest
import torch

from seglib import TrainConfig
from seglib.config import smoke_config
from seglib.data.datasets import EpochSampler, make_loader
from seglib.data.transforms import denormalize
from seglib.depthseg import DepthSegRun, depth_config
from seglib.hparam import HParamRun
from seglib.inspect.batch import (
    batch_figure,
    checkpoint_epoch,
    class_legend,
    depth_sample_panels,
    mask_rgb,
    next_epoch,
)
from seglib.inspect.render import GREY, depth_to_rgb
from seglib.segmentation import SegmentationRun
from seglib.tune.trial import BINARY_COLORS

DEPTH_SYNTH = {"n_bg": 2, "n_fg": 2, "per_pair": 2, "size": 64}  # 8 samples: 6 train, 2 val


def _seg_run(workdir, augment="street"):
    cfg = smoke_config(TrainConfig(experiment="sb", n_classes=22, encoder_weights=None, augment=augment, seed=3))
    run = SegmentationRun(cfg, "synthetic", workdir=workdir, smoke=True)
    run.prepare()
    return run


def _drawn(fig):
    """The pictures on the Figure's visible axes, column-major per block as batch_figure places them."""
    return [np.asarray(ax.images[0].get_array()) for ax in fig.axes if ax.get_visible() and ax.images]


def test_segmentation_batch_is_what_the_trainer_feeds(tmp_path):
    run = _seg_run(tmp_path / "seg")
    fig = run.show_batch(4)
    info = fig.seglib_batch
    assert info == {"split": "train", "epoch": 1, "size": 64, "augment": "street",
                    "indices": EpochSampler(16, 1, 3).order(1)[:4].tolist()}
    title = fig._suptitle.get_text()
    assert "train" in title and "epoch 1 (a new run)" in title and "64 px" in title and "'street'" in title
    # the trainer's loader (same dataset, sampler and seed): its first batch is what the figure shows
    loader = make_loader(run.dataset("train"), 4, shuffle=True, seed=run.cfg.seed, num_workers=0)
    loader.sampler.set_epoch(1)
    batch = next(iter(loader))
    assert batch["index"].tolist() == info["indices"]
    for k, panels in enumerate(fig.seglib_panels):
        assert [name for name, _ in panels] == ["image", "mask"]
        np.testing.assert_array_equal(panels[0][1], denormalize(batch["input"][k]))
        np.testing.assert_array_equal(panels[1][1], run.colors[batch["target"][k].numpy()])
    # what is on the axes is those arrays, images in the first row, masks in the second
    drawn = _drawn(fig)
    assert len(drawn) == 8
    for k, panels in enumerate(fig.seglib_panels):
        np.testing.assert_array_equal(drawn[k], panels[0][1])
        np.testing.assert_array_equal(drawn[4 + k], panels[1][1])
    present = sorted(set(np.unique(batch["target"].numpy()).tolist()))
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [f"{i} {run.class_names[i]}" for i in present]


def test_augmentation_follows_the_epoch_and_other_splits_are_in_order(tmp_path):
    run = _seg_run(tmp_path / "seg")
    one, two = run.show_batch(3, epoch=1), run.show_batch(3, epoch=2)
    assert "epoch 2 (as asked)" in two._suptitle.get_text()
    assert one.seglib_batch["indices"] != two.seglib_batch["indices"]  # another permutation per epoch
    ds = run.dataset("train")
    i = two.seglib_batch["indices"][0]
    np.testing.assert_array_equal(two.seglib_panels[0][0][1], denormalize(ds[(2, i)]["input"]))
    assert not np.array_equal(denormalize(ds[(1, i)]["input"]), denormalize(ds[(2, i)]["input"]))  # re-augmented
    val = run.show_batch(5, split="val")
    assert val.seglib_batch["indices"] == [0, 1, 2, 3, 4] and val.seglib_batch["augment"] == "none"


def test_more_than_the_split_shows_all_of_it(tmp_path):
    run = _seg_run(tmp_path / "seg", augment="none")
    fig = run.show_batch(100)
    assert sorted(fig.seglib_batch["indices"]) == list(range(16)) and len(fig.seglib_panels) == 16
    assert len(_drawn(fig)) == 32  # two blocks of 8 columns, image and mask rows each
    assert "first 16 of the epoch's order" in fig._suptitle.get_text()


def test_bad_calls_say_what_is_wrong(tmp_path):
    cfg = smoke_config(TrainConfig(experiment="sb", n_classes=22, encoder_weights=None))
    with pytest.raises(RuntimeError, match="prepare"):
        SegmentationRun(cfg, "synthetic", workdir=tmp_path / "x", smoke=True).show_batch(2)
    run = _seg_run(tmp_path / "seg")
    for kwargs in ({"n": 0}, {"split": "nope"}, {"epoch": 0}):
        with pytest.raises(ValueError, match="show_batch needs"):
            run.show_batch(**kwargs)


def test_unreadable_checkpoint_falls_back_to_epoch_one_and_says_so(tmp_path):
    run = _seg_run(tmp_path / "seg")
    (run.ws.local / "checkpoints").mkdir(parents=True)
    (run.ws.local / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    fig = run.show_batch(2)
    assert fig.seglib_batch["epoch"] == 1 and "assumed: no readable last.pt" in fig._suptitle.get_text()


def test_next_epoch_reads_last_pt(tmp_path):
    assert next_epoch([tmp_path], 5) == (1, "a new run")
    (tmp_path / "checkpoints").mkdir()
    torch.save({"epoch": 2, "batch": 3}, tmp_path / "checkpoints" / "last.pt")
    torch.save({"epoch": 1}, tmp_path / "checkpoints" / "last.prev.pt")
    assert next_epoch([tmp_path], 5) == (3, "next to train after epoch 2")
    assert next_epoch([tmp_path], 2)[0] == 2  # done: its last epoch
    other = tmp_path / "other"
    (other / "checkpoints").mkdir(parents=True)
    torch.save({"epoch": 4}, other / "checkpoints" / "last.pt", _use_new_zipfile_serialization=False)  # no mmap
    assert checkpoint_epoch(other / "checkpoints" / "last.pt") == 4
    assert next_epoch([tmp_path, other], 9) == (5, "next to train after epoch 4")  # the most advanced wins
    torch.save(torch.zeros(2), other / "checkpoints" / "last.pt")
    with pytest.raises(ValueError, match="records no readable epoch"):
        checkpoint_epoch(other / "checkpoints" / "last.pt")


def test_depth_batch_follows_the_resize_schedule_after_a_checkpoint(tmp_path, one_thread):
    def run(epochs):
        cfg = depth_config("sb", width=2, resize_schedule={1: 64, 2: 96}, img_size=96, batch_size=3, epochs=epochs,
                           seed=5, num_workers=0)
        r = DepthSegRun(cfg, "synthetic", workdir=tmp_path / "depth", synthetic_kwargs=DEPTH_SYNTH, val_fraction=0.25)
        r.prepare()
        return r

    first = run(1)
    before = first.show_batch(2)
    assert before.seglib_batch["epoch"] == 1 and before.seglib_batch["size"] == 64
    first.train(progress=False, epoch_table=False)
    done = first.show_batch(2)
    assert done.seglib_batch["epoch"] == 1 and "training done" in done._suptitle.get_text()
    more = run(2)  # EPOCHS raised: the next epoch to train is 2, at 96 px
    fig = more.show_batch(8)
    info = fig.seglib_batch
    assert info["epoch"] == 2 and info["size"] == 96 and info["augment"] == "photometric"
    assert "epoch 2 (next to train after epoch 1)" in fig._suptitle.get_text() and "96 px" in fig._suptitle.get_text()
    assert len(fig.seglib_panels) == 6 and sorted(info["indices"]) == list(range(6))  # n > len(train): all
    ds = more.dataset("train")
    for i, panels in zip(info["indices"], fig.seglib_panels):
        item = ds[(2, i)]
        assert [n for n, _ in panels] == ["bg", "bg_fg", "mask", "depth"]
        np.testing.assert_array_equal(panels[0][1], denormalize(item["input"]["bg"]))
        np.testing.assert_array_equal(panels[1][1], denormalize(item["input"]["bg_fg"]))
        assert panels[1][1].shape == (96, 96, 3)
        t = {k: v[0].numpy() for k, v in item["target"].items()}
        np.testing.assert_array_equal(panels[2][1][..., 0], (t["mask"] * 255).astype(np.uint8))
        np.testing.assert_array_equal(panels[3][1], depth_to_rgb(np.where(t["valid"] > 0.5, t["depth"], np.nan)))


def test_hparam_batch_is_the_base_trials(tmp_path):
    run = HParamRun("synthetic", workdir=tmp_path / "w", smoke=True, img_size=64, width_divisor=16, trial_epochs=2,
                    invert_mask=True, base={"augment": "rotate_flips"})
    run.prepare()
    fig = run.show_batch(3)
    info = fig.seglib_batch
    assert info["epoch"] == 1 and info["size"] == 64 and info["augment"] == "rotate_flips"
    ds = run.base_trial.dataset("train")
    for i, panels in zip(info["indices"], fig.seglib_panels):
        item = ds[(1, i)]
        np.testing.assert_array_equal(panels[0][1], denormalize(item["input"]))
        np.testing.assert_array_equal(panels[1][1], BINARY_COLORS[item["target"].numpy()])  # inverted target
    assert {t.get_text() for t in fig.legends[0].get_texts()} <= {"0 background", "1 foreground"}


def test_drawing_helpers():
    colors = np.array([[0, 0, 0], [255, 0, 0]], np.uint8)
    mask = np.array([[0, 1], [255, 1]])
    rgb = mask_rgb(mask, colors, ignore_index=255)
    assert (rgb[1, 0] == GREY).all() and (rgb[0, 1] == [255, 0, 0]).all()
    with pytest.raises(ValueError, match="outside"):
        mask_rgb(np.array([[2]]), colors)
    assert [lab for lab, _ in class_legend([mask], ["bg", "red"], colors, 255)] == ["0 bg", "1 red", "255 ignored"]
    img = np.zeros((4, 4, 3), np.uint8)
    depth = np.full((4, 4), 0.5, np.float32)
    valid = np.ones((4, 4))
    valid[0, 0] = 0
    panels = depth_sample_panels({"image": img}, np.zeros((4, 4)), depth, valid)
    assert (panels[2][1][0, 0] == GREY).all()
    with pytest.raises(ValueError, match="differ in size"):
        depth_sample_panels({"image": np.zeros((5, 5, 3), np.uint8)}, np.zeros((4, 4)), depth)
    with pytest.raises(ValueError, match="panels"):
        batch_figure([[("a", img)], [("b", img)]], ["#0", "#1"], "t")
    with pytest.raises(ValueError, match="one name per sample"):
        batch_figure([], [], "t")
