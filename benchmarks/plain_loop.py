"""The issue's plain hand-written training loops: the reference points of ``benchmarks/quality.py``.

No seglib trainer, dataset or loss: images decoded once with OpenCV, resized to a square and kept in RAM
as uint8 tensors; a bare ``for`` loop over seeded permutations; validation every epoch. Only the split
(:func:`seglib.data.layouts.load_splits`, the same files the notebooks train and validate on) and the
metrics (:class:`seglib.metrics.SegmentationMetrics` / :class:`~seglib.metrics.BinaryMetrics`, so the
numbers mean what the notebooks' numbers mean) come from seglib.

- CamVid (:func:`camvid`): smp U-Net MobileNetV2 (``encoder_weights=None``), Adam 1e-3, cross-entropy with
  ``ignore_index`` 11 (void), horizontal flip p 0.5, 224 px, batch 8; val mIoU over classes 0..10.
- ISBI 2012 (:func:`isbi`): the baseline U-Net 16-32-64-128-256 with BatchNorm (``seglib.models`` "unet",
  width divisor 4, the study's network), BCE + Dice, 256 px, batch 4, Adam 1e-3, no augmentation; the
  membrane (mask value 0) is the positive class; the study's split (seed 0, 20 % held out: 24 / 6); val
  foreground Dice.

Each returns a curve: ``[{"epoch", "train_seconds" (cumulative, training steps only, as history.json's
``train_seconds``), "metric"}]``. Run alone: ``python benchmarks/plain_loop.py camvid --budget 60``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import torch
import torch.nn.functional as F

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
"""The project's real datasets beside the repository (``../shared/data``); never committed."""
CAMVID = SHARED_DATA / "camvid_segnet"
ISBI = SHARED_DATA / "isbi2012_membrane"
CAMVID_CLASSES = 12
CAMVID_VOID = 11
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def load_pairs(samples, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode and square-resize ``samples`` (seglib ``Sample``s with ``image`` and ``mask`` paths) once.

    Returns:
        ``(images uint8 N x 3 x S x S RGB, masks uint8 N x S x S as stored)``; images with INTER_AREA,
        masks with nearest-neighbour interpolation (as seglib's pipelines).

    Raises:
        FileNotFoundError: an unreadable image or mask (named).
    """
    xs, ys = [], []
    for s in samples:
        img = cv2.imread(str(s.image), cv2.IMREAD_COLOR)
        mask = cv2.imread(str(s.mask), cv2.IMREAD_UNCHANGED)
        if img is None or mask is None:
            raise FileNotFoundError(f"cannot read {s.image if img is None else s.mask}")
        img = cv2.resize(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), (size, size), interpolation=cv2.INTER_AREA)
        xs.append(torch.from_numpy(img).permute(2, 0, 1))
        ys.append(torch.from_numpy(cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)))
    return torch.stack(xs), torch.stack(ys)


def normalise(x: torch.Tensor) -> torch.Tensor:
    """uint8 ``N x 3 x H x W`` -> float32, ImageNet mean/std (the normalisation seglib uses too)."""
    return (x.float() / 255.0 - MEAN) / STD


def splits(root: Path, val_fraction: float = 0.2) -> dict:
    """The train / val samples of ``root`` as the notebooks see them (seed 0)."""
    from seglib.data.layouts import load_splits

    return load_splits(root, "auto", seed=0, val_fraction=val_fraction)[1]


def fit(model, opt, loss_fn, train: tuple, val: tuple, score, *, batch: int, budget_s: float, max_epochs: int,
        seed: int, augment=None, on_epoch=None) -> list[dict]:
    """The bare loop: seeded permutation, ``augment(x, y, gen)``, forward, loss, step; validate each epoch.

    Args:
        train, val: ``(inputs, targets)`` tensors in RAM (inputs uint8, normalised per batch).
        score: ``(model, val) -> float``; budget_s: stop after the epoch that reaches this many training seconds.
        on_epoch: optional ``record -> None`` callback (prints a JSON line in the CLI).

    Returns:
        ``[{"epoch", "train_seconds", "metric"}]``, one per epoch.
    """
    gen = torch.Generator().manual_seed(seed)
    curve, spent = [], 0.0
    x_all, y_all = train
    for epoch in range(1, max_epochs + 1):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(len(x_all), generator=gen)
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            x, y = normalise(x_all[idx]), y_all[idx]
            if augment is not None:
                x, y = augment(x, y, gen)
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        spent += time.perf_counter() - t0
        rec = {"epoch": epoch, "train_seconds": round(spent, 2), "metric": float(score(model, val))}
        curve.append(rec)
        if on_epoch:
            on_epoch(rec)
        if spent >= budget_s:
            break
    return curve


def hflip(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each sample left-right with probability 0.5 (image and mask together)."""
    flip = torch.rand(len(x), generator=gen) < 0.5
    x, y = x.clone(), y.clone()
    x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
    return x, y


@torch.no_grad()
def camvid_miou(model, val: tuple, batch: int = 8) -> float:
    """Val mIoU over classes 0..10, void (11) ignored (:class:`seglib.metrics.SegmentationMetrics`)."""
    from seglib.metrics import SegmentationMetrics

    model.eval()
    m = SegmentationMetrics(CAMVID_CLASSES, CAMVID_VOID)
    for i in range(0, len(val[0]), batch):
        m.update(model(normalise(val[0][i:i + batch])), val[1][i:i + batch].long())
    return m.compute()["miou"]


def camvid(budget_s: float, *, size: int = 224, max_epochs: int = 1000, root: Path = CAMVID, limit: int | None = None,
           seed: int = 0, on_epoch=None) -> list[dict]:
    """The CamVid plain loop (module docstring) for ``budget_s`` training seconds; ``limit`` keeps the first
    images of each split (quick checks). Returns the curve of :func:`fit`."""
    from seglib import _torchvision_guard

    _torchvision_guard.ensure_torchvision()  # import torchvision next to a CPU-only torch (smp needs it)
    import segmentation_models_pytorch as smp

    sp = splits(root)
    train, val = (load_pairs(sp[k][:limit], size) for k in ("train", "val"))
    torch.manual_seed(seed)
    model = smp.Unet("mobilenet_v2", encoder_weights=None, classes=CAMVID_CLASSES)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss_fn(out, y):
        return F.cross_entropy(out, y.long(), ignore_index=CAMVID_VOID)

    return fit(model, opt, loss_fn, train, val, camvid_miou, batch=8, budget_s=budget_s, max_epochs=max_epochs,
               seed=seed, augment=hflip, on_epoch=on_epoch)


def membrane(masks: torch.Tensor) -> torch.Tensor:
    """ISBI masks (uint8, 0 = membrane, 255 = cell) -> float ``N x 1 x H x W``, 1 on the membrane."""
    return (masks < 128).float().unsqueeze(1)


def bce_dice(logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice loss ``1 - (2 sum(p t) + 1) / (sum(p) + sum(t) + 1)`` over the batch."""
    p = torch.sigmoid(logits)
    dice = (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    return F.binary_cross_entropy_with_logits(logits, t) + 1 - dice


@torch.no_grad()
def isbi_dice(model, val: tuple, batch: int = 4) -> float:
    """Val foreground (membrane) Dice, counts pooled over the split (:class:`seglib.metrics.BinaryMetrics`)."""
    from seglib.metrics import BinaryMetrics

    model.eval()
    m = BinaryMetrics(objects=False)
    for i in range(0, len(val[0]), batch):
        m.update(model(normalise(val[0][i:i + batch])), val[1][i:i + batch])
    return m.compute()["fg_dice"]


def isbi(budget_s: float, *, size: int = 256, max_epochs: int = 1000, root: Path = ISBI, limit: int | None = None,
         seed: int = 0, on_epoch=None) -> list[dict]:
    """The ISBI plain loop (module docstring) for ``budget_s`` training seconds; ``limit`` as in :func:`camvid`."""
    from seglib.models import build_model

    sp = splits(root)
    (xt, yt), (xv, yv) = (load_pairs(sp[k][:limit], size) for k in ("train", "val"))
    torch.manual_seed(seed)
    model = build_model("unet", classes=1, width_divisor=4, batchnorm=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return fit(model, opt, bce_dice, (xt, membrane(yt)), (xv, membrane(yv)), isbi_dice, batch=4, budget_s=budget_s,
               max_epochs=max_epochs, seed=seed, on_epoch=on_epoch)


LOOPS = {"camvid": camvid, "isbi": isbi}


def main(argv=None) -> int:
    import argparse
    import json

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", choices=sorted(LOOPS))
    p.add_argument("--budget", type=float, default=60.0, help="training seconds (default 60)")
    p.add_argument("--size", type=int, default=None, help="image side [px] (default 224 CamVid, 256 ISBI)")
    p.add_argument("--limit", type=int, default=None, help="first N images per split (quick checks)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    kw = {"size": a.size} if a.size else {}
    LOOPS[a.data](a.budget, limit=a.limit, on_epoch=lambda r: print(json.dumps({"bench": "plain_loop", "data": a.data,
                                                                             **r}), flush=True), **kw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
