"""One run, one identity: whether a checkpoint may be resumed by this run, and where a new run's weights come from.

A run is its WORKDIR. Its checkpoints record the model configuration and the data fingerprint
(:func:`seglib.data.fingerprint.data_fingerprint`); a resume with another model is refused
(:func:`check_compatible`), a resume with other data too (:func:`check_data`: the message names both
fingerprints and the two ways forward). ``FINE_TUNE_FROM`` (:func:`resolve_fine_tune`) starts a *new* run
in its own WORKDIR from another run's weights (model weights only: fresh optimizer, epoch 0). Old
checkpoints without a fingerprint are accepted and get this data's from their next save on.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from ..config import MODEL_FIELDS, TrainConfig, config_diff
from ..data.fingerprint import describe_fingerprint, same_data
from ..metrics import upgrade_key, upgrade_keys
from ..runtime import ensure_drive

BEST_KEYS = ("format", "engine", "model", "config", "epoch", "best", "last_val", "history", "data",
             "fine_tuned_from", "versions", "saved_at", "task", "classes")
"""What ``best.pt`` keeps of a checkpoint: the weights, configuration, metrics and data fingerprint (no
optimizer, scheduler, scaler or RNG state: those are ``last.pt``'s, the only file a run resumes from)."""


class CheckpointMismatch(ValueError):
    """A checkpoint belongs to a different model than the current configuration asks for."""


class DataMismatch(ValueError):
    """A WORKDIR's checkpoint was trained on other data than this run's (fingerprints differ)."""


class FineTuneError(ValueError):
    """``FINE_TUNE_FROM`` cannot start a new run: no checkpoint there, or WORKDIR already holds another run."""


def check_compatible(cfg: TrainConfig, model: nn.Module, ckpt: dict, path: Path, action: str = "resume") -> None:
    """Refuse to ``action`` (``"resume"`` or ``"fine-tune from"``) ``ckpt`` (loaded from ``path``) with
    another model than ``cfg``/``model``.

    Raises:
        CheckpointMismatch: a :data:`~seglib.config.MODEL_FIELDS` value or the parameter names/shapes differ
            (the message names them and says how to go on; the checkpoint is kept).
    """
    diff = {k: v for k, v in config_diff(ckpt.get("config", {}), cfg.to_dict()).items() if k in MODEL_FIELDS}
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in ckpt["model"].items()}
    if diff or own != theirs:
        detail = "; ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in diff.items())
        if not diff:
            bad = sorted(set(own) ^ set(theirs)) or [k for k in own if own[k] != theirs.get(k)]
            detail = f"parameter names/shapes differ (e.g. {bad[:3]})"
        raise CheckpointMismatch(
            f"checkpoint {path} belongs to a different model ({detail}). Set the model parameters back to "
            f"{action} it, or give this run another EXPERIMENT/WORKDIR to start fresh; the checkpoint is kept."
        )


def config_changes(ckpt: dict, cfg: TrainConfig) -> str | None:
    """The line a resumed run prints about settings changed since ``ckpt`` was written (``lr`` aside: the
    checkpoint's optimizer state decides it), or None when nothing changed."""
    changed = {k: v for k, v in config_diff(ckpt.get("config", {}), cfg.to_dict()).items() if k != "lr"}
    if not changed:
        return None
    return "  configuration changes since the checkpoint: " + ", ".join(
        f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())


def upgrade_checkpoint(ckpt: dict, task: str | None) -> dict:
    """``ckpt`` with metric keys renamed since it was written (:func:`seglib.metrics.upgrade_keys`): in the
    history, ``last_val``, and the monitored key of the configuration, best tracker and early stopping, so an
    old binary or depth run resumes with one set of keys and keeps its best value. ``task`` None: unchanged."""
    if not task:
        return ckpt
    ckpt = dict(ckpt, history=upgrade_keys(ckpt.get("history", []), task),
                last_val=upgrade_keys(ckpt.get("last_val", {}), task))
    for part in ("config", "best"):
        if isinstance(ckpt.get(part), dict) and "monitor" in ckpt[part]:
            ckpt[part] = dict(ckpt[part], monitor=upgrade_key(ckpt[part]["monitor"], task))
    early = ckpt.get("early_stopping")
    if isinstance(early, dict) and isinstance(early.get("best"), dict):
        ckpt["early_stopping"] = dict(early, best=dict(early["best"], monitor=upgrade_key(early["best"]["monitor"], task)))
    return ckpt


def check_data(saved: dict | None, now: dict | None, path: Path, workdir: Path) -> bool:
    """Refuse to resume a checkpoint (``path``, in ``workdir``) whose data fingerprint ``saved`` differs from
    this run's ``now``.

    Returns:
        True when the data is the same or ``now`` is None (no fingerprint given); False for a checkpoint
        from before fingerprints (``saved`` None): accepted, a note is printed, and the next save records
        ``now``.

    Raises:
        DataMismatch: other data; the message names both fingerprints, the checkpoint, and the two ways
            forward (a new WORKDIR, or FINE_TUNE_FROM with a new WORKDIR). Nothing is changed.
    """
    if now is None:
        return True
    if not saved:
        print(f"  {path} records no data fingerprint (written before seglib kept one); taking this data's: "
              f"{describe_fingerprint(now)}")
        return False
    if same_data(saved, now):
        return True
    raise DataMismatch(
        f"WORKDIR {workdir} holds a run trained on other data: its checkpoint {path} records data "
        f"{describe_fingerprint(saved)}, but this run's DATA is {describe_fingerprint(now)}. Nothing was "
        f"trained, evaluated or changed. To train on this data, either\n"
        f"  - set WORKDIR (or EXPERIMENT) to a new folder: a new run from scratch, or\n"
        f"  - set WORKDIR to a new folder and FINE_TUNE_FROM={str(workdir)!r}: a new run starting from this "
        f"run's weights (fresh optimizer, epoch 0).\n"
        f"To resume this run instead, set DATA back to {saved.get('source')!r}.")


def resolve_fine_tune(source: str | os.PathLike, workspace) -> Path:
    """The checkpoint file ``FINE_TUNE_FROM`` names: the file itself, or for a folder (another run's WORKDIR)
    its ``checkpoints/best.pt``, else ``checkpoints/last.pt`` (``best.pt``/``last.pt`` directly inside also
    count). A path on Google Drive is mounted first (:func:`seglib.runtime.ensure_drive`).

    Raises:
        FineTuneError: nothing loadable there (the message lists what was looked for), or ``source`` is
            this run's own WORKDIR (a fine-tuning run needs a WORKDIR of its own).
        seglib.runtime.DriveError: ``source`` is on Drive and Drive cannot be mounted.
    """
    src = ensure_drive(source)
    candidates = [src] if src.is_file() else [src / "checkpoints" / "best.pt", src / "checkpoints" / "last.pt",
                                              src / "best.pt", src / "last.pt"]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise FineTuneError(f"FINE_TUNE_FROM={str(source)!r}: no checkpoint found (looked for "
                            f"{', '.join(str(p) for p in candidates)}); give a checkpoint file or another run's WORKDIR")
    found = found.resolve()
    for own in {workspace.workdir.resolve(), workspace.local.resolve()}:
        if own == found.parent or own in found.parents:
            raise FineTuneError(
                f"FINE_TUNE_FROM={str(source)!r} is this run's own WORKDIR {workspace.workdir}: fine-tuning starts a "
                f"new run, which needs a WORKDIR of its own. Set WORKDIR to a new folder (the old run is kept).")
    return found


def check_fine_tune_target(ckpt: dict, source: Path, path: Path, workdir: Path) -> None:
    """With ``FINE_TUNE_FROM`` set and a checkpoint already in WORKDIR: go on only when that checkpoint is the
    fine-tuning run from ``source`` (Run all again after a disconnect resumes it).

    Raises:
        FineTuneError: WORKDIR holds another run (trained from scratch or from another source).
    """
    origin = (ckpt.get("fine_tuned_from") or {}).get("path")
    if origin == str(source):
        return
    what = f"fine-tuned from {origin}" if origin else "trained from scratch"
    raise FineTuneError(
        f"FINE_TUNE_FROM={str(source)!r} starts a new run, but WORKDIR {workdir} already holds another run "
        f"({what}; {path} is at epoch {ckpt.get('epoch')}). Set WORKDIR to a new folder for the fine-tuning run, "
        f"or FINE_TUNE_FROM=None to resume the run in {workdir}. Nothing was changed.")
