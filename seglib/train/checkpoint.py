"""The one checkpoint format: atomic writes, a kept previous copy, RNG capture, and Drive mirroring.

A checkpoint is a ``dict`` that ``torch.load(path, weights_only=True)`` accepts (tensors, numbers,
strings, lists, dicts only) with at least the key ``"model"`` (the state_dict). Writes go to a
temporary file in the same folder, are flushed and ``fsync``-ed, and replace the target with
``os.replace``; the previous ``last.pt`` is kept as ``last.prev.pt`` so a checkpoint that fails to
load (a torn copy on a synced drive) falls back to the one before it.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import random
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from . import faults

TMP_MARK = ".tmp-"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: dict, path: str | os.PathLike, keep_previous: bool = False) -> Path:
    """Write ``obj`` with ``torch.save`` to ``path`` atomically.

    Args:
        obj: the checkpoint dict.
        path: target file; its folder is created.
        keep_previous: before replacing, keep the existing file as ``<stem>.prev<suffix>`` (hard link,
            or a copy where links are unsupported), so a good checkpoint always exists on disk.

    Returns:
        ``path``. A crash at any moment leaves the old file (or the new one) complete; at worst a stale
        ``.tmp-`` file remains, which :func:`clean_stale` removes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    if keep_previous and path.exists():
        prev = previous_path(path)
        prev_tmp = prev.with_name(f"{prev.name}{TMP_MARK}{os.getpid()}")
        try:
            os.link(path, prev_tmp)
        except OSError:
            shutil.copy2(path, prev_tmp)
        os.replace(prev_tmp, prev)
    faults.point("atomic_save.before_replace")
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


def previous_path(path: Path) -> Path:
    """``last.pt`` -> ``last.prev.pt``."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def clean_stale(folder: Path) -> list[Path]:
    """Delete ``*.tmp-<pid>`` files left by interrupted writes in ``folder``; returns what was removed."""
    removed = []
    if Path(folder).is_dir():
        for p in Path(folder).iterdir():
            if TMP_MARK in p.name:
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict | None:
    """Load ``path`` with ``weights_only=True``, falling back to its ``.prev`` copy if it is unreadable.

    Returns:
        The checkpoint dict, or None when neither file exists.

    Raises:
        RuntimeError: both files exist and neither loads (the message names them).
    """
    path = Path(path)
    errors = []
    for candidate in (path, previous_path(path)):
        if not candidate.exists():
            continue
        try:
            ckpt = torch.load(candidate, map_location=map_location, weights_only=True)
            if candidate != path:
                warnings.warn(f"{path} could not be read ({errors[-1] if errors else 'missing'}); resumed from "
                              f"{candidate} instead", UserWarning, stacklevel=2)
            return ckpt
        except Exception as err:  # noqa: BLE001 - any unpickling/zip error means "unreadable"
            errors.append(f"{candidate}: {type(err).__name__}: {err}")
    if errors:
        raise RuntimeError("no readable checkpoint: " + "; ".join(errors) +
                           ". Move these files away to start from scratch (nothing is deleted automatically)")
    return None


def rng_state() -> dict:
    """All RNG states (Python, NumPy global, torch CPU, torch CUDA) in ``weights_only``-safe types."""
    py = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured (CUDA states only where CUDA is available)."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def copy_throttle() -> float:
    """Test hook: ``$SEGLIB_TEST_DRIVE_MBPS`` (MB/s) slows every :func:`mirror` copy down to that rate, a slow
    stand-in for Drive (``benchmarks/checkpoint_copy.py``); unset or 0: full speed."""
    return float(os.environ.get("SEGLIB_TEST_DRIVE_MBPS") or 0)


def _copy_open_file(src, tmp: Path, size: int, mbps: float) -> None:
    """Copy the open binary file ``src`` (``size`` bytes) to ``tmp`` in 1 MiB chunks, at most ``mbps`` MB/s
    when ``mbps > 0``; flushed and ``fsync``-ed."""
    t0, done = time.monotonic(), 0
    with open(tmp, "wb") as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
            done += len(chunk)
            if done >= size // 2 > done - len(chunk):
                out.flush()
                faults.point("mirror.mid_copy")
            if mbps > 0:
                time.sleep(max(0.0, done / (mbps * 1e6) - (time.monotonic() - t0)))
        out.flush()
        os.fsync(out.fileno())


def mirror(src_root: Path, dst_root: Path, relpaths: list[str]) -> None:
    """Copy files or folders ``relpaths`` from ``src_root`` to ``dst_root`` (e.g. local disk -> Drive).

    Each file is opened once and copied from that open file (so a checkpoint replaced meanwhile by a newer
    one is still copied whole), to a temporary name beside the target, size-checked, ``fsync``-ed and
    renamed into place: the target is never half-written and a failed copy never replaces a good file.
    Unchanged files (same size and mtime) are skipped; the copy keeps the source's mtime.

    Raises:
        OSError: a copy whose size differs from the source (Drive full or disconnected), or any I/O error
            (the temporary file is removed; the target keeps its previous content).
    """
    src_root, dst_root = Path(src_root), Path(dst_root)
    if src_root.resolve() == dst_root.resolve():
        return
    files: list[Path] = []
    for rel in relpaths:
        p = src_root / rel
        if p.is_dir():
            files.extend(q for q in p.rglob("*") if q.is_file() and TMP_MARK not in q.name)
        elif p.is_file():
            files.append(p)
    mbps = copy_throttle()
    for f in files:
        dst = dst_root / f.relative_to(src_root)
        try:
            src = open(f, "rb")
        except FileNotFoundError:  # removed meanwhile (a TensorBoard file rotated): nothing to copy
            continue
        with src:
            st = os.fstat(src.fileno())
            if dst.exists() and dst.stat().st_size == st.st_size and int(dst.stat().st_mtime) == int(st.st_mtime):
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f"{dst.name}{TMP_MARK}{os.getpid()}")
            try:
                _copy_open_file(src, tmp, st.st_size, mbps)
                if tmp.stat().st_size != st.st_size:
                    raise OSError(f"copy of {f} to {dst} is incomplete ({tmp.stat().st_size} of {st.st_size} "
                                  "bytes); is the drive full or disconnected?")
                os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
                os.replace(tmp, dst)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise


def json_safe(obj, strict: bool = True):
    """``obj`` as JSON data: NumPy/torch scalars -> Python numbers, arrays -> lists, other objects (paths) ->
    strings; with ``strict``, NaN/inf -> None (strict JSON), else kept (read back exactly by ``json.load``)."""
    if obj is None or isinstance(obj, (str, bool, np.bool_)):
        return bool(obj) if isinstance(obj, np.bool_) else obj
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        f = float(obj)
        return f if math.isfinite(f) or not strict else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v, strict) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v, strict) for v in obj]
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return json_safe(obj.tolist(), strict)
    return str(obj)


def atomic_write_json(path: str | os.PathLike, obj, indent: int = 1, strict: bool = False) -> Path:
    """Write ``obj`` as JSON to ``path`` through a temporary file and ``os.replace`` (never half-written).

    ``strict=True`` writes NaN/inf as null (files for other programs, such as ``summary.json``); the
    default keeps them as ``NaN``/``Infinity`` so seglib's own state files read back exactly.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")
    tmp.write_text(json.dumps(json_safe(obj, strict), indent=indent, allow_nan=not strict))
    os.replace(tmp, path)
    return path


def resume_message(path, epoch: int, batch: int, n_batches: int, lr: float, best: dict) -> str:
    """The line printed on resume: ``epoch`` epochs done, ``batch`` of ``n_batches`` batches of the next
    one done, the current ``lr`` and ``best`` (``{"monitor", "value", "epoch"}``, value None if none yet)."""
    msg = f"resumed from {path}: epoch {epoch + 1}, batch {batch}/{n_batches} ({epoch} epochs done), LR {lr:.3g}"
    if best.get("value") is not None:
        msg += f", best {best['monitor']} {best['value']:.4f} (epoch {best['epoch']})"
    return msg
