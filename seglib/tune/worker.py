"""The study engine: Optuna studies in WORKDIR as a shared, crash-proof work queue of grid trials.

Each seglib study becomes one Optuna study (``GridSampler`` over its grid) named ``<study>-<base hash>``,
so changing a parameter that alters every trial (epochs, image size, data ...) starts fresh studies
instead of mixing results. A worker (:class:`StudyWorker`, one per notebook/process):

1. enqueues every grid point that has no live trial (``study.enqueue_trial``), so workers take trials
   from the queue with ``study.ask()``, which pops a WAITING trial atomically in every Optuna storage;
   GridSampler's own choice is only used if the queue ran dry between the check and the ask (Optuna's
   docs: GridSampler alone can give a point twice under concurrency);
2. after claiming, checks for a *duplicate*: another trial with the same parameters, a lower number
   and a state other than FAIL. Then it is not its turn: the trial is closed as FAIL with user attribute
   ``duplicate_of`` (so two racing enqueues never make a point run twice);
3. keeps a heartbeat in the trial's user attribute ``heartbeat`` (host, pid, process start, time) from a
   background thread. A RUNNING trial is *stale* when its process is provably gone -- on this host: the pid
   has ended or now belongs to a later process (a rerun on the same VM takes over at once) -- or when its
   heartbeat is older than ``stale_after`` seconds (another host: whether its process lives cannot be
   checked, so the wait stays; it is printed at once, with host, pid, age and the seconds left, and again
   every ``notice_every`` seconds while the heartbeat is late). A worker marks a stale trial FAIL and
   enqueues the same parameters again (Optuna's JournalStorage has no heartbeat of its own; this is the RDB
   heartbeat + ``RetryFailedTrialCallback`` idea, storage-independent);
4. trains the claimed trial in ``trials/<study>/<key>``, the key derived from the full spec, so a
   re-run trial resumes from that folder's ``last.pt``, and reports per-epoch val Dice for pruning
   (``MedianPruner`` when ``pruner="median"``).

Storage (``storage`` argument, notebook ``STORAGE``; :mod:`.storage`): None or ``"journal"`` = a JournalStorage
file ``WORKDIR/optuna_journal.log`` (append-only, ``JournalFileOpenLock``): right for one notebook on Drive and for
several processes on one machine. Two Colab sessions or two machines: an RDB URL reachable from both, such as a
hosted PostgreSQL ``postgresql://user:pw@host/db`` (``pip install psycopg2-binary``); the heartbeats, takeover and
duplicate check above work the same there (tests/test_study_postgres.py runs them against a real server). A journal
file on Drive is not safe for two sessions (Drive has no file locks between machines): :mod:`.journal_lease` refuses
a second host while the first one's lease is fresh. SQLite on Drive has locking and late-sync problems (optuna
#820, #2582); ``sqlite:///path`` works for processes on one machine with a local disk.
"""

from __future__ import annotations

import json
import math
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import optuna
from optuna.trial import TrialState
from tqdm.auto import tqdm

from ..config import config_label
from ..metrics import BinaryMetrics, upgrade_keys
from .liveness import HEARTBEAT_S, STALE_AFTER_S, Heartbeat, process_gone
from .storage import JOURNAL_NAME as JOURNAL_NAME  # re-exported: callers import them from here
from .storage import open_storage as open_storage
from .trial import StopTrial

_RANK = {TrialState.COMPLETE: "done", TrialState.PRUNED: "done", TrialState.RUNNING: "running",
         TrialState.WAITING: "waiting"}
_PRIORITY = {"waiting": 1, "running": 2, "done": 3}


@dataclass
class TrialPlan:
    """One grid point of one study: ``params`` (Optuna parameters), ``key`` (folder name), ``spec``."""

    study: str
    params: dict
    key: str
    spec: dict


@dataclass
class StudyPlan:
    """One seglib study: its Optuna name, grid ``space`` and trials in grid order."""

    name: str
    optuna_name: str
    space: dict
    trials: list[TrialPlan] = field(default_factory=list)


def _params_id(params: dict) -> str:
    return json.dumps(params, sort_keys=True, default=str)


class EpochReporter:
    """Trainer callback: report val Dice per epoch to Optuna, prune, and stop if the trial was lost."""

    def __init__(self, trial: optuna.Trial, heartbeat: Heartbeat, prune: bool, monitor: str = "val_fg_dice"):
        self.trial, self.heartbeat, self.prune, self.monitor = trial, heartbeat, prune, monitor
        self._reported = False

    def _report_history(self, trainer) -> None:
        for rec in trainer.history:  # a checkpoint written before issue 9 may hold val_dice
            rec = upgrade_keys(rec, BinaryMetrics.task)
            self.trial.report(float(rec[self.monitor]), int(rec["epoch"]))
        self._reported = True

    def _check_lost(self) -> None:
        if self.heartbeat.lost:
            raise StopTrial("lost", "another worker closed this trial; stopping without writing results")

    def on_batch_end(self, trainer) -> None:
        """Raise :class:`StopTrial` ``"lost"`` when another worker closed the trial."""
        self._check_lost()

    def on_epoch_end(self, trainer, record: dict) -> None:
        """Report ``record[monitor]`` for the epoch; raise :class:`StopTrial` to prune or when lost."""
        if not self._reported:
            self._report_history(trainer)  # a resumed trial re-reports the epochs before the interruption
        else:
            self.trial.report(float(record[self.monitor]), int(record["epoch"]))
        self._check_lost()
        if self.prune and self.trial.should_prune():
            raise StopTrial("pruned")


class TrialProgress:
    """Trainer callback: show the running trial's last epoch in the study bar's postfix
    (``epoch k/E val_fg_dice 0.7123``); ``epochs`` is the trial's planned epochs (None: unknown)."""

    def __init__(self, bar, epochs: int | None, monitor: str = "val_fg_dice"):
        self.bar, self.epochs, self.monitor = bar, epochs, monitor

    def on_epoch_end(self, trainer, record: dict) -> None:
        """Put ``record``'s epoch and monitored value into the bar's postfix (the trainer is not read)."""
        value = record.get(self.monitor)
        self.bar.set_postfix_str(f"epoch {record['epoch']}/{self.epochs or '?'} {self.monitor} "
                                 + (f"{value:.4f}" if isinstance(value, (int, float)) else "-"), refresh=True)


def study_best(study: optuna.Study) -> tuple[float, str] | None:
    """``(value, config label)`` of the best complete trial of ``study`` (maximised val Dice), or None."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None and not math.isnan(t.value)]
    if not done:
        return None
    best = max(done, key=lambda t: t.value)
    return best.value, config_label(best.user_attrs.get("key", f"trial-{best.number}"))


class StudyWorker:
    """Runs the trials of several studies from a shared storage until all are finished.

    Args:
        storage: from :func:`open_storage`.
        plans: the studies to run, in order.
        run_trial: ``(plan: TrialPlan, callbacks: list) -> result dict`` with ``"state"`` and
            ``"best_val_fg_dice"``; raises :class:`StopTrial` to end early.
        pruner: None or ``"median"`` (``MedianPruner(n_startup_trials=3, n_warmup_steps=3)``).
        heartbeat: seconds between heartbeats; stale_after: seconds without one before a RUNNING trial of
            another host is taken over (keep it several heartbeats long; see :data:`STALE_AFTER_S`); a trial
            whose process on this host is gone is taken over at once.
        notice_every: seconds between the lines that count down to the takeover of a trial whose heartbeat
            is late (the first line comes at once, for any trial running elsewhere).
        poll: seconds between looks at other workers' running trials; wait: wait for them (False:
            return when nothing is claimable).
        log: ``str -> None`` for progress lines (default: ``tqdm.write`` to stdout, so lines and bar do not
            mix in a terminal).
        bar: a tqdm bar per study, ``study <name>: trial k/N; best val Dice ...``, its postfix the running
            trial's last epoch; None: in notebooks and terminals, not in plain logs (tqdm's non-TTY rule);
            False: never. The log lines say ``trial k/N`` and the best so far in any case.

    Raises:
        ValueError: an unknown pruner.
    """

    def __init__(self, storage, plans: list[StudyPlan], run_trial: Callable, *, pruner: str | None = None,
                 heartbeat: float = HEARTBEAT_S, stale_after: float = STALE_AFTER_S, poll: float = 5.0,
                 wait: bool = True, log: Callable[[str], None] | None = None, bar: bool | None = None,
                 notice_every: float = 10.0):
        if pruner not in (None, "none", "median"):
            raise ValueError(f"PRUNER={pruner!r}: use None or 'median'")
        self.storage, self.plans, self.run_trial = storage, plans, run_trial
        self.prune = pruner == "median"
        self.heartbeat, self.stale_after, self.poll, self.wait = heartbeat, stale_after, poll, wait
        self.log = log or (lambda line: tqdm.write(line, file=sys.stdout))
        self.bar, self.notice_every = bar, notice_every
        self.ran: list[str] = []  # keys this worker trained or resumed
        self._noticed: dict[int, dict] = {}  # trial id -> {"last": time of its last line, "hb": time, "alive"}
        optuna.logging.set_verbosity(optuna.logging.WARNING)

    def study(self, plan: StudyPlan) -> optuna.Study:
        """Create or load the Optuna study of ``plan``."""
        pruner = (optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=3) if self.prune
                  else optuna.pruners.NopPruner())
        return optuna.create_study(study_name=plan.optuna_name, storage=self.storage, direction="maximize",
                                   sampler=optuna.samplers.GridSampler(dict(plan.space), seed=0), pruner=pruner,
                                   load_if_exists=True)

    # -------------------------------------------------------------------------------- queue upkeep
    def _takeover_in(self, t: optuna.trial.FrozenTrial) -> tuple[float, str]:
        """``(seconds until RUNNING trial t is taken over, 0 = now; who holds it and why)``."""
        hb = t.user_attrs.get("heartbeat")
        if hb is None:  # claimed, no heartbeat written yet
            age = (datetime.now() - (t.datetime_start or datetime.now())).total_seconds()
            return max(0.0, self.stale_after - age), f"claimed {age:.0f} s ago, no heartbeat yet"
        age = time.time() - float(hb.get("time", 0))
        who = f"heartbeat from host {hb.get('host')} pid {hb.get('pid')}, {age:.0f} s ago"
        gone = process_gone(hb, t._trial_id)
        return (0.0, f"{who}; {gone}") if gone else (max(0.0, self.stale_after - age), who)

    def _notice(self, plan: StudyPlan, t: optuna.trial.FrozenTrial, wait: float, who: str) -> None:
        """Say at once that trial ``t`` runs elsewhere and when it is taken over, then every ``notice_every`` seconds
        until a new heartbeat of it comes; once it came (the trial is alive), one line, and more only while its
        heartbeat is late (older than two heartbeat intervals)."""
        hb = t.user_attrs.get("heartbeat") or {}
        now, seen = time.monotonic(), self._noticed.get(t._trial_id)
        name = f"  [{plan.name}] trial {t.number} ({t.user_attrs.get('key', t.params)})"
        if seen is not None and hb.get("time") != seen["hb"] and not seen["alive"]:
            seen.update(hb=hb.get("time"), alive=True, last=now)
            self.log(f"{name}: a new heartbeat came, it is alive; taken over only if its heartbeats stop for "
                     f"{self.stale_after:.0f} s")
            return
        late = wait < self.stale_after - 2 * self.heartbeat
        if seen is not None and ((seen["alive"] and not late) or now - seen["last"] < self.notice_every):
            return
        self._noticed[t._trial_id] = {"last": now, "hb": hb.get("time"), "alive": bool(seen and seen["alive"])}
        self.log(f"{name} runs elsewhere: {who}; taken over in {wait:.0f} s unless a new heartbeat comes (STALE_AFTER "
                 f"{self.stale_after:.0f} s" + ("; a process on another machine cannot be checked, so the wait is "
                                                "needed)" if hb.get("host", socket.gethostname()) != socket.gethostname() else ")"))

    def _upkeep(self, study: optuna.Study, plan: StudyPlan) -> dict[str, str]:
        """Fail stale trials, enqueue grid points without a live trial; return ``{params id: status}``
        with status ``"done"``, ``"running"``, ``"waiting"``."""
        status: dict[str, str] = {}
        for t in study.get_trials(deepcopy=False):
            if t.state == TrialState.RUNNING:
                wait, who = self._takeover_in(t)
                if wait <= 0:
                    try:
                        study._storage.set_trial_user_attr(t._trial_id, "stale", True)
                        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                        self.log(f"  [{plan.name}] trial {t.number} ({t.user_attrs.get('key', t.params)}): {who}; "
                                 "taken over now, it resumes from its checkpoint")
                    except Exception:  # noqa: BLE001 - another worker closed it first
                        pass
                    continue
                self._notice(plan, t, wait, who)
            pid = _params_id(t.params or t.system_attrs.get("fixed_params", {}))
            rank = _RANK.get(t.state)
            if rank and _PRIORITY[rank] > _PRIORITY.get(status.get(pid), 0):
                status[pid] = rank
        for tp in plan.trials:
            pid = _params_id(tp.params)
            if pid not in status:
                study.enqueue_trial(tp.params, user_attrs={"key": tp.key})
                status[pid] = "waiting"
        return status

    def _duplicate_of(self, study: optuna.Study, trial: optuna.Trial, params: dict) -> int | None:
        pid = _params_id(params)
        for t in study.get_trials(deepcopy=False):
            if t.number < trial.number and t.state != TrialState.FAIL:
                tp = t.params or t.system_attrs.get("fixed_params", {})
                if _params_id(tp) == pid:
                    return t.number
        return None

    # -------------------------------------------------------------------------------- one study
    def _claim_and_run(self, study: optuna.Study, plan: StudyPlan) -> str:
        """Run claimable trials of ``plan``; ``"done"`` when all are finished, ``"busy"`` when others run some."""
        by_id = {_params_id(tp.params): tp for tp in plan.trials}
        n, bar = len(plan.trials), None  # no bar while only waiting for other workers' trials
        try:
            while True:
                status = self._upkeep(study, plan)
                mine = [status.get(pid) for pid in by_id]
                if bar is None and ("waiting" in mine or all(s == "done" for s in mine)):
                    bar = tqdm(total=n, desc=f"study {plan.name}", unit="trial", file=sys.stdout,
                               disable=None if self.bar is None else not self.bar)
                if bar is not None:
                    bar.update(mine.count("done") - bar.n)
                if all(s == "done" for s in mine):
                    return "done"
                if "waiting" not in mine:
                    return "busy"
                trial = study.ask()
                params = {name: trial.suggest_categorical(name, list(values)) for name, values in plan.space.items()}
                pid = _params_id(params)
                dup = self._duplicate_of(study, trial, params)
                if dup is not None or pid not in by_id:
                    study._storage.set_trial_user_attr(trial._trial_id, "duplicate_of", dup)
                    study.tell(trial, state=TrialState.FAIL)
                    continue
                k = min(n, mine.count("done") + mine.count("running") + 1)
                best = study_best(study)
                best_text = f"best val Dice {best[0]:.4f} ({best[1]})" if best else "no trial finished yet"
                bar.set_description_str(f"study {plan.name}: trial {k}/{n}; {best_text}", refresh=False)
                bar.set_postfix_str("starting", refresh=True)
                self.log(f"  [{plan.name}] trial {k}/{n}: {by_id[pid].key} (Optuna trial {trial.number}; {best_text})")
                self._run_one(study, trial, by_id[pid], [TrialProgress(bar, by_id[pid].spec.get("epochs"))])
        finally:
            if bar is not None:
                bar.close()

    def _run_one(self, study: optuna.Study, trial: optuna.Trial, tp: TrialPlan, extra: list = ()) -> None:
        """Train ``tp`` as Optuna trial ``trial`` (heartbeat, reporter and ``extra`` callbacks) and tell the result."""
        hb = Heartbeat(study._storage, trial._trial_id, self.heartbeat)
        trial.set_user_attr("key", tp.key)
        try:
            result = self.run_trial(tp, [EpochReporter(trial, hb, self.prune), *extra])
        except StopTrial as stop:
            hb.stop()
            self.log(f"  [{tp.study}] {tp.key}: {stop}")
            return
        except BaseException:
            hb.stop()
            try:
                study.tell(trial, state=TrialState.FAIL)
            except Exception:  # noqa: BLE001
                pass
            raise
        hb.stop()
        self.ran.append(tp.key)
        value = result.get("best_val_fg_dice")
        try:
            if result.get("state") == "pruned":
                study.tell(trial, state=TrialState.PRUNED)
            else:
                study.tell(trial, float(value) if value is not None else float("nan"))
        except Exception as err:  # noqa: BLE001 - e.g. closed as stale meanwhile: results are on disk anyway
            self.log(f"  [{tp.study}] could not record trial {trial.number} in the storage: {err}")

    # -------------------------------------------------------------------------------- all studies
    def run(self) -> dict[str, str]:
        """Work until every study is finished (or, with ``wait=False``, nothing is claimable).

        Returns ``{study name: "done" | "busy"}``.
        """
        studies, state = {p.name: self.study(p) for p in self.plans}, {}
        while True:
            for p in self.plans:  # a finished study is not looked at (nor its bar shown) again
                if state.get(p.name) != "done":
                    state[p.name] = self._claim_and_run(studies[p.name], p)
            if all(s == "done" for s in state.values()) or not self.wait:
                return state
            time.sleep(self.poll)
