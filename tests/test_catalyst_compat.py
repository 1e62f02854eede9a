"""Catalyst 22.4 on accelerate 1.x: the runtime fixes work without editing the installed package, and a
user without Catalyst gets a clear install message while the seglib engine keeps working."""

import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

from catalyst_testing import catalyst_or_fail

catalyst_or_fail()

import catalyst.core.engine  # noqa: E402
import catalyst.runners.runner  # noqa: E402
import catalyst.utils  # noqa: E402
import torch  # noqa: E402
from accelerate.utils import DistributedType  # noqa: E402

from seglib.integrations import catalyst_compat  # noqa: E402
from seglib.integrations.catalyst_callbacks import valid_region_metrics  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_accelerate_fixes_applied_at_runtime_only():
    catalyst_compat.apply()
    catalyst_compat.apply()  # idempotent
    assert not hasattr(DistributedType, "TPU")  # accelerate 1.x: the name catalyst still uses is gone
    assert catalyst.core.engine.DistributedType.TPU is DistributedType.XLA
    assert catalyst.core.engine.DistributedType.NO is DistributedType.NO
    # the installed file is untouched: the fix is an attribute of the loaded module
    assert "DistributedType.TPU" in inspect.getsource(catalyst.core.engine)
    engine = catalyst_compat.make_engine("cpu")
    # the call that crashed every run at the end of its first loader ("AttributeError: TPU")
    assert engine.mean_reduce_ddp_metrics({"loss": 1.5}) == {"loss": 1.5}
    assert str(engine.device) == "cpu"
    # runner.train() without engine= no longer passes the removed fp16= to accelerate
    for module in (catalyst.utils, catalyst.runners.runner):
        assert module.get_available_engine.original is not None
        assert type(module.get_available_engine(cpu=True, fp16=False)).__name__ == "CPUEngine"


def test_without_catalyst_the_seglib_engine_works_and_catalyst_says_how_to_install(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        sys.modules["catalyst"] = None  # as if it were not installed
        import torch
        torch.set_num_threads(1)
        from seglib.config import TrainConfig
        from seglib.segmentation import SegmentationRun
        from seglib.integrations.catalyst_compat import CatalystMissing, catalyst_available
        assert not catalyst_available()
        cfg = TrainConfig(experiment="nocat", img_size=64, batch_size=8, epochs=1, encoder_weights=None, num_workers=0)
        run = SegmentationRun(cfg, "synthetic", workdir={str(tmp_path)!r}, smoke=True)
        run.prepare()
        try:
            run.train(progress=False, engine="catalyst")
        except CatalystMissing as err:
            print("MESSAGE", err)
        else:
            raise SystemExit("no error without catalyst")
        try:
            run.train(progress=False, engine="lightning")
        except ValueError as err:
            print("VALUE", err)
        r = run.train(progress=False)
        print("SEGLIB_EPOCHS", r.epochs_completed)
    """)
    env = dict(os.environ, HF_HUB_OFFLINE="1", SEGLIB_ENV="local")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "MESSAGE Catalyst is not installed; the seglib engine (ENGINE='seglib') works without it" in p.stdout
    assert "pip install -r requirements-catalyst.txt" in p.stdout
    assert "--no-deps --use-deprecated=legacy-resolver catalyst==22.4" in p.stdout
    assert "VALUE ENGINE must be 'seglib' or 'catalyst', got 'lightning'" in p.stdout
    assert "SEGLIB_EPOCHS 1" in p.stdout
    assert (tmp_path / "checkpoints" / "last.pt").exists()


def test_catalyst_pins_have_one_source(monkeypatch):
    deps, catalyst = list(catalyst_compat.DEPENDENCY_PINS), catalyst_compat.CATALYST_PIN
    lines = [ln.strip() for ln in (ROOT / "requirements-catalyst.txt").read_text().splitlines()]
    assert [ln for ln in lines if ln and not ln.startswith("#")] == deps + [catalyst]
    extra = json.loads(re.search(r"^catalyst = (\[.*\])$", (ROOT / "pyproject.toml").read_text(), re.M).group(1))
    assert extra == deps  # the dependencies only: pip >= 24.1 cannot install catalyst 22.4 as a dependency
    commands = [f"pip install {' '.join(deps)}", f"pip install --no-deps --use-deprecated=legacy-resolver {catalyst}"]
    for doc in ("README.md", "docs/catalyst.md"):
        text = (ROOT / doc).read_text()
        assert all(c in text for c in commands), doc
    assert all(c in catalyst_compat.INSTALL_HINT for c in commands)
    # install_catalyst() runs exactly these two commands for this interpreter, dependencies first
    ran = []
    monkeypatch.setattr(catalyst_compat.subprocess, "run", lambda cmd, check: ran.append(cmd))
    catalyst_compat.install_catalyst()
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    assert ran == [pip + deps, pip + ["--no-deps", "--use-deprecated=legacy-resolver", catalyst]]
    # the notebook's Colab cell calls it instead of repeating the pins
    nb = json.loads((ROOT / "notebooks" / "jetcar_segmentation.ipynb").read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    cell = next(c for c in code if "require_catalyst()" in c)
    assert "install_catalyst()" in cell
    assert not any(re.search(r"[\w-]+[=<>]=\s*\d", c) or "accelerate" in c for c in code)  # no version pins


def test_catalyst_dice_iou_work_on_the_valid_loader_only():
    cbs = valid_region_metrics(n_classes=3, ignore_index=None)
    runner = types.SimpleNamespace(epoch_step=1, batch_metrics={}, engine=types.SimpleNamespace(
        mean_reduce_ddp_metrics=lambda m: m))
    for loader in ("train", "valid"):
        runner.loader_key, runner.loader_metrics = loader, {}
        runner.batch = {"logits": torch.randn(2, 3, 4, 4), "target": torch.randint(0, 3, (2, 4, 4))}
        for event in ("on_loader_start", "on_batch_end", "on_loader_end"):
            for cb in sorted(cbs, key=lambda c: c.order):
                getattr(cb, event)(runner)
        has_scores = "scores" in runner.batch and "target_onehot" in runner.batch
        assert has_scores == (loader == "valid"), loader  # no N x C x H x W copies in the train step
        assert ({"catalyst_dice", "catalyst_iou"} <= set(runner.loader_metrics)) == (loader == "valid"), loader
