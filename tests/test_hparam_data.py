"""The study's data: an id that survives moving the folder, the binary-mask check, smoke settings, and
each result file read once per call (seglib.hparam)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

import seglib.hparam as hparam
from seglib.config import config_label
from seglib.data.io import DataError
from seglib.experiment import Experiment
from seglib.hparam import HParamRun, smoke_settings
from seglib.tune.specs import BASE_SPEC, get_grids


def make_pairs(root, n: int = 6, size: int = 32, mask_values=(0, 255)):
    """``n`` random images with binary masks in ``root/images`` and ``root/masks`` (no splits/: seeded split)."""
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / "images" / f"s{i}.png")
        mask = np.where(rng.random((size, size)) > 0.7, mask_values[1], mask_values[0]).astype(np.uint8)
        Image.fromarray(mask).save(root / "masks" / f"s{i}.png")
    return root


def prepared(data, workdir) -> HParamRun:
    run = HParamRun(str(data), workdir=workdir, img_size=32, width_divisor=32, trial_epochs=1, device="cpu")
    run.prepare()
    return run


def test_data_id_ignores_the_folder_and_sees_the_files(tmp_path):
    a = make_pairs(tmp_path / "a")
    b = tmp_path / "elsewhere" / "b"
    shutil.copytree(a, b)
    ra, rb = prepared(a, tmp_path / "wa"), prepared(b, tmp_path / "wb")
    assert ra.data_id == rb.data_id and len(ra.data_id) == 8
    names = [[p.optuna_name for p in r.make_plans(["dropout"], r.lrs("seed"))] for r in (ra, rb)]
    assert names[0] == names[1]  # the same Optuna studies and trial keys on both machines
    assert [t.key for t in ra.plans[0].trials] == [t.key for t in rb.plans[0].trials]
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(b / "masks" / "s1.png")  # same name, other size
    assert prepared(b, tmp_path / "wb").data_id != ra.data_id
    c = tmp_path / "c"
    shutil.copytree(a, c)
    for sub in ("images", "masks"):
        (c / sub / "s2.png").rename(c / sub / "t2.png")  # renamed pair
    assert prepared(c, tmp_path / "wc").data_id != ra.data_id


@pytest.mark.parametrize("values", [(0, 1), (0, 255)])
def test_binary_masks_pass(tmp_path, values):
    assert prepared(make_pairs(tmp_path / "d", mask_values=values), tmp_path / "w").splits["train"]


def test_non_binary_and_missized_masks_raise(tmp_path):
    root = make_pairs(tmp_path / "d")
    bad = np.zeros((32, 32), np.uint8)
    bad[:8], bad[8:16], bad[16:24] = 3, 128, 255  # {0, 3, 128, 255}: read_mask(path, 2) maps it to {0, 1}
    Image.fromarray(bad).save(root / "masks" / "s4.png")
    with pytest.raises(DataError, match=r"s4\.png has values \[0, 3, 128, 255\].*\{0, 1\} or \{0, 255\}"):
        prepared(root, tmp_path / "w")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "masks" / "s4.png")
    Image.fromarray(np.zeros((16, 32), np.uint8)).save(root / "masks" / "s0.png")
    with pytest.raises(DataError, match=r"s0\.png is 32x16"):
        prepared(root, tmp_path / "w")


def test_smoke_settings_and_config_label():
    full = {"img_size": 128, "width_divisor": 4, "trial_epochs": 40, "probe_epochs": 3, "range_steps": 100,
            "optimizers": ["adam", "adagrad", "sgd"], "losses": ["bce", "bce_switching"]}
    assert smoke_settings(False, **full) == full
    assert smoke_settings(True, **full) == {"img_size": 64, "width_divisor": 16, "trial_epochs": 2, "probe_epochs": 1,
                                            "range_steps": 20, "optimizers": ["adam", "adagrad"], "losses": ["bce"]}
    assert smoke_settings(True, cpu_threads=None) == {"cpu_threads": 1}  # one thread unless asked for more
    assert smoke_settings(True, cpu_threads=2) == {"cpu_threads": 2} == smoke_settings(False, cpu_threads=2)
    with pytest.raises(ValueError, match="img_size"):
        smoke_settings(True, image_size=64)
    assert config_label("adam-plateau-1a2b3c4d") == "adam-plateau" and config_label("wd-0.01-00ff00ff") == "wd-0.01"


def test_smoke_grids_keep_the_base_value_and_one_other():
    base = {**BASE_SPEC, "weight_decay": 0.0}
    cut = {g.name: g.smoke(base).space for g in get_grids("all")}
    assert cut == {"optimizer_scheduler": {"optimizer": ("adam", "adagrad"), "scheduler": ("none", "plateau")},
                   "train_fraction": {"train_fraction": (0.2, 1.0)}, "weight_decay": {"weight_decay": (0.1, 0.01)},
                   "dropout": {"dropout": (0.0, 0.2)}, "loss": {"loss": ("switching", "bce_switching")},
                   "augmentation": {"augment": ("none", "rotate_flips")}}
    assert get_grids("loss")[0].smoke(base, n=1).space == {"loss": ("bce_switching",)}
    with pytest.raises(ValueError, match="n=0"):
        get_grids("loss")[0].smoke(base, n=0)


def test_summary_reads_each_result_once(tmp_path, monkeypatch):
    run = prepared(make_pairs(tmp_path / "d"), tmp_path / "w")
    plans = run.make_plans(["dropout"], run.lrs("seed"))
    reads = []
    monkeypatch.setattr(hparam, "load_result", lambda folder: reads.append(folder))
    summary = run.summary()
    assert len(reads) == len(plans[0].trials) == 3 and summary["trials"] == [] and summary["lr_search"]["rows"] == []
    assert not isinstance(run, Experiment) and isinstance(run.base_trial, Experiment)  # composes, not inherits
    assert run.splits is run.base_trial.splits and summary["data"]["counts"] == {"train": 5, "val": 1}
    assert run.report("dropout") == []  # nothing finished yet: nothing to show
