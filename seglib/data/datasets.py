"""PyTorch datasets and loaders whose output depends only on (seed, epoch, sample index).

Items are requested with keys ``(epoch, index)`` produced by :class:`EpochSampler`; the image size
comes from the resize schedule for that epoch and the augmentation from
:func:`seglib.data.transforms.sample_rng`. Workers can therefore be persistent and a resumed run
replays exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..runtime import default_num_workers
from .cache import ResizedCache, file_key
from .checks import check_sizes
from .io import DataError, read_image, read_mask
from .layouts import Sample
from .transforms import apply, build_transform


class EpochDataset(Dataset):
    """Base of the datasets keyed by ``(epoch, index)``: the image side length comes from ``size(epoch)`` and
    the augmentation randomness from ``(seed, epoch, index)`` (:func:`seglib.data.transforms.apply`).

    The pipeline of :func:`~seglib.data.transforms.build_transform` runs in two stages: its first step, the
    deterministic ``A.Resize``, on the decoded sample (:meth:`resized`, served by a
    :class:`~seglib.data.cache.ResizedCache` after :meth:`use_cache`), then the rest -- augmentation and
    normalisation -- with the sample's generators (:meth:`augmented`). The split changes no bit of any item.

    A subclass sets :attr:`extra_targets` (albumentations ``additional_targets`` of its pipelines) and
    implements :meth:`decode`, :meth:`source_files`, :meth:`decode_settings` and :meth:`item`.

    Args:
        samples: the split's samples (any sample type).
        size: ``epoch -> side length`` [px] (see :func:`seglib.data.transforms.size_fn`) or a fixed int.
        augment: augmentation name in :data:`seglib.data.transforms.AUGMENTATIONS` (``"none"`` for val/test).
        seed: base seed of the augmentation randomness.

    Attributes:
        cache: the :class:`~seglib.data.cache.ResizedCache` in use, or None (decode every time).

    Keys: ``(epoch, index)`` from :class:`EpochSampler`, or a plain ``index`` meaning epoch 1.

    Raises:
        DataError: no samples.
    """

    extra_targets: dict[str, str] | None = None

    def __init__(self, samples: Sequence, size: Callable[[int], int] | int, augment: str = "none", seed: int = 0):
        if not samples:
            raise DataError("dataset has no samples; check the split is not empty")
        self.samples = list(samples)
        self.size = size if callable(size) else (lambda _e, s=int(size): s)
        self.augment, self.seed = augment, seed
        self._stages: dict[int, tuple] = {}
        self.cache: ResizedCache | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def stages(self, size: int) -> tuple[A.Resize, A.Compose]:
        """``(resize, rest)``: the pipeline of :func:`~seglib.data.transforms.build_transform` for one side
        length [px] split after its first step (cached per size). Both share the pipeline's targets."""
        if size not in self._stages:
            full = build_transform(size, self.augment, additional_targets=self.extra_targets)
            first = full.transforms[0]
            if not isinstance(first, A.Resize):
                raise TypeError(f"build_transform must start with A.Resize to be cached, starts with {first!r}")
            rest = A.Compose(list(full.transforms)[1:], additional_targets=self.extra_targets or {}, seed=0)
            self._stages[size] = (first, rest)
        return self._stages[size]

    def decode(self, index: int) -> dict[str, np.ndarray]:
        """Sample ``index`` decoded at original resolution, keyed by pipeline target (``"image"``, ``"mask"``, ...)."""
        raise NotImplementedError

    def source_files(self, index: int) -> list:
        """The files sample ``index`` is decoded from (their paths, sizes and times key the disk cache)."""
        raise NotImplementedError

    def decode_settings(self, index: int) -> tuple:
        """The settings :meth:`decode` of sample ``index`` depends on besides the files (key the disk cache)."""
        return ()

    def resize(self, size: int, data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``data`` through the pipeline's first step, ``A.Resize`` to ``size`` x ``size``."""
        return self.stages(size)[0](**data)

    def cache_key(self, size: int, index: int) -> str:
        """Digest of what the resized arrays of ``(size, index)`` depend on: the source files (path, size,
        modification time), this class and its :meth:`decode_settings`, the resize op and the OpenCV and
        albumentations versions (:func:`seglib.data.cache.file_key`)."""
        return file_key(self.source_files(index), type(self).__name__, self.decode_settings(index),
                        repr(self.stages(size)[0]), cv2.__version__, A.__version__)

    def use_cache(self, mode: str = "auto", folder=None, sizes: Sequence[int] | None = None,
                  budget: int | None = None, name: str | None = None) -> EpochDataset:
        """Serve :meth:`resized` from a :class:`~seglib.data.cache.ResizedCache`; returns ``self``.

        Args:
            mode: ``"auto"``, ``"ram"``, ``"disk"`` or ``"none"`` (:data:`~seglib.data.cache.CACHE_MODES`).
            folder: the disk cache folder (:func:`~seglib.data.cache.cache_folder` of the run's fast local
                folder); None: no disk cache.
            sizes: the side lengths [px] the run uses (:func:`~seglib.data.cache.run_sizes`); default the
                size of epoch 1.
            budget: RAM budget [bytes]; default :func:`~seglib.data.cache.ram_budget`.
            name: what messages call this data (default ``"<n> samples"``).

        Raises:
            ValueError: see :class:`~seglib.data.cache.ResizedCache`.
            DataError: the first sample cannot be decoded (RAM planning decodes it).
        """
        self.cache = ResizedCache(self, sizes or (self.size(1),), mode, folder, budget, name or f"{len(self)} samples")
        return self

    def resized(self, size: int, index: int) -> dict[str, np.ndarray]:
        """Sample ``index`` decoded and resized to ``size`` (from the cache when one is in use)."""
        if self.cache is not None:
            return self.cache.get(size, index)
        return self.resize(size, self.decode(index))

    def augmented(self, epoch: int, index: int) -> dict:
        """Sample ``index`` through the whole pipeline of ``epoch``'s size with the randomness of
        ``(seed, epoch, index)``: :meth:`resized`, then the rest of :meth:`stages`."""
        size = self.size(epoch)
        return apply(self.stages(size)[1], self.seed, epoch, index, **self.resized(size, index))

    def item(self, epoch: int, index: int) -> dict:
        """The item ``{"input", "target" (when labelled), "index"}`` of sample ``index`` in ``epoch``."""
        raise NotImplementedError

    def __getitem__(self, key) -> dict:
        epoch, index = key if isinstance(key, tuple) else (1, key)
        return self.item(epoch, index)


class SegmentationDataset(EpochDataset):
    """Images and class-id masks for semantic segmentation.

    Args:
        samples: from a layout; a sample without a mask yields no ``"target"``.
        n_classes: number of classes C (mask ids ``0..C-1``).
        size, augment, seed: see :class:`EpochDataset`.
        ignore_index: void label kept in targets (excluded by losses and metrics), or None.
        mask_threshold: ``MASK_THRESHOLD``, the explicit binarisation of grey masks (class 1 where value >=
            it; needs ``n_classes=2``), or None; mask_scale: ``MASK_SCALE``, stored values are class ids times
            it (e.g. 5000 in 16-bit masks), or None (1). See :func:`seglib.data.io.read_mask`.

    Items (for key ``(epoch, index)`` or a plain ``index``, epoch 1):
        ``{"input": float32 3 x S x S (normalised RGB), "target": int64 S x S class ids, "index": int}``

    Raises:
        DataError: no samples; on access, unreadable files, an image/mask size mismatch, mask values >= C.
    """

    def __init__(self, samples: Sequence[Sample], n_classes: int, size: Callable[[int], int] | int,
                 augment: str = "none", seed: int = 0, ignore_index: int | None = None,
                 mask_threshold: int | None = None, mask_scale: int | None = None):
        super().__init__(samples, size, augment, seed)
        self.n_classes, self.ignore_index = n_classes, ignore_index
        self.mask_threshold, self.mask_scale = mask_threshold, mask_scale

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Decoded ``(uint8 H x W x 3 image, H x W mask or None)`` at original resolution, checked."""
        s = self.samples[index]
        image = read_image(s.image)
        if s.mask is None:
            return image, None
        mask = read_mask(s.mask, self.n_classes, self.ignore_index, self.mask_threshold, self.mask_scale or 1)
        if mask.shape != image.shape[:2]:
            check_sizes(s)
        return image, mask

    def decode(self, index: int) -> dict[str, np.ndarray]:
        """``{"image"}`` or ``{"image", "mask"}`` of :meth:`load`."""
        image, mask = self.load(index)
        return {"image": image} if mask is None else {"image": image, "mask": mask}

    def source_files(self, index: int) -> list:
        """Image and mask (None when unlabelled) of sample ``index``."""
        return [self.samples[index].image, self.samples[index].mask]

    def decode_settings(self, index: int) -> tuple:
        """``(n_classes, ignore_index, mask_threshold, mask_scale)``: what :meth:`load` reads masks with."""
        return self.n_classes, self.ignore_index, self.mask_threshold, self.mask_scale

    def item(self, epoch: int, index: int) -> dict:
        """See the class docstring."""
        out = self.augmented(epoch, index)
        item = {"input": out["image"], "index": index}
        if "mask" in out:
            item["target"] = out["mask"].long()
        return item


class BinaryDataset(SegmentationDataset):
    """Binary segmentation: a :class:`SegmentationDataset` with 2 classes ({0, 255} masks read as {0, 1})
    whose target is optionally inverted.

    Args:
        samples, size, augment, seed: see :class:`EpochDataset`.
        invert: the target is ``1 - target`` (ISBI 2012: the membrane, stored as 0, becomes the positive class).

    Items: ``{"input": float32 3 x S x S, "target": int64 S x S in {0, 1}, "index": int}``.
    """

    def __init__(self, samples: Sequence[Sample], size: Callable[[int], int] | int, augment: str = "none",
                 seed: int = 0, invert: bool = False):
        super().__init__(samples, 2, size, augment, seed)
        self.invert = bool(invert)

    def item(self, epoch: int, index: int) -> dict:
        """See the class docstring."""
        item = super().item(epoch, index)
        if self.invert and "target" in item:
            item["target"] = 1 - item["target"]
        return item


class EpochSampler(Sampler):
    """Yields the ``(epoch, index)`` keys of an :class:`EpochDataset`: a permutation that is a pure function
    of ``(seed, epoch)``.

    Call :meth:`set_epoch` before iterating; ``start_batch`` skips the batches already trained (mid-
    epoch resume). With ``world_size`` > 1 (data-parallel training, :mod:`seglib.train.distributed`) every global
    batch of ``batch_size`` consecutive samples of the permutation is split into ``world_size`` consecutive parts
    (``numpy.array_split``) and rank ``rank`` yields its part, so the N processes together train the same batches as
    one process; a last, short batch with fewer samples than processes gives a rank without a sample its batch's
    sample ``rank % len`` again (every rank must take a step).

    Args:
        n: dataset length.
        batch_size: the global batch: converts ``start_batch`` into a sample offset.
        seed: shuffling seed.
        shuffle: False keeps index order (validation).
        rank, world_size: this process's share of each batch.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1):
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start_batch = 1, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch (1-based) and the first (global) batch to yield."""
        self.epoch, self.start_batch = epoch, start_batch

    def order(self, epoch: int) -> np.ndarray:
        """Sample indices of ``epoch`` in training order (all ranks)."""
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, epoch, 7]).permutation(self.n)

    def _indices(self) -> np.ndarray:
        rows = self.order(self.epoch)[self.start_batch * self.batch_size:]
        if self.world_size == 1:
            return rows
        parts = []
        for k in range(0, len(rows), self.batch_size):
            batch = rows[k:k + self.batch_size]
            part = np.array_split(batch, self.world_size)[self.rank]
            parts.append(part if len(part) else batch[[self.rank % len(batch)]])
        return np.concatenate(parts) if parts else rows[:0]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in self._indices():
            yield (self.epoch, int(i))

    def __len__(self) -> int:
        return len(self._indices()) if self.world_size > 1 else max(0, self.n - self.start_batch * self.batch_size)


def _worker_init(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)


def is_cached(dataset: Dataset) -> bool:
    """True when ``dataset`` serves resized samples from a RAM or disk :class:`~seglib.data.cache.ResizedCache`."""
    cache = getattr(dataset, "cache", None)
    return cache is not None and cache.mode != "none"


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int, num_workers: int | None = None,
                cuda: bool = False, pin_memory: bool | None = None, rank: int = 0, world_size: int = 1) -> DataLoader:
    """A DataLoader over ``dataset`` driven by an :class:`EpochSampler` (reach it as ``loader.sampler``).

    The loader has its own seeded generator, so iterating it never consumes the global torch RNG (which
    the checkpoint saves); items depend only on ``(seed, epoch, index)``, so any number of workers gives
    the same batches.

    Args:
        dataset: an :class:`EpochDataset` (or any dataset taking ``(epoch, index)`` keys).
        batch_size: samples per batch; the last batch may be smaller.
        shuffle: a permutation per epoch (training) or index order (validation).
        seed: seed of the permutation.
        num_workers: DataLoader worker processes; None: :func:`seglib.runtime.default_num_workers` for the
            device and whether ``dataset`` is cached (:func:`is_cached`).
        cuda: the batches go to a CUDA device.
        pin_memory: page-locked batches for faster, asynchronous host-to-GPU copies; None: on CUDA only.
        rank, world_size: data-parallel training: this process yields its ``batch_size / world_size`` share of every
            global batch of ``batch_size`` (:class:`EpochSampler`); ``batch_size`` must be divisible by ``world_size``.

    Workers are persistent: started once, not at every epoch, and keeping the RAM cache they share mapped.
    Pinned memory lets the trainer's ``non_blocking`` host-to-GPU copies overlap the step.
    """
    workers = default_num_workers(cuda, cached=is_cached(dataset)) if num_workers is None else int(num_workers)
    if batch_size % world_size:
        raise ValueError(f"batch size {batch_size} is not divisible by {world_size} processes")
    sampler = EpochSampler(len(dataset), batch_size, seed, shuffle, rank, world_size)
    return DataLoader(
        dataset,
        batch_size=batch_size // world_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=cuda if pin_memory is None else bool(pin_memory),
        persistent_workers=workers > 0,
        worker_init_fn=_worker_init if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
        drop_last=False,
    )
