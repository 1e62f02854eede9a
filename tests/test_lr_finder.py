"""The LR finder (``LR = "find"``, :mod:`seglib.train.lr_finder`): the valley rule on known curves, a run's finder
inside its range and leaving training unchanged, ``lr_find.json`` reused (and redone for other settings), not run
once the run has a checkpoint, a resumed run's configuration equal to the saved one, and the plot."""

import json

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from seglib.config import TrainConfig, config_diff
from seglib.inspect import plot_lr_find
from seglib.segmentation import SegmentationRun
from seglib.train.lr_finder import LRFindResult, range_test, valley

SYN = {"n_train": 8, "n_val": 4, "n_test": 2, "size": 64}
STEPS = 16


def make_run(workdir, **kw):
    """A tiny synthetic-street run: the seed-004 U-Net at width/16 on 32 px images, AdamW, warm-up + cosine."""
    cfg = TrainConfig(**{"experiment": "lrf", "model": "unet", "model_kwargs": {"width_divisor": 16},
                         "img_size": 32, "batch_size": 4, "epochs": 1, "encoder_weights": None, "num_workers": 0,
                         "optimizer": "adamw", "loss": "dice_ce", "augment": "flip", "lr": 1.0,
                         "scheduler": "cosine", "scheduler_kwargs": {}, "monitor": "val_loss", **kw})
    run = SegmentationRun(cfg, "synthetic", workdir=workdir, synthetic_kwargs=SYN)
    run.prepare(check=False)
    return run


def test_valley_is_halfway_down_the_longest_descent():
    lrs = np.geomspace(1e-6, 1.0, 61)
    x = np.log10(lrs)  # flat to 1e-4, falls linearly to a minimum at 1e-2, then blows up
    loss = np.where(x < -4, 2.0, np.where(x < -2, 2.0 - (x + 4) * 0.5, 1.0 + (x + 2) ** 2 * 5))
    i = valley(lrs, loss)
    assert 1e-4 < lrs[i] < 1e-2  # inside the descent ...
    assert abs(np.log10(lrs[i]) - (-3)) < 0.4  # ... about halfway down it (log scale)
    with pytest.raises(ValueError):
        valley([], [])


def test_range_test_sweeps_exponentially_and_stops_on_divergence():
    seen = []

    def step(lr):
        seen.append(lr)
        return 1.0 if lr < 1e-2 else 1e3  # blows up at 1e-2

    rt = range_test(step, 1e-6, 10.0, 70)
    assert seen[0] == pytest.approx(1e-6) and np.allclose(np.diff(np.log(seen)), np.log(1e7) / 69)
    assert rt.steps == len(seen) < 70 and seen[-1] < 2e-2  # stopped soon after the loss grew 4x


def test_find_lr_inside_range_training_unchanged_and_json_reused(tmp_path, one_thread, capsys):
    run = make_run(tmp_path / "a")
    res = run.find_lr(steps=STEPS, lr_min=1e-5, lr_max=1.0)
    assert res.source == "run" and len(res.lrs) == len(res.losses) == len(res.raw_losses) == res.steps <= STEPS
    assert 1e-5 <= res.suggestion <= 1.0 and res.suggestion == res.lrs[res.index] and run.cfg.lr == res.suggestion
    assert res.size == 32 and res.lrs[0] == pytest.approx(1e-5)
    saved = json.loads((tmp_path / "a" / "lr_find.json").read_text())
    assert saved["suggestion"] == res.suggestion and saved["key"]["batch_size"] == 4 and saved["key"]["size"] == 32
    assert "LR finder: suggestion" in capsys.readouterr().out

    # the finder trained a throwaway copy: training gives the weights of a run given that LR by hand
    run.train(progress=False, epoch_table=False)
    plain = make_run(tmp_path / "b", lr=res.suggestion)
    plain.train(progress=False, epoch_table=False)
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    # same settings, no checkpoint: lr_find.json is reused, nothing trains
    again = make_run(tmp_path / "c")
    (tmp_path / "c").mkdir(exist_ok=True)
    (tmp_path / "c" / "lr_find.json").write_text((tmp_path / "a" / "lr_find.json").read_text())
    mtime = (tmp_path / "c" / "lr_find.json").stat().st_mtime_ns
    reused = again.find_lr(steps=STEPS, lr_min=1e-5, lr_max=1.0)
    assert reused.source == "lr_find.json" and reused.suggestion == res.suggestion == again.cfg.lr
    assert reused.lrs == res.lrs and (tmp_path / "c" / "lr_find.json").stat().st_mtime_ns == mtime
    assert "reused from" in capsys.readouterr().out
    # another batch size: run again and overwrite
    other = make_run(tmp_path / "c", batch_size=2)
    redone = other.find_lr(steps=STEPS, lr_min=1e-5, lr_max=1.0)
    assert redone.source == "run" and json.loads((tmp_path / "c" / "lr_find.json").read_text())["key"]["batch_size"] == 2
    assert "batch_size" in capsys.readouterr().out


def test_not_run_with_a_checkpoint_and_resumed_config_equals_saved(tmp_path, one_thread, capsys):
    first = make_run(tmp_path, epochs=2)
    found = first.find_lr(steps=STEPS, lr_min=1e-5, lr_max=1.0)
    first.trainer(progress=False).fit()
    (tmp_path / "lr_find.json").unlink()  # the checkpoint alone decides
    ck = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    (tmp_path / "checkpoints" / "last.pt").unlink()  # keep last.prev.pt: an epoch-1 checkpoint, as after a kill
    assert (tmp_path / "checkpoints" / "last.prev.pt").exists()
    capsys.readouterr()

    resumed = make_run(tmp_path, epochs=2)  # Run all again, LR = "find": placeholder LR 1.0 in the config
    res = resumed.find_lr(steps=STEPS, lr_min=1e-5, lr_max=1.0)
    assert res.source == "checkpoint" and res.lrs == [] and res.suggestion == found.suggestion == ck["config"]["lr"]
    assert "not run" in capsys.readouterr().out and not (tmp_path / "lr_find.json").exists()
    assert config_diff(ck["config"], resumed.cfg.to_dict()) == {}
    result = resumed.train(progress=False, epoch_table=False)
    assert result.status == "resumed" and "configuration changes" not in capsys.readouterr().out


def test_plot_lr_find_marks_the_suggestion(tmp_path):
    lrs = list(np.geomspace(1e-6, 1.0, 30))
    losses = list(np.linspace(2.0, 1.0, 30))
    fig = plot_lr_find(LRFindResult(lrs=lrs, losses=losses, suggestion=lrs[12], index=12, raw_losses=losses,
                                    lr_min_div10=lrs[20] / 10, steepest=lrs[10], size=96))
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and f"{lrs[12]:.3g}" in ax.get_title()
    marked = [line for line in ax.get_lines() if line.get_label().startswith("valley")]
    assert marked and marked[0].get_xdata()[0] == pytest.approx(lrs[12])
    assert marked[0].get_ydata()[0] == pytest.approx(losses[12])
    note = plot_lr_find({"lrs": [], "losses": [], "suggestion": 3e-3, "source": "checkpoint"})
    assert "0.003" in note.axes[0].texts[0].get_text()
    with pytest.raises(ValueError):
        plot_lr_find({"lrs": [1e-3, 1e-2], "losses": [1.0], "suggestion": 1e-3})
