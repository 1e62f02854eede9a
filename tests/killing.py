"""SIGKILL hooks shared by the subprocess drivers (resume_driver.py, catalyst_driver.py): a real kill of
a separate process, at a chosen optimizer step or in the middle of writing a checkpoint."""

import os
import signal

import torch


class KillAtStep:
    """Callback: SIGKILL this process right after optimizer step ``step`` (before it is checkpointed).
    Works with both engines: their ``on_batch_end`` gets an object with a ``step`` attribute."""

    def __init__(self, step: int):
        self.step = step

    def on_batch_end(self, state):
        if state.step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def kill_in_save(n: int) -> None:
    """Patch ``torch.save`` so that its ``n``-th call writes half a file and SIGKILLs this process."""
    real_save, calls = torch.save, [0]

    def partial_save(obj, f, *args, **kw):
        calls[0] += 1
        if calls[0] == n:
            f.write(b"PK\x03\x04 half a checkpoint")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, f, *args, **kw)

    torch.save = partial_save
