"""Catalyst 22.4 on accelerate 1.x: the runtime fixes work without editing the installed package, and a
user without Catalyst gets a clear install message while the seglib engine keeps working."""

import inspect
import os
import subprocess
import sys
import textwrap

from catalyst_testing import catalyst_or_fail

catalyst_or_fail()

import catalyst.core.engine  # noqa: E402
import catalyst.runners.runner  # noqa: E402
import catalyst.utils  # noqa: E402
from accelerate.utils import DistributedType  # noqa: E402

from seglib.integrations import catalyst_compat  # noqa: E402


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
