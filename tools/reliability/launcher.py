"""Start scenario runs as real child processes, kill them from outside, rerun them until they finish.

Importing torch and seglib takes 5-15 s on a busy 2-core machine, longer than a tiny run itself. The children
are therefore forked by a ``multiprocessing`` *fork server* that imported :mod:`tools.reliability.scenarios`
(torch, seglib, TensorBoard) once and never ran a torch operation; each child is a separate process with its
own pid, killed by a real ``SIGKILL`` (from inside by a kill hook, or from here by a timer), exactly what Colab
does to a runtime that disconnects.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from dataclasses import replace

from .scenarios import Case, run_case

KILLED = -signal.SIGKILL
_CTX = None
_LOCK = threading.Lock()


def context():
    """The fork-server multiprocessing context (preloading :mod:`tools.reliability.scenarios`)."""
    global _CTX
    with _LOCK:
        if _CTX is None:
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload(["tools.reliability.scenarios"])
            _CTX = ctx
        return _CTX


def launch(case: Case, kill_after: float | None = None, timeout: float = 600.0) -> dict:
    """Run ``case`` in a child process and wait for it.

    Args:
        kill_after: SIGKILL the child from here after this many seconds [s] (a timer kill), if still running.
        timeout: SIGKILL it after this many seconds and report ``timed_out``.

    Returns:
        ``{"pid", "rc" (exit code; -9 = SIGKILL), "seconds", "timer" (True when the timer killed it),
        "timed_out"}``.
    """
    p = context().Process(target=run_case, args=(case,), daemon=True)
    t0 = time.monotonic()
    p.start()
    timer = timed_out = False
    if kill_after is not None:
        p.join(kill_after)
        if p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
            timer = True
    p.join(max(0.0, timeout - (time.monotonic() - t0)))
    if p.is_alive():
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        timed_out = True
    return {"pid": p.pid, "rc": p.exitcode, "seconds": time.monotonic() - t0, "timer": timer,
            "timed_out": timed_out}


def run_until_finished(case: Case, kills: list[dict], max_runs: int = 6, timeout: float = 600.0,
                       between=None) -> list[dict]:
    """Run ``case`` with the first kill of ``kills``, rerun it with the next one after each SIGKILL (double
    kills), then without any kill until a run ends by itself (or ``max_runs`` runs).

    Args:
        kills: dicts of :class:`Case` fields (``kill_at_step``, ``fault``, ``kill_in_save``) and/or
            ``kill_after`` [s] (a timer kill from here), one per killed run.
        between: ``(run_index) -> None`` called after each killed run, before the next (e.g. to delete the
            local folder: a new Colab VM).

    Returns:
        One :func:`launch` result per run, each with ``"kill"`` (the kill asked for, or None) added.
    """
    runs = []
    for i in range(max_runs):
        kill = dict(kills[i]) if i < len(kills) else None
        after = kill.pop("kill_after", None) if kill else None
        this = replace(case, **(kill or {}))
        out = launch(this, kill_after=after, timeout=timeout)
        out["kill"] = kills[i] if kill is not None else None
        runs.append(out)
        if out["rc"] != KILLED or out["timed_out"]:
            break
        if between is not None:
            between(i)
    return runs
