"""The copy of a run's local folder to WORKDIR (Google Drive on Colab), in a background thread.

Training writes every checkpoint to the fast local folder first; :class:`BackgroundCopy` then copies what
changed to WORKDIR with :func:`seglib.train.checkpoint.mirror` (atomic on the WORKDIR side: temporary
name, size check, rename; a failed copy never replaces a good file), so the training thread does not
wait for Drive. Requests made while a copy runs are merged into one more copy of whatever changed.
A failed copy is reported (stderr, with its cause in words: WORKDIR read-only, full, or no longer there
because Drive was unmounted; :func:`explain`) at the next request and retried then; :meth:`BackgroundCopy.wait`,
called at the end of every ``train()`` (both engines, and so before any export), waits for the copy in
flight, retries a failed one once and raises if it still fails, so no error is lost.
"""

from __future__ import annotations

import errno
import sys
import threading
import time
from pathlib import Path

from .checkpoint import mirror


class MirrorError(OSError):
    """Copying the local folder to WORKDIR failed twice; the local folder still holds everything."""


def explain(err: BaseException, workdir: Path) -> str:
    """The cause of a failed copy to ``workdir`` in words: it no longer exists (Drive unmounted), it is
    read-only, it is full, else the error's type and text."""
    if not Path(workdir).is_dir():
        return f"WORKDIR {workdir} no longer exists; is Drive still mounted? ({type(err).__name__}: {err})"
    code = getattr(err, "errno", None)
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"WORKDIR {workdir} is read-only ({type(err).__name__}: {err})"
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"WORKDIR {workdir} is full ({type(err).__name__}: {err})"
    return f"{type(err).__name__}: {err}"


class BackgroundCopy:
    """Copy ``relpaths`` from ``src`` to ``dst`` off the training thread.

    Args:
        src, dst: the local folder and WORKDIR.
        relpaths: files or folders relative to both (e.g. ``checkpoints/last.pt``, ``tensorboard``).
        background: False copies in the calling thread (what seglib did before; for measurements).

    Attributes:
        blocked: seconds callers spent inside :meth:`request` and :meth:`wait` (the training thread's
            share of the copying).
        copies: copies finished (each copies only what changed); error: the last copy's error or None.
    """

    def __init__(self, src: Path, dst: Path, relpaths: list[str], background: bool = True):
        self.src, self.dst, self.relpaths, self.background = Path(src), Path(dst), list(relpaths), background
        self.blocked, self.copies = 0.0, 0
        self.error: BaseException | None = None
        self._reported: BaseException | None = None
        self._pending = False
        self._thread: threading.Thread | None = None
        self._cond = threading.Condition()

    def _copy(self) -> None:
        try:
            mirror(self.src, self.dst, self.relpaths)
            self.error = None
            self.copies += 1
        except Exception as err:  # noqa: BLE001 - kept, reported at the next request and retried then
            self.error = err

    def _report(self) -> None:
        err = self.error
        if err is not None and err is not self._reported:
            self._reported = err
            print(f"WARNING: copying {self.src} to WORKDIR {self.dst} failed ({explain(err, self.dst)}); "
                  "training goes on and the copy is retried at the next save. The local folder holds the latest "
                  "checkpoint.", file=sys.stderr, flush=True)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._pending:
                    self._thread = None
                    self._cond.notify_all()
                    return
                self._pending = False
            self._copy()

    def request(self) -> None:
        """Copy what changed, now in the background (returns at once) or here when ``background`` is False.
        Reports the previous copy's error, if any, first (this request retries it)."""
        t0 = time.monotonic()
        self._report()
        if not self.background:
            self._copy()
        else:
            with self._cond:
                self._pending = True
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="seglib-workdir-copy", daemon=True)
                    self._thread.start()
        self.blocked += time.monotonic() - t0

    def wait(self, raise_errors: bool = True) -> None:
        """Wait for the copy in flight; if the last copy failed, retry once here.

        Raises:
            MirrorError: (``raise_errors``) the retry failed too; the message names both folders and says the
                local one holds everything. Without ``raise_errors`` the error is printed instead.
        """
        t0 = time.monotonic()
        with self._cond:
            while self._thread is not None:
                self._cond.wait()
        if self.error is not None:
            self._report()
            self._copy()
        self.blocked += time.monotonic() - t0
        if self.error is not None:
            msg = (f"copying {self.src} to WORKDIR {self.dst} failed: {explain(self.error, self.dst)}. "
                   f"Everything is in the local folder {self.src}; run train() again once WORKDIR is writable "
                   "(it copies what is missing), or copy the folder by hand.")
            if raise_errors:
                raise MirrorError(msg) from self.error
            print("WARNING: " + msg, file=sys.stderr, flush=True)
