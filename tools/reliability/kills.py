"""Kill hooks: a real SIGKILL of this process at a chosen optimizer step or in the middle of ``torch.save``.

Used by the fault-injection harness (:mod:`tools.reliability.scenarios`) and by the tests' subprocess drivers
(``tests/killing.py`` re-exports them). Only ``os``, ``signal``, ``json``, ``time`` and torch are imported.
"""

from __future__ import annotations

import json
import os
import signal
import time

import torch


def settle(state) -> None:
    """Wait for the checkpoint write in flight (``state.writer``, written off the training thread), so that a kill
    that follows leaves a known position on disk: the last save before it. A kill *during* a write is
    :func:`kill_in_save`'s case."""
    writer = getattr(state, "writer", None)
    if writer is not None:
        writer.wait()


class KillAtStep:
    """Trainer callback: SIGKILL this process right after optimizer step ``step`` of the run (``state.step``,
    counted over resumes; before that step is checkpointed, after the previous save is on disk). Works with both
    engines: their ``on_batch_end`` gets an object with a ``step`` attribute."""

    def __init__(self, step: int):
        self.step = step

    def on_batch_end(self, state):
        if state.step == self.step:
            settle(state)
            os.kill(os.getpid(), signal.SIGKILL)


class StepLog:
    """Trainer callback: one JSON line per optimizer step (``ev: "step"``) and epoch end (``ev: "epoch"``) with
    the Unix time [s], pid, run folder (WORKDIR of the run or trial), step, epoch and batch; SIGKILL
    right after the process's ``kill_at_step``-th step (before it is checkpointed, after the previous save is)."""

    def __init__(self, path: str, kill_at_step: int | None = None):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.kill_at_step, self.n = kill_at_step, 0

    def _write(self, state, ev: str) -> None:
        line = {"t": time.time(), "pid": os.getpid(), "run": str(state.ws.workdir), "ev": ev,
                "step": state.step, "epoch": state.epoch, "batch": state.batch}
        os.write(self.fd, (json.dumps(line) + "\n").encode())

    def on_batch_end(self, state) -> None:
        self.n += 1
        self._write(state, "step")
        if self.n == self.kill_at_step:
            settle(state)
            os.kill(os.getpid(), signal.SIGKILL)

    def on_epoch_end(self, state, record) -> None:
        self._write(state, "epoch")


def kill_in_save(n: int) -> None:
    """Patch ``torch.save`` so that its ``n``-th call in this process writes half a file and SIGKILLs it."""
    real_save, calls = torch.save, [0]

    def partial_save(obj, f, *args, **kw):
        calls[0] += 1
        if calls[0] == n:
            f.write(b"PK\x03\x04 half a checkpoint")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, f, *args, **kw)

    torch.save = partial_save
