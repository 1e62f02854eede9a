"""SIGKILL hooks shared by the subprocess drivers (resume_driver.py, catalyst_driver.py): a real kill of
a separate process, at a chosen optimizer step or in the middle of writing a checkpoint. They live in
``tools/reliability/kills.py``, the fault-injection harness's one copy."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.reliability.kills import KillAtStep, StepLog, kill_in_save, settle  # noqa: E402

__all__ = ["KillAtStep", "StepLog", "kill_in_save", "settle"]
