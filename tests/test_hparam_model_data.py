"""U-Net, blobs generator, train-fraction subsets, inverted masks, un-augmented validation, and steps per
epoch that cover the data (issue 4)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from seglib.data.datasets import BinaryDataset
from seglib.data.synthetic.blobs import generate_blobs, render_blobs
from seglib.models import build_model
from seglib.models.unet import UNet
from seglib.tune.specs import STUDY_GRIDS, get_grids, make_config, spec_hash
from seglib.tune.trial import BinaryTrial, execute, nested_subset


def test_unet_shapes_widths_and_options():
    m = build_model("unet", classes=1, width_divisor=4)
    assert m.widths == (16, 32, 64, 128, 256)  # seed 004: the baseline divided by 4
    assert build_model("unet", classes=1, width_divisor=1).widths == (64, 128, 256, 512, 1024)
    x = torch.randn(2, 3, 64, 48)
    assert m(x).shape == (2, 1, 64, 48)
    assert not any(isinstance(k, (nn.Dropout, nn.BatchNorm2d)) for k in m.modules())
    d = UNet(width_divisor=16, dropout=0.2, batchnorm=True)
    assert sum(isinstance(k, nn.Dropout) for k in d.modules()) == 9  # 4 down + bottleneck + 4 up
    assert sum(isinstance(k, nn.BatchNorm2d) for k in d.modules()) == 18
    assert sum(isinstance(k, nn.Dropout) for k in UNet(width_divisor=16, dropout=0.5, dropout_blocks="bottleneck").modules()) == 1
    with pytest.raises(ValueError, match="multiple of 16"):
        m(torch.randn(1, 3, 60, 64))
    with pytest.raises(ValueError, match="WIDTH_DIVISOR"):
        UNet(width_divisor=0)
    with pytest.raises(ValueError, match="DROPOUT"):
        UNet(dropout=1.0)


def test_blobs_generator(tmp_path):
    a, b = render_blobs(np.random.default_rng([1, 0, 3]), 64), render_blobs(np.random.default_rng([1, 0, 3]), 64)
    assert a[0].tobytes() == b[0].tobytes() and a[0].shape == (64, 64) and a[0].dtype == np.uint8
    assert set(np.unique(a[1])) <= {0, 255}
    fractions = [(render_blobs(np.random.default_rng([0, 0, i]), 64)[1] > 0).mean() for i in range(60)]
    assert min(fractions) == 0.0 and 0.05 < np.mean(fractions) < 0.35  # some images have no cell at all
    root = generate_blobs(tmp_path / "b", n_train=5, n_val=3, size=64)
    assert (root / "splits" / "train.txt").read_text().split() == [f"train_{i:04d}" for i in range(5)]
    assert len(list((root / "masks").iterdir())) == 8
    assert json.loads((root / ".complete.json").read_text())["n_val"] == 3
    assert generate_blobs(tmp_path / "b", n_train=5, n_val=3, size=64) == root  # idempotent
    with pytest.raises(FileExistsError):
        generate_blobs(tmp_path / "b", n_train=6, n_val=3, size=64)
    with pytest.raises(ValueError, match="size"):
        render_blobs(np.random.default_rng(0), 16)


def test_nested_train_fractions_and_unknown_study():
    pool = list(range(25))
    subsets = [nested_subset(pool, f, seed=0) for f in (0.2, 0.4, 0.6, 0.8, 1.0)]
    assert [len(s) for s in subsets] == [5, 10, 15, 20, 25]
    assert all(set(a) < set(b) for a, b in zip(subsets, subsets[1:]))
    with pytest.raises(ValueError, match="fraction"):
        nested_subset(pool, 0.0, 0)
    with pytest.raises(KeyError, match="optimizer_scheduler, train_fraction"):
        get_grids(["lr_schedule"])
    assert len(STUDY_GRIDS["optimizer_scheduler"].grid()) == 18 and len(STUDY_GRIDS["loss"].grid()) == 7


def _spec(**kw):
    spec = {"optimizer": "adam", "lr": 1e-3, "scheduler": "plateau", "loss": "bce_switching", "weight_decay": 0.0,
            "dropout": 0.0, "train_fraction": 1.0, "augment": "none", "width_divisor": 16, "batchnorm": False,
            "img_size": 32, "batch_size": 4, "epochs": 1, "patience": 20, "seed": 0, "invert": False, "data": "x",
            "checkpoint_minutes": 5.0}
    spec.update(kw)
    return spec


@pytest.fixture
def blob_splits(tmp_path):
    from seglib.data.layouts import load_splits

    root = generate_blobs(tmp_path / "data", n_train=10, n_val=3, size=32)
    return load_splits(root)[1]


def test_validation_fixed_never_augmented_and_masks_inverted(tmp_path, blob_splits):
    t = BinaryTrial(_spec(augment="rotate_flips", train_fraction=0.4), blob_splits, data="d", workdir=tmp_path / "t")
    assert t.dataset("train").augment == "rotate_flips" and t.dataset("val").augment == "none"
    assert len(t.splits["train"]) == 4 and t.splits["val"] == blob_splits["val"]
    assert not {s.name for s in t.splits["train"]} & {s.name for s in t.splits["val"]}
    v1, v2 = t.dataset("val")[(1, 0)], t.dataset("val")[(7, 0)]
    assert torch.equal(v1["input"], v2["input"])  # no epoch-dependent randomness in validation
    inv = BinaryTrial(_spec(invert=True), blob_splits, data="d", workdir=tmp_path / "i")
    assert torch.equal(inv.dataset("val")[0]["target"], 1 - t.dataset("val")[0]["target"])
    cfg = make_config(_spec(scheduler="step", epochs=30))
    assert cfg.monitor == "val_fg_dice" and cfg.scheduler_kwargs == {"step_size": 10, "gamma": 0.1}
    assert spec_hash(_spec(num_workers=3)) == spec_hash(_spec())


def test_steps_per_epoch_cover_the_data(tmp_path, blob_splits):
    t = BinaryTrial(_spec(epochs=2, batch_size=4), blob_splits, data="d", workdir=tmp_path / "s")
    seen: list[tuple[int, int]] = []

    class Spy(torch.utils.data.Dataset):
        def __init__(self, base):
            self.base = base

        def __len__(self):
            return len(self.base)

        def __getitem__(self, key):
            seen.append(key)
            return self.base[key]

    make = t.dataset
    t.dataset = lambda split, augment=None: Spy(make(split, augment)) if split == "train" else make(split, augment)
    tr = t.trainer(progress=False)
    fit = tr.fit()
    assert tr.n_batches == 3 and tr.step == 6  # ceil(10 / 4) steps per epoch, 2 epochs
    for epoch in (1, 2):  # every training image exactly once per epoch
        assert sorted(i for e, i in seen if e == epoch) == list(range(10))
    assert fit.epochs_completed == 2 and "val_fg_dice" in fit.history[-1]


def test_object_ap_only_in_the_final_evaluation(tmp_path, blob_splits):
    t = BinaryTrial(_spec(epochs=1), blob_splits, data="d", workdir=tmp_path / "trials" / "s" / "k-0")
    assert t.metrics_factory().objects is False  # per-epoch validation: no connected components
    res = execute(t, study="s", key="k-0", params={})
    assert res["history"] and not any("object" in k for rec in res["history"] for k in rec)
    assert 0.0 <= res["final"]["val_object_ap50"] <= 1.0 and "train_object_ap50" not in res["final"]
    assert t.metrics_factory().objects is False


def test_lr_search_decodes_the_training_pool_once(tmp_path, monkeypatch):
    from seglib.hparam import HParamRun

    root = generate_blobs(tmp_path / "data", n_train=6, n_val=2, size=32)
    run = HParamRun(str(root), workdir=tmp_path / "w", img_size=32, width_divisor=32, batch_size=4, device="cpu")
    run.prepare()
    decoded, get = [], BinaryDataset.__getitem__
    monkeypatch.setattr(BinaryDataset, "__getitem__", lambda self, k: decoded.append(k) or get(self, k))
    rows = run.lr_search(["adam"], ["bce", "dice"], range_steps=3, procedures=("range_test",))
    assert [r["loss"] for r in rows] == ["bce", "dice"] and all(r["range_steps"] == 3 for r in rows)
    assert len(decoded) == 6 and run.summary()["lr_search"]["rows"] == rows
