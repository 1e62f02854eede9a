"""Checks of one interrupted run against the uninterrupted reference run of its scenario.

Everything is read from what a user keeps, in WORKDIR (with a mirrored run: the Drive side): ``summary.json``,
``checkpoints/last.pt`` and ``best.pt``, the study's ``result.json`` and table, TensorBoard event files, and the
step log of :class:`~tools.reliability.scenarios.StepLog`. :func:`check_case` returns one entry per check:

    a. resumes and finishes: the last process exited 0, the run (every trial) completed its epochs.
    b. bit-equal: ``last.pt["model"]`` ``torch.equal`` to the reference's, for the run and every trial.
    c. consistent best: ``best.pt`` exists; its ``epoch`` is the best epoch of ``summary.json`` (a trial's
       ``result.json``); that best value is the history's value of that epoch; best and final metrics equal the
       reference's; ``best.pt`` weights ``torch.equal`` to the reference's ``best.pt``.
    d. repeated work: per killed process, optimizer steps done after the checkpoint the next process resumed
       from: at most 2 with ``CHECKPOINT_MINUTES=0`` (the step in flight, and the step whose checkpoint the
       background writer was still writing -- or, when the VM is lost too, still copying to WORKDIR -- as the
       training thread went on; both by design, issue 12), else at most CHECKPOINT_MINUTES of
       wall time plus twice the longest gap between two logged events (one step, or one validation).
    e. TensorBoard: per tag, no step twice, the same steps and (time tags aside) the same values as the reference
       (what TensorBoard shows: its EventAccumulator, which honours the writer's purge of steps redone).
    f. study table: ``run.table()`` equal to the uninterrupted study's (trial scenario only).
    g. no temporary file (``*.tmp-<pid>``) left in WORKDIR or the local folder after the final run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from .scenarios import EPOCHS, MONITOR

CHECKS = {"a": "resumes and finishes", "b": "final weights bit-equal", "c": "best.pt and summary consistent",
          "d": "repeated work within CHECKPOINT_MINUTES", "e": "no duplicate TensorBoard steps",
          "f": "study table equal", "g": "no temporary files left"}
TIME_TAGS = ("seconds",)


def run_folders(workdir) -> list[str]:
    """Folders (relative to WORKDIR) that hold one training each: ``"."``, or every trial of a study."""
    trials = sorted(p.relative_to(workdir).as_posix() for p in Path(workdir).glob("trials/*/*") if p.is_dir())
    return trials or ["."]


def _load(path: Path) -> dict | None:
    return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None


def _equal_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _record(workdir: Path, rel: str, scenario: str) -> dict:
    """``{"best_epoch", "best_value", "final", "history", "epochs"}`` from summary.json or result.json."""
    if scenario == "trial":
        r = json.loads((workdir / rel / "result.json").read_text())
        return {"best_epoch": r["best_epoch"], "best_value": r["best_val_fg_dice"], "final": r["final"],
                "history": r["history"], "epochs": r["epochs_completed"]}
    s = json.loads((workdir / "summary.json").read_text())
    last = _load(workdir / "checkpoints" / "last.pt") or {}
    return {"best_epoch": s["best"]["epoch"], "best_value": s["best"]["value"], "final": s["final_metrics"],
            "history": last.get("history", []), "epochs": s["epochs_completed"]}


def _best_consistent(workdir: Path, ref: Path, rel: str, scenario: str) -> list[str]:
    problems = []
    rec, ref_rec = _record(workdir, rel, scenario), _record(ref, rel, scenario)
    best = _load(workdir / rel / "checkpoints" / "best.pt")
    if best is None:
        return [f"{rel}: best.pt missing"]
    if best.get("epoch") != rec["best_epoch"]:
        problems.append(f"{rel}: best.pt holds epoch {best.get('epoch')}, the summary says {rec['best_epoch']}")
    hist = {h["epoch"]: h for h in rec["history"]}
    value = hist.get(rec["best_epoch"], {}).get(MONITOR[scenario])
    if value != rec["best_value"]:
        problems.append(f"{rel}: best value {rec['best_value']} is not epoch {rec['best_epoch']}'s {value}")
    if (rec["best_epoch"], rec["best_value"]) != (ref_rec["best_epoch"], ref_rec["best_value"]):
        problems.append(f"{rel}: best epoch/value {rec['best_epoch']}/{rec['best_value']} != reference "
                        f"{ref_rec['best_epoch']}/{ref_rec['best_value']}")
    if rec["final"] != ref_rec["final"]:
        problems.append(f"{rel}: final metrics differ from the reference's: {rec['final']} != {ref_rec['final']}")
    ref_best = _load(ref / rel / "checkpoints" / "best.pt")
    if not _equal_weights(best["model"], ref_best["model"]):
        problems.append(f"{rel}: best.pt weights differ from the reference's")
    return problems


def tensorboard_view(folder: Path) -> dict:
    """``{tag: [(step, value), ...]}`` of scalars and ``{"images:" + tag: [(step, None), ...]}`` as TensorBoard
    shows the event files of ``folder`` (tensorboard's EventAccumulator, purging steps a writer redid)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logging.getLogger("tensorboard").setLevel(logging.ERROR)  # its note on each purge of redone steps
    if not folder.is_dir():
        return {}
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    view = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    view.update({f"images:{t}": [(e.step, None) for e in acc.Images(t)] for t in acc.Tags()["images"]})
    return view


def _tensorboard(workdir: Path, ref: Path, rel: str) -> list[str]:
    problems = []
    view, ref_view = tensorboard_view(workdir / rel / "tensorboard"), tensorboard_view(ref / rel / "tensorboard")
    for tag in sorted(set(view) | set(ref_view)):
        steps = [s for s, _ in view.get(tag, [])]
        ref_steps = [s for s, _ in ref_view.get(tag, [])]
        if len(steps) != len(set(steps)):
            problems.append(f"{rel}: TensorBoard tag {tag} has duplicate steps {steps}")
        elif sorted(steps) != sorted(ref_steps):
            problems.append(f"{rel}: TensorBoard tag {tag} has steps {steps}, the reference {ref_steps}")
        elif not any(t in tag for t in TIME_TAGS) and sorted(view[tag]) != sorted(ref_view[tag]):
            problems.append(f"{rel}: TensorBoard tag {tag} values differ from the reference's")
    return problems


def read_log(path) -> list[dict]:
    """The step log's lines (a line torn by the kill is skipped)."""
    out = []
    for line in Path(path).read_text().splitlines() if Path(path).exists() else []:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def repeated_work(log: list[dict], pids: list[int], killed: list[bool], minutes: float) -> tuple[list[dict], list[str]]:
    """Per killed process (``pids[i]`` with ``killed[i]``) and run folder it trained: steps done after the
    checkpoint the next process resumed from (``redone``), and the seconds from that checkpoint's step to the
    process's last logged event (``seconds``), checked against ``minutes`` (see the module docstring)."""
    found, problems = [], []
    for i, pid in enumerate(pids[:-1]):
        if not killed[i]:
            continue
        mine = [e for e in log if e["pid"] == pid]
        steps = [e for e in mine if e["ev"] == "step"]
        if not steps:
            continue
        run = steps[-1]["run"]
        done = steps[-1]["step"]
        nxt = []
        for later in pids[i + 1:]:  # the next process that trained this run (a double kill may end one early)
            nxt = [e for e in log if e["pid"] == later and e["run"] == run and e["ev"] == "step"]
            if nxt:
                break
        resumed_at = nxt[0]["step"] - 1 if nxt else done
        redone = done - resumed_at
        mine = [e for e in mine if e["run"] == run]  # a study process trains several trials, one after another
        at = [e["t"] for e in mine if e["ev"] == "step" and e["step"] == resumed_at]
        seconds = mine[-1]["t"] - (at[0] if at else mine[0]["t"])
        gaps = [b["t"] - a["t"] for a, b in zip(mine, mine[1:])] or [0.0]
        entry = {"pid": pid, "run": run, "done": done, "resumed_at": resumed_at, "redone": redone,
                 "seconds": round(seconds, 3)}
        found.append(entry)
        if redone < 0:
            problems.append(f"pid {pid}: the next run resumed at step {resumed_at}, after the {done} steps done")
        elif minutes == 0 and redone > 2:
            problems.append(f"pid {pid}: {redone} steps redone with CHECKPOINT_MINUTES=0 (at most 2)")
        elif minutes > 0 and seconds > minutes * 60 + 2 * max(gaps):
            problems.append(f"pid {pid}: {seconds:.1f} s of work redone, more than CHECKPOINT_MINUTES={minutes}")
    return found, problems


def temporary_files(*folders) -> list[str]:
    """``*.tmp-<pid>`` files under ``folders``."""
    return sorted(str(p) for f in folders if f and Path(f).is_dir() for p in Path(f).rglob("*") if ".tmp-" in p.name)


def check_case(scenario: str, workdir, ref, runs: list[dict], log, minutes: float, local=None) -> dict:
    """All checks of one interrupted run.

    Args:
        scenario: the scenario name; workdir: its WORKDIR; ref: the reference run's WORKDIR.
        runs: :func:`tools.reliability.launcher.run_until_finished`'s result; log: the step log file.
        minutes: the run's CHECKPOINT_MINUTES; local: its local folder when mirrored.

    Returns:
        ``{"checks": {letter: [problem, ...]} (empty list = passed), "work": repeated-work entries,
        "killed": number of processes ended by SIGKILL}``.
    """
    workdir, ref = Path(workdir), Path(ref)
    out: dict[str, list[str]] = {k: [] for k in CHECKS if k != "f" or scenario == "trial"}
    final = runs[-1]
    if final["rc"] != 0:
        out["a"].append(f"the last of {len(runs)} runs ended with exit code {final['rc']}"
                        + (" (timed out)" if final.get("timed_out") else ""))
        for k in out:
            if k not in ("a", "d"):
                out[k].append("not checked: the run did not finish")
    else:
        for rel in run_folders(ref):
            try:
                if _record(workdir, rel, scenario)["epochs"] != EPOCHS:
                    out["a"].append(f"{rel}: {_record(workdir, rel, scenario)['epochs']} epochs completed, not {EPOCHS}")
                last, ref_last = _load(workdir / rel / "checkpoints" / "last.pt"), _load(ref / rel / "checkpoints" / "last.pt")
                if last is None or not _equal_weights(last["model"], ref_last["model"]):
                    out["b"].append(f"{rel}: last.pt weights differ from the reference's" if last else f"{rel}: no last.pt")
                out["c"] += _best_consistent(workdir, ref, rel, scenario)
            except (OSError, KeyError, ValueError, RuntimeError) as err:
                out["a"].append(f"{rel}: unreadable result: {type(err).__name__}: {err}")
            out["e"] += _tensorboard(workdir, ref, rel)
        if scenario == "trial":
            table, ref_table = (json.loads((p / "table.json").read_text()) for p in (workdir, ref))
            if table != ref_table:
                out["f"].append(f"study table differs: {table} != {ref_table}")
        out["g"] += [f"left behind: {p}" for p in temporary_files(workdir, local)]
    work, problems = repeated_work(read_log(log), [r["pid"] for r in runs], [r["rc"] == -9 for r in runs], minutes)
    out["d"] += problems
    return {"checks": out, "work": work, "killed": sum(r["rc"] == -9 for r in runs)}
