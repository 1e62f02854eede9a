"""Trainer behaviour around resume: refusals, LR override, TensorBoard steps, finished runs, Drive mirroring."""

import shutil

import pytest
import torch

from seglib.config import TrainConfig
from seglib.segmentation import SegmentationRun
from seglib.train.callbacks import BestTracker, EarlyStopping, LossMean
from seglib.train.state import CheckpointMismatch
from seglib.train.trainer import Trainer

SYN = {"n_train": 8, "n_val": 4, "n_test": 2, "size": 64}


def make_run(workdir, local=None, **kw):
    cfg = TrainConfig(**{"experiment": "t", "img_size": 32, "batch_size": 4, "epochs": 2, "encoder_weights": None,
                         "num_workers": 0, **kw})
    run = SegmentationRun(cfg, "synthetic", workdir=workdir, local=local, synthetic_kwargs=SYN)
    run.prepare(check=False)
    return run


def test_early_stopping_and_best_tracker_follow_metric_direction():
    es = EarlyStopping("val_loss", patience=2)
    assert [es.update(v, e) for e, v in enumerate([1.0, 0.9, 0.95, 0.91], 1)] == [False, False, False, True]
    assert es.tracker.value == 0.9 and es.tracker.epoch == 2
    bt = BestTracker("val_miou")
    assert bt.update(0.3, 1) and not bt.update(0.2, 2) and bt.update(0.4, 3)
    es2 = EarlyStopping("val_loss", patience=5)
    es2.load_state_dict(es.state_dict())
    assert es2.wait == 2 and not es2.should_stop  # more patience on resume -> train on


def test_epoch_loss_mean_weights_batches_by_valid_samples():
    mean = LossMean()
    t = torch.zeros(4, 2, 2, dtype=torch.long)
    mean.add(torch.tensor(2.0), t, ignore_index=255)  # 4 samples
    t[:2] = 255  # two samples entirely ignored: weight 2
    mean.add(torch.tensor(5.0), t, ignore_index=255)
    assert mean.value() == pytest.approx((2.0 * 4 + 5.0 * 2) / 6)
    before = mean.value()
    mean.add(torch.tensor(float("nan")), torch.full((3, 2, 2), 255), ignore_index=255)  # all ignored
    mean.add(torch.tensor(0.0), torch.full((3, 2, 2), 255), ignore_index=255)
    assert mean.value() == before  # a batch of ignored pixels leaves the epoch mean unchanged
    mean.add(torch.tensor(1.0), t, ignore_index=None)  # no ignore_index: every sample counts
    assert mean.value() == pytest.approx((2.0 * 4 + 5.0 * 2 + 1.0 * 4) / 10)
    old = LossMean()
    old.load_state_dict({"loss_sum": torch.tensor(9.0, dtype=torch.float64), "seen": 3})  # format 1: int count
    assert old.value() == 3.0 and old.state_dict()["seen"].dtype == torch.float64


def test_plateau_mode_from_metric_direction(tmp_path):
    run = make_run(tmp_path, monitor="val_miou")
    tr = run.trainer(progress=False)
    assert tr.scheduler.mode == "max" and tr.scheduler.factor == 0.25 and tr.scheduler.patience == 5
    assert [g["lr"] for g in tr.optimizer.param_groups] == [5e-4, 1e-3]  # encoder at LR/2


def test_resume_refuses_other_model_and_keeps_checkpoint(tmp_path):
    make_run(tmp_path, epochs=1).train(progress=False)
    ck = tmp_path / "checkpoints" / "last.pt"
    before = ck.read_bytes()
    other = make_run(tmp_path, epochs=2, n_classes=23)
    with pytest.raises(CheckpointMismatch, match=r"n_classes: checkpoint 22, now 23.*checkpoint is kept"):
        other.train(progress=False)
    assert ck.read_bytes() == before


def test_finished_run_does_nothing_and_lr_override(tmp_path, capsys):
    run = make_run(tmp_path, epochs=1)
    run.train(progress=False)
    before = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    again = make_run(tmp_path, epochs=1).train(progress=False)
    assert "already finished" in capsys.readouterr().out and again.epochs_completed == 1
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == before
    res = make_run(tmp_path, epochs=2).train(lr_override=2e-4, progress=False)
    out = capsys.readouterr().out
    assert "resumed from" in out and "epoch 2, batch 0" in out and "LR override: 0.001 -> 0.0002" in out
    assert res.resumed_from == {"epoch": 2, "batch": 0}
    assert res.history[-1]["lr"] == pytest.approx(2e-4)
    ck = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert [g["lr"] for g in ck["optimizer"]["param_groups"]] == pytest.approx([1e-4, 2e-4])


def test_tensorboard_steps_unique_after_a_crash_between_logging_and_checkpoint(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    real_save = Trainer.save

    def crash_on_second_epoch_end(self, best=False):
        if self.epoch == 2:
            raise SystemExit("killed after TensorBoard logging, before the checkpoint")
        return real_save(self, best)

    monkeypatch.setattr(Trainer, "save", crash_on_second_epoch_end)
    with pytest.raises(SystemExit):
        make_run(tmp_path, epochs=3).train(progress=False)
    monkeypatch.setattr(Trainer, "save", real_save)
    res = make_run(tmp_path, epochs=3).train(progress=False)
    assert res.resumed_from == {"epoch": 2, "batch": 0}
    acc = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    steps = [e.step for e in acc.Scalars("val/loss")]
    assert steps == [1, 2, 3]
    assert [e.value for e in acc.Scalars("val/loss")] == pytest.approx([h["val_loss"] for h in res.history])
    assert [e.step for e in acc.Images("val/predictions")] == [1, 2, 3]
    assert {"train/loss", "val/miou", "val/dice", "val/pixel_accuracy", "lr"} <= set(acc.Tags()["scalars"])


def test_colab_like_mirror_survives_losing_the_local_disk(tmp_path):
    drive, local = tmp_path / "drive", tmp_path / "vm"
    make_run(drive, local=local, epochs=1).train(progress=False)
    assert (drive / "checkpoints" / "last.pt").exists() and list((drive / "tensorboard").iterdir())
    shutil.rmtree(local)  # the Colab VM is recycled; Drive keeps the files
    res = make_run(drive, local=local, epochs=2).train(progress=False)
    assert res.resumed_from == {"epoch": 2, "batch": 0} and res.epochs_completed == 2
    assert torch.load(drive / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 2


def test_study_trial_monitoring_an_object_metric_fails_before_training(tmp_path):
    # study trials compute object AP only in the final evaluation; monitoring it used to fail with a bare
    # KeyError after a whole epoch
    from seglib.data.layouts import load_splits
    from seglib.data.synthetic.blobs import generate_blobs
    from seglib.tune.trial import BinaryTrial

    splits = load_splits(generate_blobs(tmp_path / "data", n_train=4, n_val=2, size=32))[1]
    spec = {"optimizer": "adam", "lr": 1e-3, "scheduler": "plateau", "loss": "bce_switching", "weight_decay": 0.0,
            "dropout": 0.0, "train_fraction": 1.0, "augment": "none", "width_divisor": 16, "batchnorm": False,
            "img_size": 32, "batch_size": 2, "epochs": 1, "patience": 20, "seed": 0, "invert": False, "data": "x",
            "checkpoint_minutes": 5.0}
    trial = BinaryTrial(spec, splits, data="d", workdir=tmp_path / "trial")
    trial.cfg.monitor = "val_object_ap50"
    with pytest.raises(ValueError, match=r"'val_object_ap50'.*train_loss, val_loss, val_.*val_pixel_ap"):
        trial.trainer(progress=False)
    assert not (tmp_path / "trial" / "checkpoints").exists()
