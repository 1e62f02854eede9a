"""The one checkpoint format: atomic writes, a kept previous copy, RNG capture, and Drive mirroring.

A checkpoint is a ``dict`` that ``torch.load(path, weights_only=True)`` accepts (tensors, numbers,
strings, lists, dicts only) with at least the key ``"model"`` (the state_dict). Writes go to a
temporary file in the same folder, are flushed and ``fsync``-ed, and replace the target with
``os.replace``; the previous ``last.pt`` is kept as ``last.prev.pt`` so a checkpoint that fails to
load (a torn copy on a synced drive) falls back to the one before it. A full disk is a
:class:`StorageError` naming the folder and the space needed; reading a file that is not a seglib
checkpoint is a :class:`~seglib.train.ckptfile.CheckpointError` naming the file and what it holds.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import numbers
import os
import random
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import torch

from . import faults

TMP_MARK = ".tmp-"


class StorageError(OSError):
    """A checkpoint could not be written for lack of space or permission; the message names the folder, the
    space free and needed (disk full) and what to do. The previous file is intact; no partial file is left."""


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def tensor_bytes(obj) -> int:
    """Bytes of the tensors in ``obj`` (nested dicts/lists): about what ``torch.save`` of it writes."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (dict, list, tuple)):
        return sum(map(tensor_bytes, obj.values() if isinstance(obj, dict) else obj))
    return 0


def _disk_full(err: BaseException) -> bool:
    """``torch.save`` reports ENOSPC as ``RuntimeError: [enforce fail at inline_container.cc...] unexpected pos``
    or ``file write failed``; plain writes as ``OSError`` ENOSPC/EDQUOT."""
    if isinstance(err, OSError):
        return err.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(err, RuntimeError) and any(s in str(err) for s in ("inline_container", "unexpected pos",
                                                                        "file write failed"))


def storage_error(err: BaseException, path: Path, needed: int) -> StorageError:
    """The :class:`StorageError` for ``err`` raised while writing ``path`` (``needed`` bytes): disk full (free
    and needed space), read-only or not permitted (names the folder), else the error as it is."""
    folder = path.parent
    if _disk_full(err):
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            free = float("nan")
        return StorageError(errno.ENOSPC, f"disk full: could not write {path.name} in {folder}: {_mb(free)} free, "
                            f"about {_mb(needed)} needed ({type(err).__name__}: {str(err)[:120]}). The partial file "
                            f"was deleted and the previous {path.name} (if any) is intact. Free some space (old runs, "
                            f"the data cache) or give WORKDIR a folder on a larger disk, then run again to resume")
    if isinstance(err, OSError) and err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StorageError(err.errno, f"folder {folder} is read-only ({err.strerror}): seglib cannot write its "
                            f"checkpoints there. Give WORKDIR a writable folder (nothing was changed)")
    return StorageError(getattr(err, "errno", None) or errno.EIO, f"could not write {path}: "
                        f"{type(err).__name__}: {err}")


def check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and check that a file can be written there (before any training).

    Raises:
        StorageError: read-only or not permitted (the message names the folder).
    """
    folder = Path(folder)
    probe = folder / f".write-check{TMP_MARK}{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise storage_error(err, probe, 0) from err


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

    Raises:
        StorageError: disk full (names the folder, the space free and needed: the previous file's size or the
            tensors' bytes, the larger), read-only folder, or another write error; the partial temporary file is
            deleted and the previous file is untouched.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")
    prev_tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        prev = previous_path(path)
        # after a kill between this link and the final replace, last.pt and last.prev.pt are one file (two hard
        # links): prev already holds it, and renaming a link over its twin would be a no-op leaving prev_tmp behind
        if keep_previous and path.exists() and not (prev.exists() and os.path.samefile(path, prev)):
            prev_tmp = prev.with_name(f"{prev.name}{TMP_MARK}{os.getpid()}")
            try:
                os.link(path, prev_tmp)
            except OSError:
                shutil.copy2(path, prev_tmp)
            os.replace(prev_tmp, prev)
    except (OSError, RuntimeError) as err:
        for t in filter(None, (tmp, prev_tmp)):
            t.unlink(missing_ok=True)
        needed = max(path.stat().st_size if path.exists() else 0, tensor_bytes(obj))
        raise storage_error(err, path, needed) from err
    faults.point("atomic_save.before_replace")
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


def snapshot(obj):
    """A copy of checkpoint dict ``obj`` that training cannot change: tensors copied to CPU, containers rebuilt."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, (dict, list, tuple)):
        return {k: snapshot(v) for k, v in obj.items()} if isinstance(obj, dict) else type(obj)(map(snapshot, obj))
    return obj


_WRITES: set[threading.Thread] = set()


class BackgroundWrite:
    """Checkpoint writes off the training thread, one at a time, in the order submitted. :meth:`submit` waits
    for the previous write first (at most one snapshot in memory) and raises its error; so does :meth:`wait`.
    Not a daemon thread: an exiting process finishes the write. :func:`clean_stale` waits for every write."""

    def __init__(self):
        self._thread, self._error = None, None

    def _run(self, job) -> None:
        try:
            job()
        except BaseException as err:  # noqa: BLE001 - raised in the training thread by wait()
            self._error = err
        finally:
            _WRITES.discard(threading.current_thread())

    def submit(self, job) -> None:
        """Wait for the previous write (raising its error), then run ``job()`` in a new thread."""
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(job,), name="seglib-checkpoint-write")
        _WRITES.add(self._thread)
        self._thread.start()

    def wait(self) -> None:
        """Wait for the write in flight; raise its error (e.g. :class:`StorageError`) once."""
        if self._thread is not None:
            self._thread.join()
        self._thread, err, self._error = None, self._error, None
        if err is not None:
            raise err


def previous_path(path: Path) -> Path:
    """``last.pt`` -> ``last.prev.pt``."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def clean_stale(folder: Path, recursive: bool = False) -> list[Path]:
    """Delete ``*.tmp-<pid>`` files left by interrupted writes or copies in ``folder`` (and its subfolders with
    ``recursive``), after waiting for this process's :class:`BackgroundWrite` threads; returns what was removed."""
    for t in list(_WRITES):  # a checkpoint write of this process in flight: its temporary file is not stale
        t.join()
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in list(folder.rglob("*") if recursive else folder.iterdir()):
        if TMP_MARK in p.name and p.is_file():
            try:
                p.unlink(missing_ok=True)
            except OSError:  # a read-only WORKDIR: left for the next start
                continue
            removed.append(p)
    return removed


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
    stand-in for Drive (``benchmarks/checkpoint.py``); unset or 0: full speed."""
    return float(os.environ.get("SEGLIB_TEST_DRIVE_MBPS") or 0)


def _copy_open_file(src, tmp: Path, size: int, mbps: float) -> None:
    """Copy the first ``size`` bytes of the open binary file ``src`` to ``tmp`` in 1 MiB chunks (a file that
    grows meanwhile, as a TensorBoard event file, is copied as it was when opened; the rest goes with the next
    copy), at most ``mbps`` MB/s when ``mbps > 0``; flushed and ``fsync``-ed."""
    t0, done = time.monotonic(), 0
    with open(tmp, "wb") as out:
        while done < size and (chunk := src.read(min(1 << 20, size - done))):
            out.write(chunk)
            done += len(chunk)
            if done >= size // 2 > done - len(chunk):
                out.flush()
                faults.point("mirror.mid_copy")
            if mbps > 0:
                time.sleep(max(0.0, done / (mbps * 1e6) - (time.monotonic() - t0)))
        out.flush()
        os.fsync(out.fileno())


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return a.st_size == b.st_size and int(a.st_mtime) == int(b.st_mtime)


def _makedirs_inside(root: Path, folder: Path) -> None:
    """Create ``folder`` and its parents below ``root``, never ``root`` itself (a vanished Drive mount point
    must not reappear as a local folder): FileNotFoundError when ``root`` is gone."""
    cur = root
    for part in folder.relative_to(root).parts:
        cur = cur / part
        with contextlib.suppress(FileExistsError):
            cur.mkdir()


def mirror(src_root: Path, dst_root: Path, relpaths: list[str]) -> None:
    """Copy files or folders ``relpaths`` from ``src_root`` to ``dst_root`` (e.g. local disk -> Drive).

    Every source file is opened first, then copied in the order of ``relpaths`` from that open file: a
    checkpoint replaced meanwhile by a newer one is still copied whole, and with ``relpaths`` ordered
    TensorBoard, history, ``last.prev.pt``, ``last.pt``, ``best.pt`` (:data:`seglib.train.state.MIRRORED`)
    the copied TensorBoard files hold at least the epochs of the copied ``last.pt``, whenever the copy is
    cut off. Each file goes to a temporary name beside the target, is size-checked, ``fsync``-ed and renamed
    into place: the target is never half-written and a failed copy never replaces a good file. Unchanged files
    (same size and mtime) are skipped; the copy keeps the source's mtime. A ``<stem>.prev<suffix>`` whose
    content is the target's current ``<stem><suffix>`` (same size and mtime) is renamed there, not copied.
    Only folders below ``dst_root`` are created.

    Raises:
        FileNotFoundError: ``dst_root`` does not exist (Drive unmounted); nothing is created.
        OSError: a copy whose size differs from the source (Drive full or disconnected), or any I/O error
            (the temporary file is removed; the target keeps its previous content).
    """
    src_root, dst_root = Path(src_root), Path(dst_root)
    if not dst_root.is_dir():
        raise FileNotFoundError(2, f"{dst_root} no longer exists", str(dst_root))
    if src_root.resolve() == dst_root.resolve():
        return
    files: list[Path] = []
    for rel in relpaths:
        p = src_root / rel
        if p.is_dir():
            files.extend(sorted(q for q in p.rglob("*") if q.is_file() and TMP_MARK not in q.name))
        elif p.is_file():
            files.append(p)
    opened = []
    try:
        for f in files:
            try:
                opened.append((f, open(f, "rb")))
            except FileNotFoundError:  # removed meanwhile (a TensorBoard file rotated): nothing to copy
                continue
        mbps = copy_throttle()
        for f, src in opened:
            _copy_one(src, f, dst_root / f.relative_to(src_root), dst_root, mbps)
    finally:
        for _, src in opened:
            src.close()


def _copy_one(src, f: Path, dst: Path, dst_root: Path, mbps: float) -> None:
    st = os.fstat(src.fileno())
    if dst.exists() and _same(dst.stat(), st):
        return
    _makedirs_inside(dst_root, dst.parent)
    current = dst.with_name(dst.name.replace(".prev.", ".", 1))
    if current != dst and current.exists() and _same(current.stat(), st):
        os.replace(current, dst)  # last.pt of the previous copy is this last.prev.pt: no second upload
        return
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

    Raises:
        StorageError: disk full or read-only folder (the partial file is deleted; ``path`` is unchanged).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")
    text = json.dumps(json_safe(obj, strict), indent=indent, allow_nan=not strict)
    try:
        tmp.write_text(text)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise storage_error(err, path, len(text.encode())) from err
    os.replace(tmp, path)
    return path


def resume_message(path, epoch: int, batch: int, n_batches: int, lr: float, best: dict) -> str:
    """The line printed on resume: ``epoch`` epochs done, ``batch`` of ``n_batches`` batches of the next
    one done, the current ``lr`` and ``best`` (``{"monitor", "value", "epoch"}``, value None if none yet)."""
    msg = f"resumed from {path}: epoch {epoch + 1}, batch {batch}/{n_batches} ({epoch} epochs done), LR {lr:.3g}"
    if best.get("value") is not None:
        msg += f", best {best['monitor']} {best['value']:.4f} (epoch {best['epoch']})"
    return msg
