"""The study over a real PostgreSQL server (issue 15): ``STORAGE="postgresql://..."``, as two Colab sessions share one.

A throwaway server (:mod:`pg_server`: Debian's ``postgresql``, installed by ``tools/install_postgres.sh``, its data in
a temporary folder, run as an unprivileged user, stopped at the end) holds the study queue of ``hparam_driver.py``'s
tiny study (``dropout``: 3 trials of 2 epochs, 2 steps each, a checkpoint after every step). Two workers run as
separate processes against it with a shared WORKDIR. Both start at one moment and claim a trial each; B then holds
after its first step (its trial RUNNING, its heartbeat going: a worker busy with a long trial) until A is gone. A
finishes its trial, claims the third and is SIGKILLed in it after batch 1 of epoch 2 was checkpointed. B goes on,
takes that trial over at once (A's pid has ended on this host) and resumes it from the trial's own ``last.pt``.
(A's 0.25 s step delay only keeps its first trial longer than B's way to its first ask.)

The final table must equal a single-worker run's (journal storage, in this process) EXACTLY: same seeds, CPU, one
thread and an exact resume give bit-identical numbers (the kill/resume tests of test_hparam_study.py and
test_study_faults.py assert the same), so any tolerance would hide a resume that is not exact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from hparam_driver import make_run, run_study
from optuna.trial import TrialState

from seglib.tune.storage import open_storage, rdb_url

DRIVER = Path(__file__).with_name("hparam_driver.py")
STUDY, EPOCHS, LOSS, LR = "dropout", 2, "dice", 1e-3
KILL_AT_STEP = 8  # A's 2nd trial, epoch 2 batch 2: the checkpoint after epoch 2 batch 1 is the last on disk


def _need(msg: str) -> None:
    """Skip (fail on CI, where tools/install_postgres.sh must have installed the server)."""
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="module")
def pg_url():
    """A throwaway PostgreSQL server's URL for this module; stopped and removed at its end, even after a failure."""
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        _need("psycopg2 missing: pip install -r requirements.txt (psycopg2-binary)")
    from pg_server import PgServer, PgUnavailable

    try:
        server = PgServer()
    except PgUnavailable as err:
        _need(str(err))
    t0 = time.monotonic()
    url = server.start()
    print(f"PostgreSQL server up in {time.monotonic() - t0:.1f} s: {url}")
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted single-worker run of the study (journal storage, this process): ``(table, results)``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run, lrs = make_run(tmp_path_factory.mktemp("pgref") / "w", EPOCHS, LOSS, LR)
        run_study(run, lrs, STUDY)
        yield run.table(), run.results()
    finally:
        torch.set_num_threads(before)


def worker(workdir: Path, out: Path, url: str, go: Path, *args) -> subprocess.Popen:
    """``hparam_driver.py`` on the PostgreSQL study, waiting for ``go`` after its start-up. STALE_AFTER 30 s: a live
    worker is never taken over for a late heartbeat on a busy machine; a dead one on this host is at once (its pid)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SEGLIB_ENV": "local", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, str(DRIVER), str(workdir), STUDY, str(out), "--epochs", str(EPOCHS),
                             "--loss", LOSS, "--lr", str(LR), "--storage", url, "--go-file", str(go),
                             "--stale-after", "30", *map(str, args)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_ready(p: subprocess.Popen, timeout: float = 180) -> None:
    """Read ``p``'s stdout up to its ``ready`` line (fails with its stderr if it ends first)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = p.stdout.readline()
        if line.strip() == "ready":
            return
        if not line and p.poll() is not None:
            pytest.fail(f"worker ended before it was ready ({p.returncode}): {p.stderr.read()[-3000:]}")
    pytest.fail("worker not ready in time")


def pids(folder: Path) -> list[int]:
    """The pid of each process that trained in a trial folder, in order (``runs.jsonl``)."""
    return [json.loads(line)["pid"] for line in (folder / "runs.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_workers_on_postgres_one_killed_its_trial_taken_over_and_resumed(pg_url, reference, tmp_path):
    table, results = reference
    t0, w, go = time.monotonic(), tmp_path / "w", tmp_path / "go"
    a = worker(w, tmp_path / "a.json", pg_url, go, "--step-delay", 0.25, "--kill-at-step", KILL_AT_STEP)
    b = worker(w, tmp_path / "b.json", pg_url, go, "--hold-file", tmp_path / "a-gone")
    try:
        wait_ready(a)
        wait_ready(b)
        go.touch()  # both are past their imports and data: they ask for trials at the same moment
        ready = time.monotonic() - t0
        _, a_err = a.communicate(timeout=300)
        a_gone = time.monotonic() - t0
        (tmp_path / "a-gone").touch()
        b_out, b_err = b.communicate(timeout=300)
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
                p.wait()
    wall = time.monotonic() - t0
    assert a.returncode == -9, a_err[-3000:]
    assert b.returncode == 0, b_err[-3000:]
    out = json.loads((tmp_path / "b.json").read_text())
    lines = [line for _, line in out["log"]]

    # the database: one COMPLETE trial per grid point; the only FAIL besides duplicates is the killed one, stale
    storage, _ = open_storage(pg_url, tmp_path)
    (name,) = optuna.get_all_study_names(storage)
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    storage.engine.dispose()
    keys = sorted(r["key"] for r in results)
    complete = sorted(t.user_attrs["key"] for t in trials if t.state == TrialState.COMPLETE)
    assert complete == keys, [(t.number, t.state, t.user_attrs) for t in trials]
    stale = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get("stale")]
    assert len(stale) == 1 and stale[0].user_attrs["heartbeat"]["pid"] == a.pid, trials
    killed = stale[0].user_attrs["key"]
    others = [t for t in trials if t.state != TrialState.COMPLETE and t is not stale[0]]
    for t in others:  # racing enqueues: closed as duplicates when asked, or left WAITING (never trained)
        assert (t.state == TrialState.FAIL and "duplicate_of" in t.user_attrs) or t.state == TrialState.WAITING, t
    assert not any(t.state == TrialState.RUNNING for t in trials)

    # taken over by B at once (A's pid has ended on this host), resumed from the trial's own mid-epoch checkpoint
    taken = [line for line in lines if "taken over now" in line]
    assert len(taken) == 1 and f"({killed})" in taken[0] and f"process {a.pid} on this host has ended" in taken[0]
    folder = w / "trials" / STUDY / killed
    resumed = json.loads((folder / "result.json").read_text())["resumed_from"]
    assert resumed == {"epoch": 2, "batch": 1}, resumed
    assert any(f"{killed}: val Dice" in line and f"resumed at {resumed}" in line for line in lines), lines

    # every trial trained once to completion: one run per folder, two (A killed, B resumed) for the killed one
    runs = {f.name: pids(f) for f in (w / "trials" / STUDY).iterdir()}
    assert sorted(runs) == keys and runs[killed] == [a.pid, b.pid], runs
    assert all(len(v) == 1 for k, v in runs.items() if k != killed), runs
    by_a = [k for k, v in runs.items() if k != killed and v == [a.pid]]
    by_b = sorted(out["ran"])
    assert len(by_a) >= 1 and killed in by_b and sorted(by_a + by_b) == keys  # both workers trained trials

    # the final table equals the single-worker journal run's exactly; the database's values are its best val Dice
    assert out["table"] == table
    best = {r["key"]: r["best_val_fg_dice"] for r in results}
    assert {t.user_attrs["key"]: t.value for t in trials if t.state == TrialState.COMPLETE} == best
    fails = sum(t.state == TrialState.FAIL for t in trials)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    took = next(t for t, line in out["log"] if "taken over now" in line)
    print(f"two workers on PostgreSQL: {wall:.1f} s ({ready:.1f} s start-up to ready, A killed at {a_gone:.1f} s, "
          f"taken over {took:.1f} s and B's study done {out['log'][-1][0]:.1f} s after B's start); A (killed at step {KILL_AT_STEP}) completed {by_a}, B completed "
          f"{by_b}; DB: {len(complete)} COMPLETE, {fails} FAIL (1 stale, {fails - 1} duplicates), {waiting} WAITING "
          f"duplicates; {killed} resumed from {resumed}")


def test_a_postgresql_url_without_its_driver_says_how_to_install_it(monkeypatch, tmp_path):
    import importlib.util

    assert rdb_url("postgres://u:pw@host/db") == "postgresql+psycopg2://u:pw@host/db"  # what some hosts print
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "psycopg2" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install psycopg2-binary") as err:
        open_storage("postgresql://user:secret@db.example.com/study", tmp_path)
    assert "secret" not in str(err.value) and "db.example.com/study" in str(err.value)
    assert open_storage(f"sqlite:///{tmp_path / 's.db'}", tmp_path)[1].startswith("RDB sqlite:///")  # no driver needed
