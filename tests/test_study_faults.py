"""Study faults: a SIGKILL between a trial's two checkpoint writes, a refused result from the wrong checkpoint, and
the takeover of a killed worker's trial (at once on this host; after STALE_AFTER, said at once, from another host).

The tiny study of ``hparam_driver.py`` (2 trials of 2 epochs, 2 steps each, a checkpoint after every step): with the
Dice loss at LR 1e-3 every epoch improves, so the last epoch of a trial is its best and a kill between its two
checkpoint writes is the window of issue 11 (``last.pt`` of the best epoch written, ``best.pt`` not yet).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from hparam_driver import make_run, run_study
from optuna.trial import TrialState

from seglib.metrics import BinaryMetrics
from seglib.tune import liveness
from seglib.tune.liveness import _LIVE, process_gone, process_start
from seglib.tune.trial import BestCheckpointError, execute, load_result
from seglib.tune.worker import StudyPlan, StudyWorker, TrialPlan, open_storage

DRIVER = Path(__file__).with_name("hparam_driver.py")
STUDY, EPOCHS, LOSS, LR = "augmentation", 2, "dice", 1e-3


def env(**extra) -> dict:
    """The subprocess environment, read now (the session fixture has set SEGLIB_CACHE: same synthetic data)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "SEGLIB_ENV": "local", **extra}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of the study in this process: ``(workdir, table, results)``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        workdir = tmp_path_factory.mktemp("study") / "ref"
        run, lrs = make_run(workdir, EPOCHS, LOSS, LR)
        run_study(run, lrs, STUDY)
        yield workdir, run.table(), run.results()
    finally:
        torch.set_num_threads(before)


def check_best_files(run) -> None:
    """Every result names the epoch of the best.pt it was scored on, and its val Dice is that epoch's."""
    for r in run.results():
        best = torch.load(run.trained_folder(r) / "checkpoints" / "best.pt", weights_only=True)
        assert r["best_epoch"] == r["evaluated"]["epoch"] == best["epoch"], r["key"]
        assert r["evaluated"]["file"] == "checkpoints/best.pt"
        assert r["final"]["val_fg_dice"] == pytest.approx(r["history"][r["best_epoch"] - 1]["val_fg_dice"], abs=1e-6)


@pytest.mark.slow
def test_kill_between_the_two_checkpoint_writes_then_rerun_equals_uninterrupted(reference, tmp_path, one_thread):
    _, table, results = reference
    first = results[0]
    assert first["best_epoch"] == first["epochs_completed"] == EPOCHS  # the last epoch is the best (see docstring)
    hit = EPOCHS * first["steps_per_epoch"]  # one save.between per checkpoint, one checkpoint per step
    t0 = time.monotonic()
    killed = subprocess.Popen([sys.executable, str(DRIVER), str(tmp_path / "w"), STUDY, str(tmp_path / "k.json"),
                               "--epochs", str(EPOCHS), "--loss", LOSS, "--lr", str(LR)],
                              env=env(SEGLIB_FAULT_AT=f"save.between:{hit}"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    _, err = killed.communicate(timeout=300)
    killed_s = time.monotonic() - t0
    assert killed.returncode == -9, err[-2000:]
    folder = tmp_path / "w" / "trials" / STUDY / first["key"]
    assert (folder / "checkpoints" / "last.pt").exists() and load_result(folder) is None
    # rerun on the same machine with the default-sized STALE_AFTER: the killed worker's trial is taken over at once
    t0 = time.monotonic()
    run, lrs = make_run(tmp_path / "w", EPOCHS, LOSS, LR)
    lines = run_study(run, lrs, STUDY, stale_after=60.0)
    rerun_s = time.monotonic() - t0
    taken = [(t, line) for t, line in lines if "taken over now" in line]
    assert len(taken) == 1 and f"process {killed.pid} on this host has ended" in taken[0][1], lines
    assert taken[0][0] < 1.0, taken  # seconds after the study started
    assert run.table() == table  # the final table equals the uninterrupted study's
    check_best_files(run)
    print(f"killed run {killed_s:.1f} s, rerun {rerun_s:.1f} s, takeover after {taken[0][0]:.2f} s: {taken[0][1]}")


def test_a_result_from_another_epochs_checkpoint_is_refused(reference, tmp_path, one_thread):
    workdir, _, results = reference
    shutil.copytree(workdir, tmp_path / "w")
    run, lrs = make_run(tmp_path / "w", EPOCHS, LOSS, LR)
    tp = run.make_plans([STUDY], lrs)[0].trials[0]
    check_best_files(run)
    folder = run.trial_folder(tp.study, tp.key)
    best = folder / "checkpoints" / "best.pt"
    ckpt = torch.load(best, weights_only=True)
    torch.save({**ckpt, "epoch": 1}, best)  # best.pt of an earlier epoch, as the window of issue 11 left it
    with pytest.raises(BestCheckpointError, match=rf"{re.escape(str(best))} holds epoch 1, but the training "
                                                  rf"recorded epoch {EPOCHS} as best"):
        run.trial(tp).checkpoint_model("best", EPOCHS)
    for damage in ("stale", "missing"):
        if damage == "missing":
            best.unlink()
            with pytest.raises(BestCheckpointError, match=rf"is missing: the training's best epoch is {EPOCHS}.*delete"):
                run.trial(tp).checkpoint_model("best", EPOCHS)
        (folder / "result.json").unlink(missing_ok=True)
        try:  # the trial's rerun: refused, or best.pt repaired on resume -- never a result of another epoch
            res = execute(run.trial(tp), study=tp.study, key=tp.key, params=tp.params, epoch_table=False)
        except BestCheckpointError as err:
            assert load_result(folder) is None and str(best) in str(err)
        else:
            assert res["best_epoch"] == res["evaluated"]["epoch"] == torch.load(best, weights_only=True)["epoch"]
    other = run.plans[0].trials[1]
    assert load_result(run.trial_folder(other.study, other.key))["final"] == results[1]["final"]  # kept as it was


def test_a_trial_without_a_best_epoch_is_scored_on_last_pt_and_says_so(tmp_path, one_thread, monkeypatch, capsys):
    run, lrs = make_run(tmp_path / "w", 1, LOSS, LR)
    tp = run.make_plans([STUDY], lrs)[0].trials[0]
    compute = BinaryMetrics.compute
    monkeypatch.setattr(BinaryMetrics, "compute", lambda self: {**compute(self), "fg_dice": float("nan")})  # diverged
    res = execute(run.trial(tp), study=tp.study, key=tp.key, params=tp.params, epoch_table=False)
    assert res["best_epoch"] is None and res["evaluated"] == {"file": "checkpoints/last.pt", "epoch": 1}
    assert f"{tp.key}: no epoch had a val Dice to rank, so there is no best.pt; scored on last.pt" in capsys.readouterr().out
    assert run.table()[0]["best_epoch"] == 1 and load_result(run.trial_folder(tp.study, tp.key))["evaluated"]["epoch"] == 1


HOLDER = r"""
import importlib.util, sys, time
import optuna
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

spec = importlib.util.spec_from_file_location("liveness", sys.argv[2])  # the module alone: no torch to import
liveness = importlib.util.module_from_spec(spec)
spec.loader.exec_module(liveness)
storage = optuna.storages.JournalStorage(JournalFileBackend(sys.argv[1], lock_obj=JournalFileOpenLock(sys.argv[1])))
study = optuna.load_study(study_name="s-test", storage=storage)
here, there = study.ask(), study.ask()  # the enqueued "a" and "b"
for t in (here, there):
    t.suggest_categorical("x", ["a", "b", "c"])
liveness.Heartbeat(storage, here._trial_id, 3600)  # one beat from this host now (the next in an hour)
storage.set_trial_user_attr(there._trial_id, "heartbeat", {"host": "old-vm", "pid": 4242, "start": "1",
                                                          "time": time.time()})
print("ready", flush=True)
time.sleep(600)
"""


def test_a_killed_workers_trials_are_taken_over_and_said_so_at_once(tmp_path):
    """A worker SIGKILLed while holding two trials: "a" with its heartbeat from this host (a rerun on the same VM),
    "b" with a heartbeat from host "old-vm" (a rerun on a new VM). "a" is taken over at once; for "b" a line
    comes at once (host, pid, age, seconds left), then a countdown, and it is taken over STALE_AFTER after its
    last heartbeat."""
    journal = tmp_path / "j.log"
    storage, _ = open_storage(journal, tmp_path)
    points = [{"x": v} for v in ("a", "b", "c")]
    plan = StudyPlan("s", "s-test", {"x": ("a", "b", "c")}, [TrialPlan("s", p, f"k{p['x']}", p) for p in points])
    stale_after, started, lines, t0 = 3.0, {}, [], time.monotonic()

    def run_trial(tp, callbacks):
        started[tp.key] = time.monotonic() - t0
        return {"state": "complete", "best_val_fg_dice": 0.5}

    worker = StudyWorker(storage, [plan], run_trial, heartbeat=0.5, stale_after=stale_after, poll=0.1,
                         notice_every=0.5, log=lambda line: lines.append((round(time.monotonic() - t0, 2), line)))
    study = worker.study(plan)
    for tp in plan.trials[:2]:
        study.enqueue_trial(tp.params, user_attrs={"key": tp.key})
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(journal), liveness.__file__], env=env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "ready", holder.stderr.read()[-2000:]
    beat = time.monotonic()  # both heartbeats are at most this old
    holder.kill()  # SIGKILL
    holder.wait(timeout=30)
    t0 = time.monotonic()
    assert worker.run() == {"s": "done"}
    left = stale_after - (t0 - beat)  # seconds until "b" must be taken over
    a_line = next((t, line) for t, line in lines if "(ka)" in line)
    assert "taken over now" in a_line[1] and f"process {holder.pid} on this host has ended" in a_line[1]
    assert a_line[0] < 0.5 and started["ka"] < 1.0
    b_lines = [(t, line) for t, line in lines if "(kb)" in line]
    first, *countdown, take = b_lines
    assert first[0] < 0.5 and "runs elsewhere: heartbeat from host old-vm pid 4242" in first[1]
    assert "s ago; taken over in" in first[1] and "another machine cannot be checked" in first[1]
    assert len(countdown) >= 2 and all("runs elsewhere" in line for _, line in countdown)
    assert "taken over now" in take[1] and left - 0.3 <= take[0] <= left + 1.0 and started["kb"] >= take[0]
    states = [t.state for t in study.get_trials()]
    assert states.count(TrialState.COMPLETE) == 3 and states.count(TrialState.FAIL) == 2
    print(f"same host: taken over after {a_line[0]:.2f} s; other host: first line after {first[0]:.2f} s, "
          f"{len(countdown)} countdown lines, taken over after {take[0]:.2f} s (due {left:.2f} s)")
    print("\n".join(f"{t:5.2f} {line}" for t, line in lines))


def test_process_gone_tells_ended_reused_and_own_pids():
    me = {"host": __import__("socket").gethostname(), "pid": os.getpid(), "start": process_start(os.getpid())}
    assert process_gone(me, 10**9) == "this process runs no such trial (an earlier run in it was cut off)"
    _LIVE.add(10**9)
    try:
        assert process_gone(me, 10**9) is None
    finally:
        _LIVE.discard(10**9)
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as other:
        alive = {**me, "pid": other.pid, "start": process_start(other.pid)}
        assert process_gone(alive, 1) is None  # a live process of this host is never taken over early
        assert "the pid now belongs to a later process" in process_gone({**alive, "start": "1"}, 1)
        other.kill()
        other.wait()
        assert process_gone(alive, 1) == f"process {other.pid} on this host has ended"
    assert process_gone({**me, "host": "old-vm"}, 1) is None  # another machine: cannot be checked
    assert optuna.__version__  # the engine's storage is Optuna's


def test_a_live_trial_elsewhere_is_waited_for_quietly_and_never_taken_over(tmp_path):
    """Another machine's worker beats every 0.2 s and finishes its trial after 3.5 s (> STALE_AFTER 3 s): one line at
    once, one when its next heartbeat shows it alive, no countdown (late would be 1 s = 2 heartbeats), no takeover."""
    import threading

    storage, _ = open_storage(None, tmp_path)
    points = [{"x": v} for v in ("a", "b", "c")]
    plan = StudyPlan("s", "s-test", {"x": ("a", "b", "c")}, [TrialPlan("s", p, f"k{p['x']}", p) for p in points])
    lines, ran = [], []
    worker = StudyWorker(storage, [plan], lambda tp, cb: ran.append(tp.key) or {"state": "complete",
                         "best_val_fg_dice": 0.5}, heartbeat=0.5, stale_after=3.0, poll=0.05, notice_every=0.3,
                         log=lines.append)
    study = worker.study(plan)
    study.enqueue_trial({"x": "c"}, user_attrs={"key": "kc"})
    t = study.ask()
    t.suggest_categorical("x", ["a", "b", "c"])

    def other_machine():
        end = time.time() + 3.5
        while time.time() < end:
            storage.set_trial_user_attr(t._trial_id, "heartbeat", {"host": "elsewhere", "pid": 1, "time": time.time()})
            time.sleep(0.2)
        storage.set_trial_state_values(t._trial_id, TrialState.COMPLETE, [0.5])

    beats = threading.Thread(target=other_machine)
    beats.start()
    time.sleep(0.1)
    try:
        assert worker.run() == {"s": "done"}
    finally:
        beats.join()
    mine = [line for line in lines if "(kc)" in line]
    assert len(mine) == 2 and "runs elsewhere: heartbeat from host elsewhere pid 1" in mine[0], lines
    assert "a new heartbeat came, it is alive" in mine[1]
    assert sorted(ran) == ["ka", "kb"] and not any("taken over now" in line for line in lines)


def test_a_trial_finished_again_after_a_kill_keeps_one_hparams_session(tmp_path):
    """A kill after the HParams session is written but before result.json (e.g. mid-copy to WORKDIR) makes the
    rerun write it again: the fixed-name file is replaced, an older-named one is removed locally and in WORKDIR,
    so TensorBoard shows each hparam/* tag at step 0 once (the reliability run's kill point 089 found it twice)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from seglib.tune.trial import HPARAMS_FILE, write_hparams

    local, drive = tmp_path / "local" / "tensorboard", tmp_path / "drive" / "tensorboard"
    spec, metrics = {"dropout": 0.5, "lr": 1e-3}, {"hparam/val_fg_dice": 0.5, "hparam/val_loss": 0.3}
    drive.mkdir(parents=True)
    write_hparams(local, spec, metrics)
    shutil.copy2(local / HPARAMS_FILE, drive / "events.out.tfevents.1.host.1.hparams")  # an older-named copy
    shutil.copy2(local / HPARAMS_FILE, local / "events.out.tfevents.1.host.1.hparams")
    (local.parent / ".hparams-killed").mkdir()  # the temporary folder of a write killed midway
    write_hparams(local, spec, metrics, (drive,))
    assert [p.name for p in local.iterdir()] == [HPARAMS_FILE] and not list(drive.iterdir())
    assert sorted(p.name for p in local.parent.iterdir()) == ["tensorboard"]
    acc = EventAccumulator(str(local))
    acc.Reload()
    assert {t: [e.step for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]} == {k: [0] for k in metrics}
