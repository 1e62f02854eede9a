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

from .checks import check_sizes
from .io import DataError, read_image, read_mask
from .layouts import Sample
from .transforms import apply, build_transform


class EpochDataset(Dataset):
    """Base of the datasets keyed by ``(epoch, index)``: the image side length comes from ``size(epoch)`` and
    the augmentation randomness from ``(seed, epoch, index)`` (:func:`seglib.data.transforms.apply`).

    A subclass sets :attr:`extra_targets` (albumentations ``additional_targets`` of its pipelines) and
    implements :meth:`item`.

    Args:
        samples: the split's samples (any sample type).
        size: ``epoch -> side length`` [px] (see :func:`seglib.data.transforms.size_fn`) or a fixed int.
        augment: augmentation name in :data:`seglib.data.transforms.AUGMENTATIONS` (``"none"`` for val/test).
        seed: base seed of the augmentation randomness.

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
        self._transforms: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def transform(self, size: int):
        """The (cached) albumentations pipeline for one side length [px]."""
        if size not in self._transforms:
            self._transforms[size] = build_transform(size, self.augment, additional_targets=self.extra_targets)
        return self._transforms[size]

    def augmented(self, epoch: int, index: int, **data) -> dict:
        """``data`` (original-resolution arrays) through the pipeline of ``epoch``'s size with the randomness
        of ``(seed, epoch, index)``."""
        return apply(self.transform(self.size(epoch)), self.seed, epoch, index, **data)

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

    def item(self, epoch: int, index: int) -> dict:
        """See the class docstring."""
        image, mask = self.load(index)
        out = self.augmented(epoch, index, **({"image": image} if mask is None else {"image": image, "mask": mask}))
        item = {"input": out["image"], "index": index}
        if mask is not None:
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
