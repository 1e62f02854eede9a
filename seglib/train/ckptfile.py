"""Reading one checkpoint file: torn, refused and foreign files told apart, each with a message naming the file.

Every checkpoint is read with ``torch.load(weights_only=True)``: a file whose unpickling would run code (a
crafted pickle) is refused, never executed. :func:`read_checkpoint` sorts what can go wrong:

* :class:`TornCheckpoint`: the file is cut short or garbled (a write or a Drive copy interrupted); the
  recovery order (:mod:`seglib.train.recovery`) moves on to the next candidate.
* :class:`CheckpointError`: the file loads but is not what seglib needs (a plain state_dict, a bare
  tensor, a dict without ``"model"``/``"rng"``/...), or it is a refused pickle. The message names the file,
  says what it holds (:func:`describe_content`) and how to go on; nothing is changed.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from .checkpoint import previous_path

RESUME_KEYS = ("model", "optimizer", "epoch", "batch", "step", "train_acc", "early_stopping", "best", "rng", "history")
"""What a checkpoint needs to be resumed from (``last.pt``, ``last.prev.pt``)."""
WEIGHT_KEYS = ("model",)
"""What a checkpoint needs to give weights (``best.pt``, ``FINE_TUNE_FROM``, evaluation)."""


class CheckpointError(ValueError):
    """A file is not a usable seglib checkpoint (foreign content, or a pickle ``weights_only`` refuses)."""


class TornCheckpoint(CheckpointError):
    """A checkpoint file cannot be read: cut short or garbled (an interrupted write or copy)."""


def describe_content(obj) -> str:
    """What a loaded file holds, in words: ``"a plain state_dict of 120 tensors (e.g. 'encoder.conv1.weight')"``,
    ``"a bare tensor of shape (3, 4)"``, ``"a dict with keys ['a', 'b']"``, ``"a list of 3 items"``."""
    if isinstance(obj, torch.Tensor):
        return f"a bare tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, dict):
        keys = list(obj)
        if keys and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return f"a plain state_dict of {len(keys)} tensors (e.g. {keys[0]!r})"
        shown = ", ".join(repr(k) for k in keys[:8]) + (", ..." if len(keys) > 8 else "")
        return f"a dict with keys [{shown}]" if keys else "an empty dict"
    if isinstance(obj, (list, tuple)):
        return f"a {type(obj).__name__} of {len(obj)} items"
    return f"a {type(obj).__name__} ({str(obj)[:40]!r})"


def is_state_dict(obj) -> bool:
    """``obj`` is a plain ``{name: tensor}`` state_dict (what ``torch.save(model.state_dict())`` writes)."""
    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                      for k, v in obj.items())


def read_checkpoint(path: str | os.PathLike, map_location="cpu", need: tuple = RESUME_KEYS,
                    purpose: str = "resume from") -> dict:
    """Load ``path`` with ``weights_only=True`` and check it holds the keys ``need``.

    Args:
        need: :data:`RESUME_KEYS` (a run resumes from it) or :data:`WEIGHT_KEYS` (weights only).
        purpose: words for the message (``"resume from"``, ``"evaluate"``, ``"fine-tune from"``).

    Returns:
        The checkpoint dict.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        TornCheckpoint: the file is cut short or garbled (the message names it and the error).
        CheckpointError: a pickle ``weights_only`` refuses (would run code: it is not loaded), or content that
            is not a seglib checkpoint (the message says what it holds and how to go on).
    """
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as err:
        if "GLOBAL" in str(err):  # torch names the callable it refused: "unsupported GLOBAL posix.system"
            detail = next(ln.strip() for ln in str(err).splitlines() if "GLOBAL" in ln)
            raise CheckpointError(
                f"{path} holds objects that safe loading refuses ({detail}): unpickling it could run code, so "
                f"seglib does not load it. Remove or move the file; a seglib checkpoint holds only tensors, "
                f"numbers and strings") from err
        raise TornCheckpoint(f"{path} is torn or not a checkpoint (UnpicklingError: {_first_line(err)})") from err
    except Exception as err:  # noqa: BLE001 - a zip/stream/EOF error: cut short or garbled
        raise TornCheckpoint(f"{path} is torn ({type(err).__name__}: {_first_line(err)})") from err
    check_keys(ckpt, path, need, purpose)
    return ckpt


def check_keys(ckpt, path: Path, need: tuple, purpose: str) -> None:
    """Refuse ``ckpt`` (loaded from ``path``) unless it is a dict with the keys ``need``.

    Raises:
        CheckpointError: names the file, what it holds (:func:`describe_content`), what is missing and the fix.
    """
    missing = [k for k in need if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        fix = ("move it out of checkpoints/ to start fresh, or give it as FINE_TUNE_FROM (with a WORKDIR of its "
               "own) to start a new run from its weights" if need == RESUME_KEYS else
               "give a seglib checkpoint (last.pt, best.pt) or a plain state_dict of this model")
        shown = ", ".join(repr(k) for k in missing[:4]) + (", ..." if len(missing) > 4 else "")
        raise CheckpointError(f"cannot {purpose} {path}: it holds {describe_content(ckpt)}, not a seglib checkpoint "
                              f"(missing {shown}). Nothing was changed; {fix}")


def _first_line(err: BaseException) -> str:
    """The first sentence of ``err``'s message (torch's zip errors go on for a paragraph)."""
    text = (str(err).strip().splitlines() or [""])[0]
    return text.split(". ")[0][:160] or "empty file"


def load_checkpoint(path: str | os.PathLike, map_location="cpu", need: tuple = WEIGHT_KEYS,
                    purpose: str = "load") -> dict | None:
    """:func:`read_checkpoint` of ``path``, falling back to its ``.prev`` copy when ``path`` is torn (one line
    printed: which file and why).

    Returns:
        The checkpoint dict, or None when neither file exists.

    Raises:
        RuntimeError: both files exist and neither loads (the message names them; nothing is deleted).
        CheckpointError: a refused pickle or foreign content (see :func:`read_checkpoint`).
    """
    path, errors = Path(path), []
    for candidate in (path, previous_path(path)):
        if not candidate.exists():
            continue
        try:
            ckpt = read_checkpoint(candidate, map_location, need, purpose)
        except TornCheckpoint as err:
            errors.append(str(err))
            continue
        if candidate != path:
            print(f"{errors[-1] if errors else f'{path} is missing'}; using {candidate.name} instead")
        return ckpt
    if errors:
        raise RuntimeError("no readable checkpoint: " + "; ".join(errors) +
                           ". Move these files away to start from scratch (nothing is deleted automatically)")
    return None
