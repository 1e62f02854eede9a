"""SIGKILL hooks shared by the subprocess drivers (resume_driver.py, catalyst_driver.py): a real kill of
a separate process, at a chosen optimizer step or in the middle of writing a checkpoint. They live in
``tools/reliability/kills.py``, the fault-injection harness's one copy. :func:`run_driver` runs a driver."""

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.reliability.kills import KillAtStep, StepLog, kill_in_save, settle  # noqa: E402

__all__ = ["KillAtStep", "StepLog", "kill_in_save", "run_driver", "settle"]


def run_driver(driver: Path, *args, expect_kill: bool = False) -> str:
    """Run ``python driver *args`` (offline hub, local runtime) and return its stdout; fail with its output unless
    it exits 0, or, with ``expect_kill``, dies of SIGKILL."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", SEGLIB_ENV="local")
    p = subprocess.run([sys.executable, str(driver), *map(str, args)], capture_output=True, text=True, env=env,
                       timeout=600)
    assert p.returncode == (-9 if expect_kill else 0), p.stdout + p.stderr
    return p.stdout
