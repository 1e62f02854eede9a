"""The study engine: kill during a trial and rerun, two workers on one study, duplicates and stale trials."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from seglib.tune.worker import StudyPlan, StudyWorker, TrialPlan, open_storage

DRIVER = Path(__file__).with_name("hparam_driver.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "SEGLIB_ENV": "local"}


def drive(workdir, study, out, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DRIVER), str(workdir), study, str(out), *args], env=ENV,
                          capture_output=True, text=True, timeout=300, check=False)


def folders(workdir, study):
    return sorted((Path(workdir) / "trials" / study).iterdir())


def runs(folder) -> int:
    return len((folder / "runs.jsonl").read_text().splitlines())


@pytest.mark.slow
def test_kill_during_a_trial_then_rerun_equals_uninterrupted(tmp_path):
    # 8 training images, batch 4: 2 steps per epoch, 3 epochs = 6 steps per trial; step 10 is the last batch of
    # epoch 2 of the second trial (the checkpoint after its batch 1 exists: checkpoint_minutes=0)
    killed = drive(tmp_path / "w", "dropout", tmp_path / "k.json", "--kill-at-step", "10")
    assert killed.returncode == -9, killed.stderr[-2000:]
    first, second, *rest = folders(tmp_path / "w", "dropout")
    assert (first / "result.json").exists() and not (second / "result.json").exists()
    assert (second / "checkpoints" / "last.pt").exists() and not rest
    again = drive(tmp_path / "w", "dropout", tmp_path / "a.json")
    assert again.returncode == 0, again.stderr[-3000:]
    first, second, third = folders(tmp_path / "w", "dropout")
    assert [runs(first), runs(second), runs(third)] == [1, 2, 1]  # finished trial not rerun, killed one once more
    resumed = json.loads((second / "result.json").read_text())
    assert resumed["resumed_from"] == {"epoch": 2, "batch": 1}  # from its own checkpoint, not epoch 0
    assert sorted(json.loads((tmp_path / "a.json").read_text())["ran"]) == sorted([second.name, third.name])
    ref = drive(tmp_path / "ref", "dropout", tmp_path / "r.json")
    assert ref.returncode == 0, ref.stderr[-3000:]
    table = json.loads((tmp_path / "a.json").read_text())["table"]
    assert len(table) == 3 and table == json.loads((tmp_path / "r.json").read_text())["table"]
    storage, _ = open_storage(None, tmp_path / "w")
    study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
    states = [t.state for t in study.get_trials()]
    assert states.count(TrialState.COMPLETE) == 3 and states.count(TrialState.FAIL) == 1


@pytest.mark.slow
def test_two_workers_run_each_trial_once(tmp_path):
    procs = [subprocess.Popen([sys.executable, str(DRIVER), str(tmp_path / "w"), "loss", str(tmp_path / f"{i}.json"),
                               "--epochs", "2"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    ran = [json.loads((tmp_path / f"{i}.json").read_text())["ran"] for i in range(2)]
    keys = [f.name for f in folders(tmp_path / "w", "loss")]
    assert len(keys) == 7 and sorted(ran[0] + ran[1]) == keys  # every trial by exactly one worker
    assert all(runs(f) == 1 for f in folders(tmp_path / "w", "loss"))
    tables = [json.loads((tmp_path / f"{i}.json").read_text())["table"] for i in range(2)]
    assert tables[0] == tables[1] and len(tables[0]) == 7
    print("trials per worker:", [len(r) for r in ran])


def _plan(name="s"):
    points = [{"x": v} for v in ("a", "b", "c")]
    return StudyPlan(name, f"{name}-test", {"x": ("a", "b", "c")},
                     [TrialPlan(name, p, f"k{p['x']}", {"x": p["x"]}) for p in points])


def test_duplicates_and_stale_trials_are_handled(tmp_path):
    storage, desc = open_storage(None, tmp_path)
    assert "journal" in desc
    plan = _plan()
    ran = []

    def run_trial(tp, callbacks):
        ran.append(tp.key)
        return {"state": "complete", "best_val_fg_dice": 0.5}

    worker = StudyWorker(storage, [plan], run_trial, heartbeat=0.2, stale_after=60, poll=0.05)
    study = worker.study(plan)
    study.enqueue_trial({"x": "b"})
    t = study.ask()  # "b" claimed by a process on this host that has died since
    assert t.suggest_categorical("x", ["a", "b", "c"]) == "b"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    study._storage.set_trial_user_attr(t._trial_id, "heartbeat",
                                       {"host": socket.gethostname(), "pid": int(dead.stdout), "time": time.time()})
    study.enqueue_trial({"x": "a"})
    study.enqueue_trial({"x": "a"})  # a duplicate, as two workers enqueueing at once can make
    assert worker.run() == {"s": "done"}
    assert sorted(ran) == ["ka", "kb", "kc"]  # each point once: duplicate skipped, dead "a" taken over
    trials = study.get_trials()
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
    assert any("duplicate_of" in t.user_attrs for t in trials) and any(t.user_attrs.get("stale") for t in trials)
    assert worker.run() == {"s": "done"} and len(ran) == 3  # rerun: nothing left to do


def test_live_trial_of_another_worker_is_not_taken(tmp_path):
    storage, _ = open_storage(tmp_path / "j.log", tmp_path)
    plan = _plan()
    worker = StudyWorker(storage, [plan], lambda tp, cb: {"state": "complete", "best_val_fg_dice": 1.0},
                         heartbeat=0.2, stale_after=30, poll=0.05, wait=False)
    study = worker.study(plan)
    study.enqueue_trial({"x": "c"})
    t = study.ask()
    t.suggest_categorical("x", ["a", "b", "c"])
    study._storage.set_trial_user_attr(t._trial_id, "heartbeat", {"host": "elsewhere", "pid": 1, "time": time.time()})
    assert worker.run() == {"s": "busy"}  # a and b done; c is alive on another machine
    assert [x.state for x in study.get_trials() if x.params.get("x") == "c"] == [TrialState.RUNNING]
    with pytest.raises(ValueError, match="RDB URL"):
        open_storage("nonsense", tmp_path)
    with pytest.raises(ValueError, match="PRUNER"):
        StudyWorker(storage, [plan], None, pruner="hyperband")


def test_median_pruner_stops_a_poor_trial(tmp_path):
    from seglib.tune.trial import StopTrial

    storage, _ = open_storage(None, tmp_path)
    points = [{"x": v} for v in ("a", "b", "c", "d")]
    plan = StudyPlan("p", "p-test", {"x": ("a", "b", "c", "d")}, [TrialPlan("p", q, q["x"], q) for q in points])
    epochs_run = {}

    class FakeTrainer:
        history: list = []

    def run_trial(tp, callbacks):
        trainer = FakeTrainer()
        trainer.history = []
        value = 0.1 if tp.key == "d" else 0.9
        try:
            for epoch in range(1, 9):
                record = {"epoch": epoch, "val_fg_dice": value}
                trainer.history.append(record)
                epochs_run[tp.key] = epoch
                for cb in callbacks:
                    cb.on_epoch_end(trainer, record)
        except StopTrial as stop:
            return {"state": stop.state, "best_val_fg_dice": value}
        return {"state": "complete", "best_val_fg_dice": value}

    worker = StudyWorker(storage, [plan], run_trial, pruner="median", heartbeat=0.2, poll=0.05)
    assert worker.run() == {"p": "done"}
    assert epochs_run == {"a": 8, "b": 8, "c": 8, "d": 3}  # pruned at epoch 3 (= n_warmup_steps) by the median rule
    states = {t.params["x"]: t.state for t in worker.study(plan).get_trials()}
    assert states["d"] == TrialState.PRUNED and states["a"] == TrialState.COMPLETE
