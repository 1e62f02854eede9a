"""One session at a time on a journal file: a lease file next to it, refused to a second machine.

Optuna's journal file (``WORKDIR/optuna_journal.log``) is safe for several processes on ONE machine (they share
its file lock), not for two machines or two Colab sessions on one Drive folder: Drive has no file locks between
machines, so two sessions appending at once can corrupt the journal or lose trials. A study worker on a journal
(:meth:`seglib.hparam.HParamRun.run_studies`) therefore holds a *lease*: ``<journal>.session.json`` with
``{"host", "pid", "start", "time"}``, rewritten every ``heartbeat`` seconds and removed at the end.

- The same host (another process on this machine, or a rerun in the same VM): allowed; its lease is refreshed.
- Another host whose lease was refreshed less than ``stale_after`` seconds ago: refused with
  :class:`JournalInUseError`, which says which host, how long ago, why, what to use instead (a PostgreSQL URL)
  and, for a session that is gone (a Colab runtime lost and restarted on a new VM), in how many seconds a rerun
  goes through or which file to delete.
- Another host's lease older than ``stale_after``: that session is gone; the lease is taken over with a line.

The rule refuses at once instead of waiting to see whether the other session's lease is refreshed: Drive may
show another machine's writes late, so "no refresh seen" is weak evidence that a session is gone, while a fresh
lease is strong evidence that one was alive. A session that finds its own lease taken by another host while it
runs (its refresh was not seen in time) stops before its next training step (:class:`LeaseGuard`).
This is a best-effort guard against the common mistake, not a lock: for two sessions use a PostgreSQL URL.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .liveness import HEARTBEAT_S, STALE_AFTER_S, process_start
from .storage import journal_path

LEASE_SUFFIX = ".session.json"
README_SECTION = 'README "Two Colab sessions on one study"'


class JournalInUseError(RuntimeError):
    """Another machine (Colab session) holds a fresh lease on the study's journal file; the message says which,
    why two sessions on one Drive journal are refused, and what to do."""


def lease_path(journal) -> Path:
    """``<journal>.session.json`` next to the journal file."""
    journal = Path(journal)
    return journal.with_name(journal.name + LEASE_SUFFIX)


class JournalLease:
    """The lease of this process on a journal file (see the module docstring).

    Args:
        journal: the journal file's path.
        heartbeat: seconds between refreshes of the lease file (a daemon thread).
        stale_after: seconds after its last refresh when another host's lease counts as gone.
        log: ``str -> None`` for the takeover line (default ``print``).
    """

    def __init__(self, journal, heartbeat: float = HEARTBEAT_S, stale_after: float = STALE_AFTER_S,
                 log: Callable[[str], None] = print):
        self.journal, self.path = Path(journal), lease_path(journal)
        self.heartbeat, self.stale_after, self.log = float(heartbeat), float(stale_after), log
        self.conflict: str | None = None  # set when another host took the lease while this session ran
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def read(self) -> dict | None:
        """The lease file's record, or None when there is none (or it cannot be read as one)."""
        try:
            held = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return held if isinstance(held, dict) else None

    def _foreign(self, held: dict | None) -> float | None:
        """Age in seconds of ``held`` when it is another host's fresh lease, else None."""
        if not held or held.get("host") == socket.gethostname():
            return None
        age = time.time() - float(held.get("time") or 0)
        return age if age < self.stale_after else None

    def _write(self) -> None:
        record = {"host": socket.gethostname(), "pid": os.getpid(), "start": process_start(os.getpid()),
                  "time": time.time(), "journal": self.journal.name}
        tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        try:
            tmp.write_text(json.dumps(record))
            os.replace(tmp, self.path)  # never a half-written lease
        except OSError:
            tmp.unlink(missing_ok=True)
            raise

    def refused(self, held: dict, age: float) -> str:
        """The message of :class:`JournalInUseError` for lease ``held`` (``age`` seconds old)."""
        return (f"the study journal {self.journal} is in use by another session: host {held.get('host')} (pid "
                f"{held.get('pid')}), whose lease was refreshed {age:.0f} s ago. " + self._advice(age))

    def _advice(self, age: float) -> str:
        wait = max(1.0, self.stale_after - age)
        return ("A journal file on Drive is not safe for two sessions (Drive has no file locks), so this session is "
                f'refused. To share a study between Colab sessions use STORAGE="postgresql://..." ({README_SECTION}). '
                f"If that session is gone (its runtime was reset or lost), run this again in {wait:.0f} s, when its "
                f"lease goes stale (STALE_AFTER {self.stale_after:.0f} s after its last refresh), or delete {self.path}")

    def acquire(self) -> JournalLease:
        """Take the lease (this host's or a stale one) and start refreshing it; returns self.

        Raises:
            JournalInUseError: another host's lease is fresh (:meth:`refused` is the message).
            OSError: the lease file cannot be written next to the journal.
        """
        held = self.read()
        age = self._foreign(held)
        if age is not None:
            raise JournalInUseError(self.refused(held, age))
        if held and held.get("host") != socket.gethostname():
            age = time.time() - float(held.get("time") or 0)
            self.log(f"journal lease {self.path}: host {held.get('host')} (pid {held.get('pid')}) last refreshed it "
                     f"{age:.0f} s ago (> STALE_AFTER {self.stale_after:.0f} s), so that session is gone; taking "
                     "the journal over")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def refresh(self) -> None:
        """Rewrite the lease now, unless another host has taken it meanwhile: then set :attr:`conflict` (once,
        with a line) and leave its lease alone. A failed write (Drive hiccup) is retried at the next refresh."""
        held = self.read()
        age = self._foreign(held)
        if age is not None:
            if self.conflict is None:
                self.conflict = (f"host {held.get('host')} (pid {held.get('pid')}) took over the lease of the study "
                                 f"journal {self.journal} while this session was running (its lease was refreshed "
                                 f"{age:.0f} s ago; this session's refreshes were not seen in time); this session "
                                 "stops so that only one writes the journal. " + self._advice(age))
                self.log(self.conflict)
            return
        try:
            self._write()
        except OSError:
            pass

    def _run(self) -> None:
        while not self._stop.wait(self.heartbeat):
            self.refresh()

    def release(self) -> None:
        """Stop refreshing and delete the lease file when it is still this process's (waits up to 5 s)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        held = self.read()
        if held and held.get("host") == socket.gethostname() and held.get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)


def hold_journal(storage, workdir, heartbeat: float = HEARTBEAT_S, stale_after: float = STALE_AFTER_S,
                 log: Callable[[str], None] = print) -> JournalLease | None:
    """Acquire the :class:`JournalLease` of the journal file a ``STORAGE`` value means (:func:`.storage.journal_path`),
    or None for an RDB URL or a storage object (a database serialises its sessions itself).

    Raises:
        JournalInUseError: another host's lease is fresh.
    """
    journal = journal_path(storage, workdir)
    return None if journal is None else JournalLease(journal, heartbeat, stale_after, log).acquire()


class LeaseGuard:
    """Trainer callback: raise :class:`JournalInUseError` before the next step once ``lease`` lost its journal
    (None: no lease, nothing to guard)."""

    def __init__(self, lease: JournalLease | None):
        self.lease = lease

    def on_batch_end(self, trainer) -> None:
        """Raise :class:`JournalInUseError` (the lease's ``conflict``) when another host took the lease."""
        if self.lease is not None and self.lease.conflict:
            raise JournalInUseError(self.lease.conflict)

    def release(self) -> None:
        """Release the lease (:meth:`JournalLease.release`), if any."""
        if self.lease is not None:
            self.lease.release()
