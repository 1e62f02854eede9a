"""Both engines build, seed, restore and stop by the one TrainingState: a monitor the task does not produce fails
before training, a fresh start seeds (a resume does not), and a resume takes early-stopping patience from the
configuration. (Before the shared state only the seglib Trainer seeded and reset patience.)"""

import pytest
import torch
from catalyst_testing import catalyst_or_fail

catalyst_or_fail()

import seglib.train.recovery as recovery_module  # noqa: E402
from seglib.config import TrainConfig  # noqa: E402
from seglib.segmentation import SegmentationRun  # noqa: E402

ENGINES = ("seglib", "catalyst")


def make_run(workdir, **kw):
    cfg = TrainConfig(**{"experiment": "state", "img_size": 32, "batch_size": 4, "epochs": 1, "encoder_weights": None,
                         "num_workers": 0, "log_images": 0, "seed": 7, **kw})
    run = SegmentationRun(cfg, "synthetic", workdir=workdir, synthetic_kwargs={"n_train": 8, "n_val": 4, "size": 64})
    run.prepare(check=False)
    return run


@pytest.mark.parametrize("engine", ENGINES)
def test_unknown_monitor_fails_before_training_listing_the_keys(tmp_path, engine):
    run = make_run(tmp_path, monitor="val_object_ap50")  # a study metric; multiclass runs do not compute it
    with pytest.raises(ValueError, match=r"'val_object_ap50'.*train_loss, val_loss, val_miou, val_dice, "
                                         r"val_pixel_accuracy"):
        run.train(progress=False, engine=engine)
    assert not (tmp_path / "checkpoints" / "last.pt").exists()  # nothing trained


@pytest.mark.parametrize("engine", ENGINES)
def test_fresh_start_seeds_and_resume_does_not(tmp_path, engine, monkeypatch, one_thread):
    seeds = []
    real = recovery_module.seed_everything  # restore() lives in seglib.train.recovery since issue 11
    monkeypatch.setattr(recovery_module, "seed_everything", lambda s: (seeds.append(s), real(s)))
    assert make_run(tmp_path).train(progress=False, engine=engine).resumed_from is None
    assert seeds == [7]
    seeds.clear()
    assert make_run(tmp_path, epochs=2).train(progress=False, engine=engine).resumed_from == {"epoch": 2, "batch": 0}
    assert seeds == []  # a resume continues the saved RNG streams instead


@pytest.mark.parametrize("engine", ENGINES)
def test_resume_takes_patience_from_the_configuration(tmp_path, engine, capsys, one_thread):
    make_run(tmp_path, early_stop_patience=1).train(progress=False, engine=engine)
    path = tmp_path / "checkpoints" / "last.pt"
    ck = torch.load(path, weights_only=True)
    ck["early_stopping"]["wait"] = 1  # as if epoch 1 had not improved: patience 1 is used up
    torch.save(ck, path)
    res = make_run(tmp_path, epochs=3, early_stop_patience=1).train(progress=False, engine=engine)
    assert "training already finished (early stopping) after 1 epochs" in capsys.readouterr().out
    assert res.stopped_early and res.epochs_completed == 1
    res = make_run(tmp_path, epochs=2, early_stop_patience=3).train(progress=False, engine=engine)
    assert res.resumed_from == {"epoch": 2, "batch": 0} and res.epochs_completed == 2 and not res.stopped_early
    assert torch.load(path, weights_only=True)["early_stopping"]["wait"] in (0, 2)  # counted on from 1


@pytest.mark.parametrize("engine", ENGINES)
def test_other_data_stops_both_engines_before_training(tmp_path, engine, one_thread):
    from seglib.train.state import DataMismatch

    make_run(tmp_path).train(progress=False, engine="catalyst" if engine == "seglib" else "seglib")
    path = tmp_path / "checkpoints" / "last.pt"
    before = path.read_bytes()
    other = SegmentationRun(make_run(tmp_path).cfg, "synthetic", workdir=tmp_path,
                            synthetic_kwargs={"n_train": 12, "n_val": 4, "size": 64})
    other.prepare(check=False)
    with pytest.raises(DataMismatch, match="holds a run trained on other data"):
        other.train(progress=False, engine=engine)
    assert path.read_bytes() == before
