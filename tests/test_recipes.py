"""Recipes, per-step LR schedules and the frozen-encoder warm-up: settings, schedules, and exact resume of a
one-cycle run killed mid-epoch (a real SIGKILL of a subprocess, as tests/test_resume.py)."""

import json
from pathlib import Path

import pytest
import torch
from killing import run_driver

from seglib.config import TrainConfig
from seglib.recipes import RECIPES, progressive_schedule, recipe_config
from seglib.segmentation import auto_augment
from seglib.train.optim import PER_STEP, WarmupCosine, build_optimizer, build_scheduler, set_lr

DRIVER = Path(__file__).with_name("resume_driver.py")


def test_recipe_config_and_overrides():
    fast = recipe_config("fast", epochs=40, img_size=224)
    assert fast["scheduler"] == "onecycle" and fast["resize_schedule"] == {1: 128, 17: 160, 29: 224}
    assert fast["epochs"] == 40 and fast["img_size"] == 224
    TrainConfig(**fast, n_classes=12)  # every key is a config field
    orig = recipe_config("original", epochs=500, img_size=224, lr=None, batch_size=4)
    assert orig["optimizer"] == "radam_lookahead" and orig["lr"] == 1e-3 and orig["batch_size"] == 4
    assert orig["resize_schedule"] is None and orig["scheduler"] == "plateau"
    with pytest.raises(KeyError, match="fast"):
        recipe_config("fastest", epochs=1, img_size=64)
    assert set(RECIPES.names()) >= {"fast", "original"}


def test_progressive_schedule_ends_at_img_size():
    for epochs in (5, 12, 40, 300):
        s = progressive_schedule(epochs, 224)
        assert s[1] == 128 and max(s.values()) == 224 and all(v % 32 == 0 for v in s.values())
        assert sorted(s) == list(s) and max(s) <= epochs
    assert progressive_schedule(4, 224) is None and progressive_schedule(40, 96) is None


def test_auto_augment_keeps_sided_classes_unflipped():
    assert auto_augment(["road", "lane_left_turn", "car"]) == "street"
    assert auto_augment(["Sky", "Building", "Road", "Car"]) == "flip"
    assert auto_augment(["leftover"]) == "flip"  # a word, not a substring


def _lrs(name, steps=100, **kw):
    opt = build_optimizer("adamw", torch.nn.Linear(2, 2), 1e-2)
    sched = build_scheduler(name, opt, total_steps=steps, **kw)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return opt, sched, out


def test_one_cycle_and_warmup_cosine_shapes():
    _, _, lrs = _lrs("onecycle", pct_start=0.25)
    peak = max(range(100), key=lrs.__getitem__)
    assert lrs[0] == pytest.approx(1e-2 / 25) and 20 <= peak <= 26 and lrs[peak] == pytest.approx(1e-2, rel=1e-3)
    assert lrs[-1] < 1e-5
    _, _, lrs = _lrs("cosine", warmup=0.1)
    assert lrs[0] == pytest.approx(1e-3) and lrs[9] == pytest.approx(1e-2) and lrs[-1] < 1e-4
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert PER_STEP == {"onecycle", "cosine"}
    assert WarmupCosine(10, 2)(1) == 1.0
    with pytest.raises(ValueError, match="total_steps"):
        build_scheduler("onecycle", build_optimizer("adam", torch.nn.Linear(2, 2), 1e-3))


def test_lr_override_rescales_a_per_step_schedule():
    opt, sched, _ = _lrs("onecycle", steps=100)
    opt2 = build_optimizer("adamw", torch.nn.Linear(2, 2), 1e-2)
    sched2 = build_scheduler("onecycle", opt2, total_steps=100)
    for _ in range(30):
        opt2.step()
        sched2.step()
    before = opt2.param_groups[0]["lr"]
    set_lr(opt2, 5e-3, sched2)  # peak 1e-2 -> 5e-3: every LR of the schedule halves
    assert opt2.param_groups[0]["lr"] == pytest.approx(before / 2, rel=1e-6)
    opt2.step()
    sched2.step()
    assert opt2.param_groups[0]["max_lr"] == 5e-3


def test_freeze_encoder_only_when_pretrained(tmp_path):
    from seglib.segmentation import SegmentationRun

    cfg = TrainConfig(experiment="freeze", n_classes=22, img_size=32, batch_size=4, epochs=3, encoder_weights=None,
                      num_workers=0, freeze_encoder_epochs=2, log_images=0, optimizer="adamw", scheduler="none")
    run = SegmentationRun(cfg, "synthetic", workdir=tmp_path, smoke=True)
    run.prepare(check=False)
    tr = run.trainer(progress=False)
    assert not tr.freeze_encoder(1)  # random-init encoder: never frozen
    tr.pretrained_encoder = True  # as after ImageNet weights loaded
    enc = [p for n, p in tr.model.named_parameters() if n.startswith("encoder.")]
    dec = [p for n, p in tr.model.named_parameters() if not n.startswith("encoder.")]
    assert tr.freeze_encoder(2) and not any(p.requires_grad for p in enc) and all(p.requires_grad for p in dec)
    before = [p.detach().clone() for p in enc[:3]]
    tr.begin_train(1)
    batch = next(iter(tr.train_loader))
    _, target, _, loss = tr._forward(batch)
    tr.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    tr.optimizer.step()
    assert all(torch.equal(a, p) for a, p in zip(before, enc[:3]))  # AdamW skipped the frozen encoder
    assert not tr.freeze_encoder(3) and all(p.requires_grad for p in enc)


def _drive(workdir, *args, expect_kill=False):
    run_driver(DRIVER, workdir, "synthetic", "--recipe", "fast", *args, expect_kill=expect_kill)
    return torch.load(Path(workdir) / "checkpoints" / "last.pt", weights_only=True)


def test_one_cycle_run_killed_mid_epoch_resumes_bit_exact(tmp_path):
    ref = _drive(tmp_path / "ref")
    assert ref["config"]["scheduler"] == "onecycle" and ref["scheduler"]["last_epoch"] == ref["step"]
    killed = _drive(tmp_path / "killed", "--minutes", "0", "--kill-at-step", "6", expect_kill=True)
    assert (killed["epoch"], killed["batch"]) == (1, 1)
    out = _drive(tmp_path / "killed")
    assert out["step"] == ref["step"] and out["scheduler"] == ref["scheduler"]
    for k in ref["model"]:
        assert torch.equal(ref["model"][k], out["model"][k]), k
    strip = lambda h: json.dumps([{k: v for k, v in r.items() if "seconds" not in k} for r in h])  # noqa: E731
    assert strip(ref["history"]) == strip(out["history"])
    assert [round(h["lr"], 12) for h in out["history"]] != [out["history"][0]["lr"]] * len(out["history"])
