"""Who holds a study trial: the heartbeat a worker writes while it trains one, and whether the process that
wrote a heartbeat is provably gone (:mod:`seglib.tune.worker` takes such a trial over at once)."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

HEARTBEAT_S, STALE_AFTER_S = 15.0, 60.0
"""Defaults: a heartbeat every 15 s; a trial of another host is taken over 60 s (4 missed beats) after its last
one. Optuna's RDB heartbeat allows 2 intervals; 4 leave room for a storage write stalled ~45 s or a clock skew of
seconds between machines before a live worker could be taken over. Shorter is not needed on one machine: there
a dead process is detected at once (its pid)."""
_LIVE: set[int] = set()  # trial ids whose heartbeat runs in this process


def process_start(pid: int) -> str | None:
    """Start time of process ``pid`` (clock ticks since boot, field 22 of ``/proc/<pid>/stat``), or None when it
    does not exist or the system has no ``/proc`` (then a pid cannot be told from a later process reusing it)."""
    try:
        return Path(f"/proc/{int(pid)}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError, ValueError):
        return None


def process_gone(hb: dict, trial_id: int) -> str | None:
    """Why the process that wrote heartbeat ``hb`` (``host``, ``pid``, ``start``) is provably gone, or None when
    it may live. Only a process of this host can be checked: its pid has ended, belongs to a later process
    (another start time), or is this process, which runs no such trial."""
    if hb.get("host") != socket.gethostname() or hb.get("pid") is None:
        return None
    pid, start = int(hb["pid"]), hb.get("start")
    now = process_start(pid)
    if pid == os.getpid() and (start is None or start == now):
        return None if trial_id in _LIVE else "this process runs no such trial (an earlier run in it was cut off)"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"process {pid} on this host has ended"
    except OSError:
        pass  # exists, owned by another user
    if start is not None and now is not None and now != start:
        return f"process {pid} on this host has ended (the pid now belongs to a later process)"
    return None


class Heartbeat:
    """Writes the trial's ``heartbeat`` user attribute (``{"host", "pid", "start", "time"}``: host name, pid,
    :func:`process_start`, ``time.time()``) every ``interval`` seconds from a daemon thread.

    ``lost`` becomes True when the storage refuses (the trial was closed by another worker).
    """

    def __init__(self, storage, trial_id: int, interval: float):
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self.lost = False
        self._stop = threading.Event()
        _LIVE.add(trial_id)
        self.beat()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def beat(self) -> None:
        """Write one heartbeat now (sets :attr:`lost` if the storage refuses)."""
        try:
            self.storage.set_trial_user_attr(self.trial_id, "heartbeat", {
                "host": socket.gethostname(), "pid": os.getpid(), "start": process_start(os.getpid()),
                "time": time.time()})
        except Exception:  # noqa: BLE001 - finished by someone else, or storage unreachable
            self.lost = True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def stop(self) -> None:
        """Stop the thread (waits up to 5 s)."""
        self._stop.set()
        self._thread.join(timeout=5)
        _LIVE.discard(self.trial_id)
