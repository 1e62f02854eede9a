"""The loss, layout and model examples of docs/architecture.md run as written and do what the page says."""

import re
from pathlib import Path

import torch

import seglib  # noqa: F401  (torchvision guard before smp)

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"


def examples() -> dict[str, str]:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    return {name: next(b for b in blocks if key in b) for name, key in
            (("loss", "@LOSSES.register"), ("layout", "@SEGMENTATION_LAYOUTS.register"), ("model", "@MODELS.register"))}


def run_example(name: str) -> dict:
    scope: dict = {}
    exec(compile(examples()[name], f"{DOC}:{name}", "exec"), scope)
    return scope


def test_loss_example_registers_a_working_loss():
    from seglib.losses import LOSSES, build_loss

    try:
        run_example("loss")
        loss = build_loss("softmax_dice", n_classes=3, ignore_index=255)
        target = torch.randint(0, 3, (2, 8, 8))
        perfect = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 50
        assert float(loss(perfect, target)) < 1e-6
        assert 0 < float(loss(torch.zeros(2, 3, 8, 8), target)) < 1
    finally:
        LOSSES._items.pop("softmax_dice", None)


def test_layout_example_splits_a_folder(tmp_path):
    from PIL import Image

    from seglib.data.layouts import SEGMENTATION_LAYOUTS

    for sub in ("images", "labels"):
        (tmp_path / sub).mkdir()
        for i in range(5):
            Image.new("L", (8, 8)).save(tmp_path / sub / f"{i}.png")
    try:
        run_example("layout")
        splits = SEGMENTATION_LAYOUTS.get("cityscapes_like")(tmp_path, seed=0, val_fraction=0.2)
        assert len(splits["train"]) == 4 and len(splits["val"]) == 1 and splits["test"] == []
        assert all(s.mask == tmp_path / "labels" / s.image.name for s in splits["train"])
    finally:
        SEGMENTATION_LAYOUTS._items.pop("cityscapes_like", None)


def test_model_example_builds_a_model():
    from seglib.models import MODELS, build_model

    try:
        run_example("model")
        model = build_model("fpn_resnet18", classes=4).eval()
        with torch.no_grad():
            assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 4, 64, 64)
    finally:
        MODELS._items.pop("fpn_resnet18", None)
