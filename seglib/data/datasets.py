"""PyTorch datasets and loaders whose output depends only on (seed, epoch, sample index).

Items are requested with keys ``(epoch, index)`` produced by :class:`EpochSampler`; the image size
comes from the resize schedule for that epoch and the augmentation from
:func:`seglib.data.transforms.sample_rng`. Workers can therefore be persistent and a resumed run
replays exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .io import DataError, check_pair_size, read_image, read_mask
from .layouts import Sample
from .transforms import apply, build_transform


class SegmentationDataset(Dataset):
    """Images and class-id masks for semantic segmentation.

    Args:
        samples: from a layout; a sample without a mask yields no ``"target"``.
        n_classes: number of classes C (mask ids ``0..C-1``).
        size: ``epoch -> side length`` (see :func:`seglib.data.transforms.size_fn`) or a fixed int.
        augment: augmentation name (``"none"`` for val/test).
        seed: base seed of the augmentation randomness.
        ignore_index: void label kept in targets (excluded by losses and metrics), or None.

    Items (for key ``(epoch, index)`` or a plain ``index``, epoch 1):
        ``{"input": float32 3 x S x S (normalised RGB), "target": int64 S x S class ids, "index": int}``

    Raises:
        DataError: (on access) unreadable files, an image/mask size mismatch, mask values >= C.
    """

    def __init__(self, samples: Sequence[Sample], n_classes: int, size: Callable[[int], int] | int,
                 augment: str = "none", seed: int = 0, ignore_index: int | None = None):
        if not samples:
            raise DataError("dataset has no samples; check the split is not empty")
        self.samples = list(samples)
        self.n_classes = n_classes
        self.size = size if callable(size) else (lambda _e, s=int(size): s)
        self.augment = augment
        self.seed = seed
        self.ignore_index = ignore_index
        self._transforms: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def transform(self, size: int):
        """The (cached) albumentations pipeline for one size."""
        if size not in self._transforms:
            self._transforms[size] = build_transform(size, self.augment)
        return self._transforms[size]

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Decoded ``(uint8 H x W x 3 image, H x W mask or None)`` at original resolution, checked."""
        s = self.samples[index]
        image = read_image(s.image)
        if s.mask is None:
            return image, None
        mask = read_mask(s.mask, self.n_classes, self.ignore_index)
        if mask.shape != image.shape[:2]:
            check_pair_size(s.image, s.mask)
        return image, mask

    def __getitem__(self, key) -> dict:
        epoch, index = key if isinstance(key, tuple) else (1, key)
        image, mask = self.load(index)
        data = {"image": image} if mask is None else {"image": image, "mask": mask}
        out = apply(self.transform(self.size(epoch)), self.seed, epoch, index, **data)
        item = {"input": out["image"], "index": index}
        if mask is not None:
            item["target"] = out["mask"].long()
        return item


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` keys: a permutation that is a pure function of ``(seed, epoch)``.

    Call :meth:`set_epoch` before iterating; ``start_batch`` skips the batches already trained (mid-
    epoch resume).

    Args:
        n: dataset length.
        batch_size: used to convert ``start_batch`` into a sample offset.
        seed: shuffling seed.
        shuffle: False keeps index order (validation).
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, shuffle: bool = True):
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.epoch, self.start_batch = 1, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch (1-based) and the first batch to yield."""
        self.epoch, self.start_batch = epoch, start_batch

    def order(self, epoch: int) -> np.ndarray:
        """Sample indices of ``epoch`` in training order."""
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, epoch, 7]).permutation(self.n)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in self.order(self.epoch)[self.start_batch * self.batch_size:]:
            yield (self.epoch, int(i))

    def __len__(self) -> int:
        return max(0, self.n - self.start_batch * self.batch_size)


def _worker_init(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int, num_workers: int,
                pin_memory: bool = False) -> DataLoader:
    """A DataLoader over ``dataset`` driven by an :class:`EpochSampler` (reach it as ``loader.sampler``).

    Workers are persistent; the loader has its own seeded generator, so iterating it never consumes the
    global torch RNG (which the checkpoint saves).
    """
    sampler = EpochSampler(len(dataset), batch_size, seed, shuffle)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        worker_init_fn=_worker_init if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
        drop_last=False,
    )
