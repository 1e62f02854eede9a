"""Tensor helpers shared by the trainer, the engines, losses, metrics and inspection.

Everything here is a pure function of its arguments; none of it knows about data layouts, models or
training. A batch is a tensor or a (nested) dict/list/tuple of tensors with the sample axis first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_device(x, device: torch.device | str, channels_last: bool = False):
    """Move a tensor, or a dict/list/tuple of tensors, to ``device`` (non-blocking copies).

    Args:
        x: a tensor or a nested container of tensors; anything else is returned unchanged.
        device: the target device.
        channels_last: also put 4-D floating tensors (``N x C x H x W`` images) in channels_last memory
            format (a speed-up for convolutions under CUDA AMP).

    Returns:
        The same structure on ``device``; dtypes unchanged.
    """
    if isinstance(x, torch.Tensor):
        x = x.to(device, non_blocking=True)
        if channels_last and x.dim() == 4 and x.is_floating_point():
            x = x.contiguous(memory_format=torch.channels_last)
        return x
    if isinstance(x, dict):
        return {k: to_device(v, device, channels_last) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(to_device(v, device, channels_last) for v in x)
    return x


def batch_size(x) -> int:
    """Number of samples (size of the first axis) of a tensor or of the first tensor of a nested batch."""
    if isinstance(x, torch.Tensor):
        return x.shape[0]
    return batch_size(next(iter(x.values())) if isinstance(x, dict) else x[0])


def select_rows(x, rows: list[int]):
    """Rows ``rows`` (sample indices) of a (nested) batch, detached on the CPU.

    Floating tensors come back as ``float32`` (AMP outputs are float16 on CUDA), integer tensors keep
    their dtype.
    """
    if isinstance(x, torch.Tensor):
        x = x[rows].detach().cpu()
        return x.float() if x.is_floating_point() else x
    if isinstance(x, dict):
        return {k: select_rows(v, rows) for k, v in x.items()}
    return type(x)(select_rows(v, rows) for v in x)


def concat_rows(a, b):
    """``b`` appended to ``a`` along the sample axis (nested batches of equal structure); ``a`` may be None."""
    if a is None:
        return b
    if isinstance(a, torch.Tensor):
        return torch.cat([a, b])
    if isinstance(a, dict):
        return {k: concat_rows(a[k], b[k]) for k in a}
    return type(a)(concat_rows(x, y) for x, y in zip(a, b))


def one_hot(target: torch.Tensor, n_classes: int, ignore_index: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot encode class ids and build the valid-pixel mask.

    Args:
        target: ``int64 N x H x W`` class ids in ``0..C-1`` or ``ignore_index``.
        n_classes: C.
        ignore_index: label excluded from losses and metrics, or None.

    Returns:
        ``(onehot float32 N x C x H x W, valid float32 N x 1 x H x W)``; ignored pixels are all-zero in
        ``onehot`` and 0 in ``valid``.

    Raises:
        RuntimeError: (from ``F.one_hot``) a value outside ``0..C-1`` that is not ``ignore_index``; datasets
            check masks on load, so this is not re-checked here (no host synchronisation per step).
    """
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    t = torch.where(valid, target, torch.zeros_like(target))
    onehot = F.one_hot(t, n_classes).permute(0, 3, 1, 2).float()
    valid = valid.unsqueeze(1).float()
    return onehot * valid, valid


def binary_target(target: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A ``N x 1 x H x W`` target in {0, 1} shaped like ``like`` (the logits), in the dtype of ``like``.

    Args:
        target: ``int N x H x W`` class ids in {0, 1}, or any ``N x 1 x H x W`` tensor with values in {0, 1}.
        like: the binary logits, ``float N x 1 x H x W``.

    Raises:
        ValueError: ``like`` is not ``N x 1 x H x W`` (build the model with ``classes=1``), or the target's
            shape does not match (the message gives both shapes).
    """
    if like.dim() != 4 or like.shape[1] != 1:
        raise ValueError(f"binary losses and metrics need logits of shape N x 1 x H x W (one logit per pixel), got "
                         f"{tuple(like.shape)}; build the model with classes=1")
    t = target.unsqueeze(1) if target.dim() == 3 else target
    if t.shape != like.shape:
        raise ValueError(f"target shape {tuple(target.shape)} does not match logits {tuple(like.shape)}; "
                         "expected N x H x W or N x 1 x H x W")
    return t.to(like.dtype)


def valid_samples(target, ignore_index: int | None = None) -> torch.Tensor:
    """The weight of a batch in an epoch mean of per-batch losses: its number of samples that have at least
    one pixel not equal to ``ignore_index`` (all samples when ``ignore_index`` is None or the target is not
    a class-id tensor, e.g. the depth model's dict target).

    A batch whose every pixel is ignored has weight 0, so it leaves the epoch mean unchanged (its loss is 0).

    Args:
        target: ``int64 N x H x W`` class ids, or a nested batch.

    Returns:
        A 0-dim ``float64`` tensor on the target's device (no host synchronisation).
    """
    if ignore_index is None or not isinstance(target, torch.Tensor) or target.is_floating_point():
        t = target if isinstance(target, torch.Tensor) else None
        return torch.tensor(float(batch_size(target)), dtype=torch.float64,
                            device=t.device if t is not None else None)
    return (target != ignore_index).flatten(1).any(1).sum().double()
