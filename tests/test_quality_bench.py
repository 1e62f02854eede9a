"""benchmarks/quality.py and benchmarks/plain_loop.py: the budget arithmetic, the curves, the results section,
and the ISBI plain loop on real images (skipped when ../shared/data is absent)."""

import argparse
import json
import math
import sys
from pathlib import Path

import pytest
import torch
from conftest import SHARED_DATA, need

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import plain_loop, quality  # noqa: E402
from benchmarks.common import target, write_results  # noqa: E402
from seglib.data.transforms import size_for_epoch  # noqa: E402
from seglib.recipes import progressive_schedule  # noqa: E402


def cost(n, spe, size, schedule=None):
    sched = schedule(n) if schedule else None
    return sum(spe * (size_for_epoch(e, size, sched) / size) ** 2 for e in range(1, n + 1))


def test_epochs_for_fits_the_budget():
    assert quality.epochs_for(45.0, 10.0, 224) == 4  # 4 x 10 s fit, 5 do not
    sched = lambda n: progressive_schedule(n, 224)  # noqa: E731
    n = quality.epochs_for(300.0, 10.0, 224, sched)
    assert cost(n, 10.0, 224, sched) <= 300.0 < cost(n + 1, 10.0, 224, sched)
    assert n > 30  # smaller first epochs buy more epochs than 30 full-size ones
    assert quality.epochs_for(1.0, 10.0, 224, low=3) == 3
    with pytest.raises(ValueError, match="sec_per_epoch"):
        quality.epochs_for(10.0, 0.0, 224)


def test_curves_from_history():
    history = [{"epoch": 1, "train_seconds": 10.0, "val_miou": 0.2},
               {"epoch": 2, "train_seconds": 8.0, "val_miou": float("nan")},
               {"epoch": 3, "train_seconds": 9.0, "val_miou": 0.4}]
    curve = quality.cumulative(history, "val_miou")
    assert [c["train_seconds"] for c in curve] == [10.0, 18.0, 27.0]
    assert quality.best_within(curve, 20.0) == 0.2  # NaN skipped, epoch 3 over the budget
    assert quality.best_within(curve, 27.0) == 0.4
    assert quality.best_within(curve, 5.0) is None
    assert quality.sec_per_epoch(curve) == 8.5  # median of 8 and 9, the first (warm-up) epoch left out


def test_results_section(tmp_path):
    rows = [{"data": "isbi", "contender": "plain loop", "epochs": 3, "train_seconds": 30.0, "best": 0.8,
             "at_budget": 0.79, "lr": 1e-3, "find_seconds": 0.0, "budget_s": 30.0,
             "curve": [{"epoch": 1, "train_seconds": 10.0, "metric": 0.5}, {"epoch": 3, "train_seconds": 30.0,
                                                                            "metric": 0.8}]}]
    targets = [target("ISBI val Dice", 0.8, ">= 0.86", False, "plateau at 0.83")]
    args = argparse.Namespace(target=False, camvid_budget=60.0, camvid_size=160, isbi_budget=30.0)
    md = quality.markdown(rows, targets, args)
    assert md.startswith("### Quality for time") and "| isbi | plain loop | 3 |" in md
    assert "NOT met -- plateau at 0.83" in md
    path = write_results("quality", rows, targets, md, out=tmp_path / "q.json", seconds=1.0)
    doc = json.loads(path.read_text())
    assert doc["bench"] == "quality" and doc["targets"][0]["met"] is False and doc["rows"][0]["best"] == 0.8
    assert quality.plot(rows, "isbi", tmp_path / "q.png").stat().st_size > 1000
    assert quality.plot(rows, "camvid", tmp_path / "c.png") is None


def test_isbi_plain_loop_on_real_images(one_thread):
    root = need(SHARED_DATA / "isbi2012_membrane")
    sp = plain_loop.splits(root)
    assert (len(sp["train"]), len(sp["val"])) == (24, 6)  # the study's split
    _, masks = plain_loop.load_pairs(sp["val"][:2], 64)
    share = float(plain_loop.membrane(masks).mean())
    assert 0.1 < share < 0.35  # the membrane (stored as 0) is about a fifth of the pixels, not the cells
    curve = plain_loop.isbi(0.0, size=32, limit=2, max_epochs=3)
    assert len(curve) == 1 and curve[0]["train_seconds"] > 0  # a zero budget stops after the first epoch
    assert 0.0 <= curve[0]["metric"] <= 1.0 and not math.isnan(curve[0]["metric"])
    assert torch.get_num_threads() == 1


def test_study_fast_base_keeps_existing_keys():
    from seglib.tune.specs import BASE_SPEC, FAST_BASE, STUDY_GRIDS, make_config, spec_hash

    fixed = {"width_divisor": 4, "batchnorm": True, "img_size": 256, "batch_size": 4, "epochs": 40, "patience": None,
             "seed": 0, "invert": True, "data": "ba7a9545"}
    cfg = make_config({**BASE_SPEC, **FAST_BASE, **fixed})
    assert (cfg.scheduler, cfg.scheduler_kwargs, cfg.loss, cfg.augment) == ("onecycle", {"pct_start": 0.25},
                                                                             "bce_dice", "rotate_flips")
    # the seed's grid and an existing trial's spec hash are unchanged (finished trials are found again)
    assert STUDY_GRIDS["optimizer_scheduler"].space["scheduler"] == ("none", "step", "plateau")
    old = {**BASE_SPEC, "lr": 1e-3, **fixed, "batchnorm": False, "img_size": 128, "patience": 20}
    assert spec_hash(old) == "ccbb91cb"
