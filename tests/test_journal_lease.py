"""Two sessions on one Drive journal are refused (issue 15): the lease next to ``optuna_journal.log``.

Another machine is faked by writing the lease file with another host name, as a second Colab VM would leave it.
The study is ``hparam_driver.py``'s tiny one (``augmentation``: 2 trials of 1 epoch), STALE_AFTER 3 s.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time

import pytest
from hparam_driver import make_run, run_study

from seglib.tune.journal_lease import JournalInUseError, JournalLease, LeaseGuard, hold_journal, lease_path
from seglib.tune.storage import JOURNAL_NAME

STUDY, STALE_AFTER = "augmentation", 3.0


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """``(run, lrs, lease file)`` of one prepared tiny study (its trials train in the first run, later runs find
    them done: the lease is taken and released in every run all the same)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run, lrs = make_run(tmp_path_factory.mktemp("lease") / "w", 1, "dice", 1e-3)
        yield run, lrs, lease_path(run.ws.workdir / JOURNAL_NAME)
    finally:
        torch.set_num_threads(before)


def write_lease(path, host: str, age: float, pid: int = 4242) -> dict:
    """A lease as a session on ``host`` refreshed it ``age`` seconds ago."""
    held = {"host": host, "pid": pid, "start": "1", "time": time.time() - age, "journal": JOURNAL_NAME}
    path.write_text(json.dumps(held))
    return held


def test_the_same_host_passes_and_the_lease_is_removed_at_the_end(study):
    run, lrs, lease = study
    lease.parent.mkdir(parents=True, exist_ok=True)
    write_lease(lease, socket.gethostname(), 0.0, pid=os.getppid())  # another live process on this machine
    seen = []
    original = LeaseGuard.on_batch_end

    def spy(self, trainer):
        seen.append(json.loads(lease.read_text()))
        return original(self, trainer)

    LeaseGuard.on_batch_end = spy
    try:
        run_study(run, lrs, STUDY)
    finally:
        LeaseGuard.on_batch_end = original
    assert len(run.table()) == 2 and seen  # the trials trained ...
    assert all(s["host"] == socket.gethostname() and s["pid"] == os.getpid() for s in seen)  # ... under this lease
    assert not lease.exists()


def test_a_fresh_lease_of_another_host_is_refused_and_says_what_to_do(study):
    run, lrs, lease = study
    held = write_lease(lease, "colab-vm-other", 1.0)  # fresh: younger than STALE_AFTER
    with pytest.raises(JournalInUseError) as err:
        run_study(run, lrs, STUDY, stale_after=600)  # 600 s: still fresh however slow this machine is
    msg = str(err.value)
    for part in (rf"{re.escape(str(run.ws.workdir / JOURNAL_NAME))} is in use by another session: host colab-vm-other "
                 r"\(pid 4242\), whose lease was refreshed [12] s ago\.",
                 re.escape("A journal file on Drive is not safe for two sessions (Drive has no file locks)"),
                 re.escape('use STORAGE="postgresql://..." (README "Two Colab sessions on one study")'),
                 r"run this again in 59[89] s, when its lease goes stale \(STALE_AFTER 600 s after its last refresh\)",
                 re.escape(f"or delete {lease}")):
        assert re.search(part, msg), (part, msg)
    assert json.loads(lease.read_text()) == held  # the other session's lease is left alone
    lease.unlink()


def test_a_stale_lease_of_another_host_is_taken_over_with_a_line(study, capsys):
    run, lrs, lease = study
    write_lease(lease, "colab-vm-lost", STALE_AFTER + 7)
    run_study(run, lrs, STUDY)
    out = capsys.readouterr().out
    assert re.search(rf"journal lease {re.escape(str(lease))}: host colab-vm-lost \(pid 4242\) last refreshed it "
                     rf"1[01] s ago \(> STALE_AFTER 3 s\), so that session is gone; taking the journal over", out), out
    assert not lease.exists() and len(run.table()) == 2


def test_the_wait_in_the_message_counts_down_to_the_lease_going_stale(tmp_path):
    lease = lease_path(tmp_path / JOURNAL_NAME)
    write_lease(lease, "colab-vm-lost", 20.0)
    with pytest.raises(JournalInUseError, match=r"refreshed 20 s ago.*run this again in 40 s.*STALE_AFTER 60 s"):
        hold_journal(None, tmp_path, heartbeat=15, stale_after=60)


def test_a_lease_taken_by_another_host_while_running_stops_the_session(tmp_path):
    lines = []
    lease = hold_journal(tmp_path / "j.log", tmp_path, heartbeat=0.05, stale_after=60, log=lines.append)
    try:
        first = json.loads(lease.path.read_text())["time"]
        time.sleep(0.3)
        assert json.loads(lease.path.read_text())["time"] > first  # refreshed by its thread
        LeaseGuard(lease).on_batch_end(None)  # nothing to say yet
        held = write_lease(lease.path, "colab-vm-2", 0.0)  # the other session saw this lease late and took over
        time.sleep(0.3)
        assert json.loads(lease.path.read_text()) == held and lease.conflict  # not overwritten
        with pytest.raises(JournalInUseError, match="colab-vm-2 .* took over the lease .* this session stops"):
            LeaseGuard(lease).on_batch_end(None)
        assert len(lines) == 1  # said once
    finally:
        LeaseGuard(lease).release()
    assert json.loads(lease.path.read_text()) == held  # not ours: left for its owner
    assert hold_journal("postgresql://u@h/db", tmp_path) is None  # a database needs no lease
    assert JournalLease(tmp_path / "x.log").read() is None  # no lease file: none held
