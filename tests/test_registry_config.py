import pytest
import torch

from seglib.config import MODEL_FIELDS, TrainConfig, config_diff, smoke_config
from seglib.losses import LOSSES
from seglib.metrics import METRICS, higher_is_better
from seglib.models import MODELS
from seglib.registry import Registry
from seglib.train.optim import OPTIMIZERS, SCHEDULERS


def test_unknown_name_lists_valid_ones():
    for reg, good in [(LOSSES, "dice_iou_bce"), (MODELS, "unet_mobilenet_v2"), (OPTIMIZERS, "radam_lookahead"),
                      (SCHEDULERS, "plateau"), (METRICS, "miou")]:
        with pytest.raises(KeyError) as e:
            reg.get("no_such_thing")
        assert good in str(e.value) and "no_such_thing" in str(e.value)
        assert reg.get(good.upper()) is reg.get(good)  # case-insensitive


def test_registry_refuses_duplicates():
    r = Registry("thing")
    r.register("a", 1)
    with pytest.raises(ValueError):
        r.register("A", 2)


def test_metric_directions():
    assert higher_is_better("val_miou") and higher_is_better("dice") and higher_is_better("val_pixel_accuracy")
    assert not higher_is_better("val_loss")
    with pytest.raises(KeyError, match="miou"):
        higher_is_better("val_nonsense")


def test_config_roundtrip_is_weights_only_safe(tmp_path):
    cfg = TrainConfig(resize_schedule={"1": 96, "4": 160}, n_classes=12, ignore_index=11)
    assert cfg.resize_schedule == {1: 96, 4: 160}
    torch.save({"config": cfg.to_dict()}, tmp_path / "c.pt")
    back = torch.load(tmp_path / "c.pt", weights_only=True)["config"]
    assert TrainConfig.from_dict(back) == cfg
    assert set(MODEL_FIELDS) <= set(back)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="BATCH_SIZE"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="LR"):
        TrainConfig(lr=0)


def test_config_diff_and_smoke():
    a, b = TrainConfig().to_dict(), TrainConfig(epochs=3, n_classes=5).to_dict()
    assert config_diff(a, b) == {"epochs": (500, 3), "n_classes": (22, 5)}
    s = smoke_config(TrainConfig(resize_schedule={1: 96, 4: 160, 9: 224}, epochs=50))
    assert s.epochs == 2 and s.img_size == 64 and s.num_workers == 0
    assert s.resize_schedule == {1: 32, 4: 32, 9: 64}


def test_reimported_definition_replaces_its_entry_and_others_are_refused():
    r = Registry("thing")

    def make():
        return 1

    r.register("make", make)

    def make():  # noqa: F811 - the same definition again, as a re-imported module gives
        return 2

    r.register("make", make)
    assert r.get("make")() == 2

    def other():
        return 3

    with pytest.raises(ValueError, match="already registered by"):
        r.register("make", other)


def test_a_metric_key_means_one_thing():
    from seglib.metrics import register_metric

    spec = METRICS.get("rmse")
    assert register_metric("rmse", spec.higher_is_better, spec.description) == "rmse"  # a re-imported module
    with pytest.raises(ValueError, match="higher_is_better"):
        register_metric("rmse", True, "wrong direction")
    with pytest.raises(ValueError, match="one thing"):
        register_metric("rmse", False, "another task's RMSE")
    assert not higher_is_better("val_rmse") and METRICS.get("rmse") == spec
