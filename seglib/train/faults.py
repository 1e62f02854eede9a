"""Kill points for the fault-injection suite (``make reliability``, ``tests/test_faults.py``).

Production code marks the moments where a disconnect would hurt most with :func:`point` (between the two
checkpoint writes, before an ``os.replace``, in the middle of a copy to WORKDIR ...). Nothing happens unless
the environment variable ``SEGLIB_FAULT_AT`` names that point: ``"<name>:<n>"`` (comma-separated for
several) makes the ``n``-th time (1-based) this process reaches ``<name>`` end with ``SIGKILL``, exactly what
Colab does to a runtime that disconnects. The names in use are listed in :data:`POINTS`.
"""

from __future__ import annotations

import os
import signal

ENV = "SEGLIB_FAULT_AT"
POINTS = {
    "save.begin": "TrainingState.save is entered (nothing of this save written yet)",
    "save.between": "the first of the epoch's two checkpoint files is written, the second not yet",
    "save.end": "every file of this save is written, the copy to WORKDIR not yet requested",
    "atomic_save.before_replace": "the temporary file is complete and fsync-ed, os.replace not yet done",
    "mirror.mid_copy": "a file is half copied to WORKDIR (its temporary file is partial)",
}
"""Kill point name -> the moment it marks."""

_hits: dict[str, int] = {}


def point(name: str) -> None:
    """Mark kill point ``name``; SIGKILL this process if ``$SEGLIB_FAULT_AT`` asks for this hit of it.

    Raises:
        ValueError: ``name`` is not in :data:`POINTS` (only checked while ``$SEGLIB_FAULT_AT`` is set).
    """
    spec = os.environ.get(ENV)
    if not spec:
        return
    if name not in POINTS:
        raise ValueError(f"unknown kill point {name!r}; known: {sorted(POINTS)}")
    _hits[name] = _hits.get(name, 0) + 1
    for item in spec.split(","):
        want, _, n = item.strip().rpartition(":")
        if want == name and int(n) == _hits[name]:
            os.kill(os.getpid(), signal.SIGKILL)
