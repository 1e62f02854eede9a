"""A cache of the pipeline's deterministic first step: samples decoded and resized once, not every epoch.

Every pipeline of :func:`seglib.data.transforms.build_transform` starts with ``A.Resize`` (INTER_AREA for
images, nearest for masks), a pure function of the file and the side length. :class:`ResizedCache` keeps
its output per ``(side length, sample index)``, so an epoch runs only the random part (augmentation and
normalisation) on arrays already in memory. Decoding is about 90 % of the loader's cost on two vCPUs
(``benchmarks/loader.py``); items are bit-identical to the uncached pipeline (``tests/test_cache.py``).

Modes (``TrainConfig.cache``, the notebooks' ``CACHE``):

* ``"ram"`` -- one shared-memory array per side length and target (``torch`` shared memory), allocated in
  the main process when the dataset is built and filled lazily by whichever process decodes a sample first:
  DataLoader workers (fork, forkserver or spawn) write into the same pages, so a sample is held once
  whatever the number of workers. The bytes are bounded by :func:`ram_budget`; asking for more raises.
* ``"disk"`` -- one uncompressed ``.npz`` (a ``.npy`` per target) per sample and side length in a fast
  local folder (``<workspace.local>/cache/resized``), written atomically, named by a digest of the source
  files' paths, sizes and modification times, the decoding settings, the resize operation and the
  OpenCV/albumentations versions: a changed file, size or mask setting never meets a stale entry.
* ``"auto"`` (default) -- RAM when the samples at every side length the run uses fit the budget, else
  disk with a one-line message saying why.
* ``"none"`` -- decode every time.

A miss decodes the sample once and resizes it to every side length of the run (a progressive-resize
schedule then decodes each file once, not once per stage).
"""

from __future__ import annotations

import gc
import hashlib
import os
import shutil
import weakref
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

CACHE_MODES = ("auto", "ram", "disk", "none")
"""Valid values of ``TrainConfig.cache``."""
RAM_CAP = 4 * 2**30
"""Upper bound of the RAM cache [bytes] whatever the machine has (4 GiB)."""
RAM_FRACTION = 0.3
"""Share of the available memory (and half of the free ``/dev/shm``) the RAM cache may take."""



class CacheSource(Protocol):
    """What a dataset gives :class:`ResizedCache` (see :class:`seglib.data.datasets.EpochDataset`)."""

    def __len__(self) -> int: ...

    def decode(self, index: int) -> dict[str, np.ndarray]:
        """Sample ``index`` at original resolution, keyed by albumentations target name."""

    def resize(self, size: int, data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``data`` through the pipeline's first (deterministic) step at side length ``size``."""

    def cache_key(self, size: int, index: int) -> str:
        """A digest that changes whenever the resized arrays of ``(size, index)`` could."""


def available_memory() -> int | None:
    """Memory available to new allocations [bytes]: ``psutil.virtual_memory().available`` when psutil is
    installed, else ``MemAvailable`` of ``/proc/meminfo``; None when neither can be read."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def ram_budget() -> int:
    """Default RAM cache budget [bytes] for the whole process: ``min(4 GiB, 30 % of available memory, 50 %
    of the free /dev/shm)``; the shared-memory term applies only where ``/dev/shm`` exists (Linux), the
    memory term only where it can be read (:func:`available_memory`)."""
    budget = RAM_CAP
    avail = available_memory()
    if avail is not None:
        budget = min(budget, int(RAM_FRACTION * avail))
    if os.path.isdir("/dev/shm"):
        budget = min(budget, shutil.disk_usage("/dev/shm").free // 2)
    return max(0, budget)


def gb(n: float) -> str:
    """Bytes in decimal units with one decimal: ``"5.1 GB"``, or ``"83.2 MB"`` under 0.1 GB."""
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def run_sizes(img_size: int, schedule: dict | None = None, epochs: int | None = None) -> tuple[int, ...]:
    """The side lengths [px] a run uses: ``img_size`` alone, or every stage of a progressive-resize
    ``schedule`` (``{first epoch: size}``, :func:`seglib.data.transforms.size_for_epoch`) that starts
    within ``epochs`` (None: all), plus ``img_size`` when the first stage starts after epoch 1. Sorted."""
    from .transforms import size_for_epoch

    starts = {1} | {int(k) for k in (schedule or {}) if epochs is None or int(k) <= int(epochs)}
    return tuple(sorted({size_for_epoch(e, img_size, schedule) for e in starts if e >= 1}))


def cache_folder(local: str | os.PathLike) -> Path:
    """The disk cache folder of a run whose fast local folder (``Workspace.local``) is ``local``:
    ``<local>/cache/resized`` (entries are named by content digests, so runs and splits can share it)."""
    return Path(local) / "cache" / "resized"


def file_key(paths: Iterable[str | os.PathLike | None], *parts) -> str:
    """SHA-1 (hex) of each file's absolute path, size and modification time [ns] (``None`` entries and
    missing files count as such) and of ``parts`` (decoding settings, the resize op, versions)."""
    h = hashlib.sha1()
    for p in paths:
        if p is None:
            h.update(b"<none>\0")
            continue
        path = os.path.abspath(os.fspath(p))
        try:
            st = os.stat(path)
            h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
        except OSError:
            h.update(f"{path}\0<missing>\0".encode())
    h.update(repr(parts).encode())
    return h.hexdigest()


class RamStore:
    """The shared-memory arrays of one set of samples: per side length and target a ``torch`` tensor
    ``n x ...`` in shared memory, and a ``uint8 n`` "filled" flag per side length.

    Stores are shared by every :class:`ResizedCache` of the same samples, sizes and decoding settings in a
    process (the trainer's and the LR finder's train datasets, the trials of a study): they are looked up
    by a digest of all their disk keys, so a changed file makes a new store.

    Args:
        n: samples; per_size: ``{size: {target: array}}`` of one sample (shapes and dtypes of a slot).
    """

    def __init__(self, n: int, per_size: dict[int, dict[str, np.ndarray]]):
        self.arrays = {s: {k: torch.from_numpy(np.zeros((n, *a.shape), a.dtype)).share_memory_()
                           for k, a in arrays.items()} for s, arrays in per_size.items()}
        self.filled = {s: torch.zeros(n, dtype=torch.uint8).share_memory_() for s in per_size}
        self.nbytes = sum(t.numel() * t.element_size() for d in self.arrays.values() for t in d.values())

    @staticmethod
    def need(n: int, per_size: dict[int, dict[str, np.ndarray]]) -> int:
        """Bytes a store of ``n`` samples shaped like ``per_size`` takes."""
        return n * sum(a.nbytes for arrays in per_size.values() for a in arrays.values())

    def put(self, index: int, per_size: dict[int, dict[str, np.ndarray]]) -> None:
        """Copy one sample in, then mark it filled (a sample whose targets or shapes differ from the slots'
        is not stored and is decoded each time)."""
        for s, arrays in per_size.items():
            slots = self.arrays.get(s)
            if slots is None or arrays.keys() != slots.keys():
                continue
            views = {k: t.numpy()[index] for k, t in slots.items()}
            if any(v.shape != arrays[k].shape or v.dtype != arrays[k].dtype for k, v in views.items()):
                continue
            for k, v in views.items():
                v[...] = arrays[k]
            self.filled[s][index] = 1  # after the data: another process reads a filled slot only when complete

    def get(self, size: int, index: int) -> dict[str, np.ndarray] | None:
        """Copies of the arrays of ``(size, index)``, or None when not filled (yet)."""
        flags = self.filled.get(size)
        if flags is None or not flags.numpy()[index]:
            return None
        return {k: t.numpy()[index].copy() for k, t in self.arrays[size].items()}


_STORES: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # digest -> RamStore alive in this process


class ResizedCache:
    """Resized arrays of ``source``'s samples per ``(side length, index)``, in RAM or on disk (module docstring).

    Args:
        source: the dataset (:class:`CacheSource`: ``__len__``, ``decode``, ``resize``, ``cache_key``).
        sizes: the side lengths [px] the run uses (:func:`run_sizes`); a request at another size is decoded
            and resized without caching.
        mode: one of :data:`CACHE_MODES`.
        folder: the disk cache folder (:func:`cache_folder`); None: no disk cache, so ``"auto"`` decodes
            every time when RAM is not enough and ``"disk"`` raises.
        budget: RAM budget [bytes] of the whole process (all live RAM stores together); default
            :func:`ram_budget`.
        name: what the messages call the data, e.g. ``"train split"``.

    Attributes:
        mode: the mode in use: ``"ram"``, ``"disk"`` or ``"none"``.
        store: the :class:`RamStore` in RAM mode (shared with other caches of the same data), else None.
        nbytes: bytes of the RAM store (0 unless ``mode == "ram"``).
        message: the line printed when ``"auto"`` could not use RAM (None otherwise).
        hits, misses: lookups served from the cache / decoded, in this process.

    Raises:
        ValueError: an unknown mode; ``"ram"`` when the data exceed the budget; ``"disk"`` without a folder.
        DataError: planning the RAM store decodes the first sample.
    """

    def __init__(self, source: CacheSource, sizes: Sequence[int], mode: str = "auto", folder: str | os.PathLike | None = None,
                 budget: int | None = None, name: str = "data"):
        if mode not in CACHE_MODES:
            raise ValueError(f"CACHE must be one of {CACHE_MODES}, got {mode!r}")
        self.source, self.sizes, self.name = source, tuple(sorted({int(s) for s in sizes})), name
        self.folder = Path(folder) if folder is not None else None
        self.message, self.hits, self.misses = None, 0, 0
        self.store: RamStore | None = None
        self.mode = mode
        if mode in ("auto", "ram"):
            self.mode = self._plan_ram(mode, ram_budget() if budget is None else int(budget))
        if self.mode == "disk" and self.folder is None:
            raise ValueError(f"CACHE='disk' needs a cache folder for the {name}; use CACHE='ram' or 'none'")
        if self.mode == "disk":
            self.folder.mkdir(parents=True, exist_ok=True)

    @property
    def nbytes(self) -> int:
        """Bytes of the RAM store (0 outside RAM mode)."""
        return self.store.nbytes if self.store is not None else 0

    # ------------------------------------------------------------------ planning
    def _plan_ram(self, mode: str, budget: int) -> str:
        n = len(self.source)
        digest = hashlib.sha1("".join(self.source.cache_key(s, i) for s in self.sizes for i in range(n)).encode())
        key = digest.hexdigest()
        if (store := _STORES.get(key)) is not None:
            self.store = store
            return "ram"
        first = self.source.decode(0)
        per_size = {s: self.source.resize(s, first) for s in self.sizes}
        need = RamStore.need(n, per_size)
        used = sum(st.nbytes for st in list(_STORES.values()))
        if need > budget - used and used:
            gc.collect()  # datasets and their caches form cycles: count only the stores still in use
            used = sum(st.nbytes for st in list(_STORES.values()))
        px = ", ".join(str(s) for s in self.sizes)
        if need <= budget - used:
            self.store = _STORES[key] = RamStore(n, per_size)
            self.store.put(0, per_size)
            return "ram"
        over = (f"the {self.name} ({n} samples) need {gb(need)} at {px} px > RAM budget {gb(budget)}"
                + (f" ({gb(used)} held by other cached data)" if used else ""))
        if mode == "ram":
            raise ValueError(f"CACHE='ram': {over}; use CACHE='auto' (disk when RAM is short), 'disk' or 'none'")
        if self.folder is None:
            self.message = f"cache: {over}, and no cache folder was given: decoding every time"
            print(self.message, flush=True)
            return "none"
        self.message = (f"cache: {over}: caching resized copies on disk in {self.folder} instead; "
                        "CACHE='none' decodes every time")
        print(self.message, flush=True)
        return "disk"

    # ------------------------------------------------------------------ lookups
    def get(self, size: int, index: int) -> dict[str, np.ndarray]:
        """The resized arrays of sample ``index`` at side length ``size`` (fresh copies: the caller may
        change them), from the cache or decoded now (and then cached at every size of the run)."""
        if self.mode == "ram" and (got := self.store.get(size, index)) is not None:
            self.hits += 1
            return got
        if self.mode == "disk" and size in self.sizes:
            got = self._read(size, index)
            if got is not None:
                self.hits += 1
                return got
        self.misses += 1
        data = self.source.decode(index)
        if self.mode == "none" or size not in self.sizes:
            return self.source.resize(size, data)
        per_size = {s: self.source.resize(s, data) for s in self.sizes}
        if self.mode == "ram":
            self.store.put(index, per_size)
        else:
            for s, arrays in per_size.items():
                self._write(s, index, arrays)
        return per_size[size]

    def path(self, size: int, index: int) -> Path:
        """The disk entry of ``(size, index)``: ``<folder>/<size>px/<cache_key>.npz``."""
        return self.folder / f"{size}px" / f"{self.source.cache_key(size, index)}.npz"

    def _read(self, size: int, index: int) -> dict[str, np.ndarray] | None:
        try:
            with np.load(self.path(size, index), allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # torn by a foreign writer: decode again
            return None

    def _write(self, size: int, index: int, arrays: dict[str, np.ndarray]) -> None:
        path = self.path(size, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        except OSError as err:  # a full or read-only disk costs speed, never the run
            tmp.unlink(missing_ok=True)
            if self.message is None:
                self.message = f"cache: could not write {path} ({err}); decoding those samples every time"
                print(self.message, flush=True)

    def filled(self, size: int) -> int:
        """Samples held in RAM at side length ``size`` (shared across processes; 0 outside RAM mode)."""
        return int(self.store.filled[size].sum()) if self.store is not None and size in self.store.filled else 0

    def __repr__(self) -> str:
        where = {"ram": f"RAM, {gb(self.nbytes)}", "disk": f"disk, {self.folder}", "none": "off"}[self.mode]
        return f"ResizedCache({self.name}, sizes {list(self.sizes)} px, {where})"
