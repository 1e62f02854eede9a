"""Where a run resumes from, and the one rule that keeps ``best.pt`` and the record of the best the same.

The checkpoint protocol: at the end of each epoch :meth:`~seglib.train.state.TrainingState.save` writes
``last.pt`` first (the commit point: it records the best it expects, ``ckpt["best"] = {monitor, value,
epoch}``, and on an improving epoch its weights *are* the best epoch's), then the weights-only ``best.pt``.
A kill between the two writes leaves a ``best.pt`` that is missing or stale; :func:`reconcile_best` finds
that on resume and rebuilds it from ``last.pt``, moves a ``best.pt`` from a lost future aside, or, when the
expected best weights are gone, corrects the record loudly. It never silently replaces the best by
``last.pt``.

The recovery order (:func:`restore`): local ``last.pt``, local ``last.prev.pt``, WORKDIR ``last.pt``,
WORKDIR ``last.prev.pt`` (WORKDIR's read only when the workspace is mirrored and they are newer or the local
ones are missing or torn); the readable one with the most progress (``step``, then ``saved_at``) wins. A
WORKDIR file reaches the local folder only as a copy that has been loaded (a torn Drive file never replaces
a good local one). When no ``last*.pt`` is readable but a ``best.pt`` is, the run goes on from ``best.pt``
as a warm restart (:func:`warm_restart`): ``best.pt`` is weights-only since issue 10, so this is the
full-state fallback "another way": epoch, history, best and early stopping are rebuilt from its history,
the optimizer and scheduler start fresh at the LR of that epoch (not bit-exact; it says so). Every fallback
prints one line: which file it used and why. Temporary ``*.tmp-<pid>`` files of interrupted writes and
copies are deleted first, locally and in WORKDIR.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from pathlib import Path

import torch

from ..metrics import higher_is_better
from ..runtime import seed_everything
from .checkpoint import TMP_MARK, atomic_save, check_writable, clean_stale, mirror, resume_message, rng_state
from .ckptfile import RESUME_KEYS, WEIGHT_KEYS, TornCheckpoint, check_keys, is_state_dict, read_checkpoint
from .identity import (
    BEST_KEYS,
    check_compatible,
    check_data,
    check_fine_tune_target,
    config_changes,
    resolve_fine_tune,
    upgrade_checkpoint,
)
from .optim import set_lr

PULLED = ["tensorboard", "history.json"]
"""What comes from WORKDIR with a WORKDIR checkpoint besides the checkpoint files (copied as they are)."""


def clean_temporaries(ws) -> list[Path]:
    """Delete the ``*.tmp-<pid>`` files of interrupted writes and copies in the run root, ``checkpoints/`` and
    ``tensorboard/`` of the local folder and, when mirrored, of WORKDIR; returns what was removed."""
    removed = []
    for root in ([ws.local, ws.workdir] if ws.mirrored else [ws.local]):
        removed += clean_stale(root) + clean_stale(root / "checkpoints") + clean_stale(root / "tensorboard", True)
    return removed


def _where(path: Path, ws) -> str:
    return f"{'WORKDIR' if ws.mirrored and ws.workdir in path.parents else 'local'} {path.name}"


def _set_aside(path: Path, name: str) -> Path | None:
    """Rename ``path`` to ``name`` in its folder (never delete a model); None when there is no such file."""
    if not path.is_file():
        return None
    target = path.with_name(name)
    os.replace(path, target)
    return target


def _read(path: Path, device, need, folder: Path | None = None) -> tuple[dict | None, str, Path | None]:
    """``(checkpoint, "", file)`` or ``(None, why, None)`` with ``why`` ``"missing"`` or ``"torn (...)"``.

    With ``folder`` (a WORKDIR file read into the local folder), the file is first copied to a temporary file
    there and that copy is read: ``file`` is the verified local copy (the caller keeps or deletes it). Foreign
    content and refused pickles raise :class:`~seglib.train.ckptfile.CheckpointError`."""
    if not path.is_file():
        return None, "missing", None
    held = path
    if folder is not None:
        held = folder / f"{path.name}.workdir{TMP_MARK}{os.getpid()}"
        shutil.copy2(path, held)
    try:
        return read_checkpoint(held, device, need, "resume from"), "", held
    except TornCheckpoint as err:
        if held != path:
            held.unlink(missing_ok=True)
        return None, "torn (" + str(err).split(" (", 1)[-1], None
    except BaseException:
        if held != path:
            held.unlink(missing_ok=True)
        raise


def _progress(ckpt: dict) -> tuple:
    return int(ckpt.get("step", 0)), float(ckpt.get("saved_at", 0.0))


def find_last(ws, device) -> tuple[dict | None, Path | None, Path | None, list[str]]:
    """The resume checkpoint by the recovery order (module docstring).

    Returns:
        ``(checkpoint, its path, the local file holding it, notes)``: a WORKDIR checkpoint is held by a verified
        temporary copy in the local ``checkpoints/`` (:func:`install_last` puts it in place); ``notes`` say why
        other candidates were not used (``"WORKDIR last.pt is torn (...)"``). Checkpoint None: none readable.
    """
    folder = ws.local / "checkpoints"
    local = [folder / "last.pt", folder / "last.prev.pt"]
    remote = [ws.workdir / "checkpoints" / n for n in ("last.pt", "last.prev.pt")] if ws.mirrored else []
    best, best_path, held, notes = None, None, None, []
    for path in local + remote:
        if best is not None and path.name == "last.prev.pt" and best_path.parent == path.parent:
            continue  # a previous copy never has more progress than its readable last.pt
        if path in remote and best is not None and (
                not path.is_file() or path.stat().st_mtime <= best_path.stat().st_mtime):
            continue  # WORKDIR's copy is not newer than the local checkpoint
        ckpt, why, h = _read(path, device, RESUME_KEYS, folder if path in remote else None)
        if ckpt is None:
            if why != "missing":
                notes.append(f"{_where(path, ws)} is {why}")
            continue
        if best is None or _progress(ckpt) > _progress(best):
            if held is not None and held != best_path:
                held.unlink(missing_ok=True)
            best, best_path, held = ckpt, path, h
        elif h != path:
            h.unlink(missing_ok=True)
    if best is not None and best_path != local[0] and not local[0].exists():
        notes.append("local last.pt is missing")
    return best, best_path, held, notes


def install_last(ws, path: Path, held: Path) -> None:
    """Make the chosen checkpoint (``path``, held by the local file ``held``) the local ``last.pt``. A local
    ``last.pt`` that is not it is kept: as ``last.prev.pt`` when it is readable (an older checkpoint of this
    run), else as ``last.pt.torn``. A WORKDIR checkpoint also brings WORKDIR's TensorBoard and history
    (:data:`PULLED`)."""
    folder = ws.local / "checkpoints"
    dst, prev = folder / "last.pt", folder / "last.prev.pt"
    if held == dst:
        return
    if dst.is_file():
        try:
            readable = held != prev and read_checkpoint(dst, "cpu", RESUME_KEYS) is not None
        except TornCheckpoint:
            readable = False
        os.replace(dst, prev if readable else dst.with_name("last.pt.torn"))
    if held == prev:
        tmp = dst.with_name(f"{dst.name}{TMP_MARK}{os.getpid()}")
        shutil.copy2(prev, tmp)
        held = tmp
    os.replace(held, dst)
    if ws.mirrored and ws.workdir in path.parents:
        mirror(ws.workdir, ws.local, PULLED)


def _value(history: list, epoch, monitor: str):
    return next((h.get(monitor) for h in history if h.get("epoch") == epoch), None)


def _best_of(ckpt: dict, best: dict) -> dict:
    """``best.pt`` of the checkpoint ``ckpt`` with the best record ``best``."""
    return {**{k: ckpt[k] for k in BEST_KEYS if k in ckpt}, "best": best}


def reconcile_best(state, ckpt: dict) -> None:
    """Make ``best.pt`` the model the record in ``ckpt`` (the checkpoint just loaded) expects (module docstring).

    * ``best.pt`` (local, else a verified copy of WORKDIR's) holds the expected epoch: kept.
    * a ``best.pt`` of an epoch after ``ckpt``'s (a lost future): moved aside to ``best.epoch<E>.orphan.pt``
      (locally and in WORKDIR).
    * the expected epoch is ``ckpt``'s own and ``ckpt`` ends that epoch (the kill window between the two
      writes): ``best.pt`` is rebuilt from ``ckpt``.
    * otherwise the expected best weights are gone: the record is corrected, loudly, to the better of a
      readable older ``best.pt`` and (at an epoch end) ``ckpt``'s epoch (``best.pt`` rebuilt from ``ckpt``),
      or to "no best yet". Early stopping keeps its own count.
    """
    ws, monitor = state.ws, state.best.monitor
    path = state.ckpt_dir / "best.pt"
    want, done, batch = ckpt["best"].get("epoch"), int(ckpt["epoch"]), int(ckpt["batch"])
    have, why, _ = _read(path, state.device, WEIGHT_KEYS)
    if have is not None and have.get("epoch") == want and want is not None:
        return
    places = [(path, have)]
    remote = ws.workdir / "checkpoints" / "best.pt"
    if ws.mirrored and remote.is_file():
        theirs, _, held = _read(remote, state.device, WEIGHT_KEYS, state.ckpt_dir)
        if theirs is not None and theirs.get("epoch") == want and want is not None:
            os.replace(held, path)
            mine = why or f"of epoch {have.get('epoch')}"
            print(f"local best.pt is {mine}; using WORKDIR best.pt (epoch {want})")
            return
        if held is not None:
            held.unlink(missing_ok=True)
        places.append((remote, theirs))
    stale = None
    for p, b in places:
        e = b.get("epoch") if b is not None else None
        if b is not None and (e is None or e > done):  # a best.pt from a lost future (or of no known epoch)
            moved = _set_aside(p, f"best.epoch{e}.orphan.pt")
            print(f"{_where(p, ws)} holds epoch {e}, after the checkpoint resumed from (epoch {done}): a lost "
                  f"future; moved aside to {moved}")
            why = why or f"of epoch {e}, after the checkpoint"
        elif b is not None and stale is None:
            stale = (p, b)
    why = why or (f"stale (epoch {stale[1].get('epoch')})" if stale else "missing")
    if want is None:
        return
    if want == done and batch == 0:
        atomic_save(_best_of(ckpt, ckpt["best"]), path)
        print(f"best.pt of epoch {want} was {why}; rebuilt from last.pt")
        return
    options = []
    if stale is not None and _value(ckpt["history"], stale[1].get("epoch"), monitor) is not None:
        options.append((_value(ckpt["history"], stale[1]["epoch"], monitor), stale[1]["epoch"], "the best.pt there"))
    if batch == 0 and _value(ckpt["history"], done, monitor) is not None:
        options.append((_value(ckpt["history"], done, monitor), done, "best.pt rebuilt from last.pt"))
    lost = f"the best model of epoch {want} ({monitor} {ckpt['best'].get('value')}) is lost: best.pt is {why}"
    if not options:
        state.best.load_state_dict({"monitor": monitor, "value": None, "epoch": None})
        for p, _ in places:
            _set_aside(p, "best.pt.torn")
        print(f"WARNING: {lost}. The record is corrected to no best yet: the next epoch's model becomes best.pt")
        return
    value, epoch, source = (max if higher_is_better(monitor) else min)(options)
    state.best.load_state_dict({"monitor": monitor, "value": value, "epoch": epoch})
    if source.endswith("last.pt"):
        atomic_save(_best_of(ckpt, state.best.state_dict()), path)
    elif stale[0] != path:
        _set_aside(path, "best.pt.torn")
        shutil.copy2(stale[0], path)
    print(f"WARNING: {lost}. The record is corrected: the best is now epoch {epoch} ({monitor} {value:.4f}, "
          f"{source})")


def warm_restart(state, best: dict, path: Path) -> dict:
    """Go on from the weights-only ``best.pt`` (``best``, read from ``path``) when no ``last*.pt`` is readable.

    The model gets ``best``'s weights; epoch = its epoch, history truncated to it, best and early stopping
    replayed from that history, a fresh optimizer and scheduler at the LR of that epoch's record, RNGs seeded
    with ``config.seed``. Not bit-exact (optimizer moments, scheduler state and the RNG streams are lost);
    the printed line says so.

    Returns:
        ``best`` with ``"rng"`` (the state now), the checkpoint the engines continue from.
    """
    epoch = int(best["epoch"])
    state.model.load_state_dict(best["model"])
    state.history = [h for h in best.get("history", []) if h.get("epoch", 0) <= epoch]
    for h in state.history:
        if h.get(state.best.monitor) is not None:
            state.best.update(h[state.best.monitor], h["epoch"])
            state.early.update(h[state.best.monitor], h["epoch"])
    state.epoch, state.batch, state.step = epoch, 0, epoch * state.n_batches
    state.last_val = dict(best.get("last_val", {}))
    state.fine_tuned_from = best.get("fine_tuned_from")
    if state.scheduler is not None and not isinstance(state.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": no step was taken here
            warnings.simplefilter("ignore")
            for _ in range(epoch * state.n_batches if state.per_step_scheduler else epoch):
                state.scheduler.step()  # the schedule, fast-forwarded to where it was
    elif state.history and "lr" in state.history[-1]:  # the LR the best epoch trained at
        set_lr(state.optimizer, state.history[-1]["lr"] / state.optimizer.param_groups[-1].get("lr_ratio", 1.0),
               state.scheduler)
    seed_everything(state.cfg.seed)
    lr = state.optimizer.param_groups[-1]["lr"]
    print(f"no readable last.pt or last.prev.pt: warm restart from {path} (epoch {epoch}, {state.best.monitor} "
          f"{state.best.value:.4f}); the optimizer and scheduler start fresh at LR {lr:.3g}, so the run goes on but is "
          "not bit-exact with an uninterrupted one (best.pt keeps weights only: no optimizer or RNG state)")
    return {**best, "rng": rng_state()}


def _warm_source(state, notes: list) -> tuple[dict, Path] | None:
    """A readable ``best.pt`` (local, else a verified copy of WORKDIR's, installed locally) for
    :func:`warm_restart`, or None; a torn one adds a note."""
    ws, local = state.ws, state.ckpt_dir / "best.pt"
    need = WEIGHT_KEYS + ("epoch", "history")
    best, why, _ = _read(local, state.device, need)
    if best is not None:
        return best, local
    if why != "missing":
        notes.append(f"local best.pt is {why}")
    remote = ws.workdir / "checkpoints" / "best.pt"
    if ws.mirrored:
        best, why, held = _read(remote, state.device, need, state.ckpt_dir)
        if best is not None:
            _set_aside(local, "best.pt.torn")
            os.replace(held, local)
            mirror(ws.workdir, ws.local, PULLED)
            return best, remote
        if why != "missing":
            notes.append(f"WORKDIR best.pt is {why}")
    return None


def load_fine_tune(state, source: Path) -> None:
    """Load the model weights of the checkpoint ``source`` (only them) into ``state``'s model for a new run; print
    where from. A plain state_dict (``torch.save(model.state_dict())``) of this model's shapes is taken as the weights.

    Raises:
        CheckpointError, CheckpointMismatch: ``source`` holds no weights of this model (it names the file).
    """
    src = read_checkpoint(source, state.device, (), "fine-tune from")
    if is_state_dict(src):
        src = {"model": src, "config": state.cfg.to_dict()}  # the shapes are checked below
    check_keys(src, source, WEIGHT_KEYS, "fine-tune from")
    src = upgrade_checkpoint(src, state.task)
    check_compatible(state.cfg, state.model, src, source, action="fine-tune from")
    state.model.load_state_dict(src["model"])
    state.fine_tuned_from = {"path": str(source), "epoch": src.get("epoch"), "data": src.get("data")}
    print(f"fine-tuning: a new run from the weights of {source} (epoch {src.get('epoch')}), fresh optimizer, epoch 0")


def restore(state) -> dict | None:
    """:meth:`seglib.train.state.TrainingState.restore`: check the local folder is writable, delete stale
    temporary files, pick the checkpoint by the recovery order (or warm-restart from ``best.pt``), check it
    belongs to this model, data and fine-tuning run, load it, reconcile ``best.pt``, print one line (resume or
    finished), apply the LR override. See that method for what it returns and raises."""
    state._t_start = time.monotonic()
    ws = state.ws
    check_writable(state.ckpt_dir)
    clean_temporaries(ws)
    ckpt, path, held, notes = find_last(ws, state.device)
    warm = _warm_source(state, notes) if ckpt is None else None
    if ckpt is None and warm is None and notes:
        raise RuntimeError("no readable checkpoint: " + "; ".join(notes) + ". Move these files away to start "
                           "from scratch (nothing is deleted automatically)")
    shown = ws.workdir / "checkpoints" / "last.pt"
    if ckpt is None and warm is None:
        if state.fine_tune:
            load_fine_tune(state, resolve_fine_tune(state.fine_tune, ws))
        seed_everything(state.cfg.seed)
        if state.lr_override:
            set_lr(state.optimizer, state.lr_override, state.scheduler)
        return None
    if ckpt is not None:
        install_last(ws, path, held)
        if notes or path != state.ckpt_dir / "last.pt":
            print("; ".join(notes) + f"{'; ' if notes else ''}resumed from {_where(path, ws)} (step {ckpt['step']})")
    origin = path if warm is None else warm[1]
    ckpt = upgrade_checkpoint(ckpt if warm is None else warm[0], state.task)
    check_compatible(state.cfg, state.model, ckpt, origin)
    if state.fine_tune:
        check_fine_tune_target(ckpt, resolve_fine_tune(state.fine_tune, ws), shown, ws.workdir)
    check_data(ckpt.get("data"), state.data, shown, ws.workdir)  # None there: taken from now on
    changed = config_changes(ckpt, state.cfg)
    if warm is not None:
        _set_aside(state.ckpt_dir / "last.pt", "last.pt.torn")
        if notes:
            print("; ".join(notes))
        ckpt = warm_restart(state, ckpt, origin)
    else:
        state.load_state_dict(ckpt)
        state.fine_tuned_from = ckpt.get("fine_tuned_from")
        reconcile_best(state, ckpt)
    if state.finished:
        state.status = "already finished"
        why = "early stopping" if state.early.should_stop else f"EPOCHS={state.cfg.epochs}"
        print(f"training already finished ({why}) after {state.epoch} epochs ({shown}); raise EPOCHS or "
              "EARLY_STOP_PATIENCE to train on")
        return ckpt
    state.status, state.resumed_from = "resumed", {"epoch": state.epoch + 1, "batch": state.batch}
    writer = ckpt.get("engine", "seglib")
    print(resume_message(shown, state.epoch, state.batch, state.n_batches, state.optimizer.param_groups[-1]["lr"],
                         state.best.state_dict()) + f"; engine {state.engine}"
          + (f" (checkpoint written by the {writer} engine)" if writer != state.engine else ""))
    if changed:
        print(changed)
    if state.lr_override:
        print(f"  LR override: {state.optimizer.param_groups[-1]['lr']:.3g} -> {state.lr_override:.3g}")
        set_lr(state.optimizer, state.lr_override, state.scheduler)
    return ckpt
