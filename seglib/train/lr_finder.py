"""The LR range test (L. N. Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017) and the
notebooks' LR finder built on it, as fastai's ``Learner.lr_find``.

:func:`range_test` sweeps the LR exponentially from ``lr_min`` to ``lr_max`` over ``steps`` optimizer steps of
one training, smooths the loss with a bias-corrected exponential moving average (beta 0.98) and stops when the
smoothed loss exceeds 4x its minimum. It is the one range test of seglib: the study's LR search
(:mod:`seglib.tune.lr_search`) and :func:`find_lr` both run it.

:func:`find_lr` (``LR = "find"``, :meth:`seglib.experiment.Experiment.find_lr`) runs it on what the run will
train: the configured model, fresh and seeded as training starts from it (encoder frozen when the recipe
starts frozen), its optimizer with its parameter groups (every group at ``lr x lr_ratio``), its loss, and the
real training loader (augmented batches, every one at the first epoch's image size). It trains a throwaway
copy and restores the RNG states afterwards, so training starts exactly as without it. The suggestion is
fastai's ``valley`` rule (:func:`valley`), which fastai uses by default since 2.4 (fastai PR #3377, 2021):
the recipes' schedules (one-cycle, warm-up + cosine) take a *maximum* LR, and the valley point -- halfway down
the longest descent of the loss curve -- is such a maximum, while the older "minimum / 10" rule (kept as
``lr_min_div10``) is a conservative constant LR and the steepest point is often noisy.

Resumable and exact: with a checkpoint in the run's folder the finder does not run (the checkpoint's LR is
used, and said so); otherwise its result is saved atomically to ``WORKDIR/lr_find.json`` with the key of what
it depends on (:func:`finder_key`) and reused by the next Run all with the same key, so a resumed run's
configuration equals the saved one.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from ..tensors import to_device
from .checkpoint import atomic_write_json, rng_state, set_rng_state
from .optim import build_optimizer, encoder_frozen, set_encoder_trainable, set_lr

FINDER_VERSION = 1
"""Bumped when the finder's result for the same key changes (rule, sweep), so old ``lr_find.json`` are redone."""
STEPS, SMOKE_STEPS = 100, 12
"""Optimizer steps of one finder run (fastai's ``num_it`` 100) and of a SMOKE run."""
CHECKPOINTS = ("last.pt", "last.prev.pt", "best.pt")
"""Files whose presence in ``checkpoints/`` (local folder or WORKDIR) means the run has started: no finder."""


# --------------------------------------------------------------------------------------------- the range test
@dataclass
class RangeTestResult:
    """Outcome of :func:`range_test`: per-step ``lrs``, raw ``losses`` and ``smoothed`` losses,
    ``suggestion`` (LR at min smoothed loss / 10), ``steepest`` (LR of steepest smoothed descent),
    ``lr_at_min`` and ``steps`` actually run (early stop on divergence)."""

    lrs: list
    losses: list
    smoothed: list
    suggestion: float
    steepest: float
    lr_at_min: float
    steps: int

    def to_dict(self) -> dict:
        """Plain JSON-able dict of the fields."""
        return asdict(self)


def suggest_lr(lrs, smoothed) -> tuple[float, float, float]:
    """``(lr_at_min / 10, steepest, lr_at_min)`` from a range-test curve.

    The first 10 % of the points are skipped (fastai's ``skip_start``): the moving average is still
    warming up there and its first value is just the first batch's loss. ``lr_at_min`` is the LR of the
    lowest smoothed loss after them; ``steepest`` the LR where the smoothed loss falls fastest per decade
    of LR between them and the minimum. Raises ``ValueError`` for fewer than 2 points.
    """
    lrs, sm = np.asarray(lrs, np.float64), np.asarray(smoothed, np.float64)
    if len(lrs) < 2:
        raise ValueError("a range test needs at least 2 steps to suggest a learning rate")
    sm = np.where(np.isfinite(sm), sm, np.inf)
    start = min(len(lrs) // 10, len(lrs) - 1)
    i_min = start + int(np.argmin(sm[start:]))
    lr_min = float(lrs[i_min])
    if i_min - start >= 2:
        grad = np.gradient(sm[start: i_min + 1], np.log10(lrs[start: i_min + 1]))
        steep = float(lrs[start + int(np.argmin(grad))])
    else:
        steep = float(lrs[start])
    return lr_min / 10.0, steep, lr_min


def range_test(step: Callable[[float], float], lr_min: float = 1e-7, lr_max: float = 10.0, steps: int = 100,
               beta: float = 0.98, diverge: float = 4.0) -> RangeTestResult:
    """Smith's LR range test on a stepping function.

    Args:
        step: ``lr -> loss``: one optimizer step at ``lr`` on the next batch, returning that batch's loss.
        lr_min, lr_max: the LR range, swept exponentially over ``steps`` steps.
        beta: smoothing of the exponential moving average (bias-corrected).
        diverge: stop when the smoothed loss exceeds ``diverge`` x its minimum (after 10 % of the steps).

    Raises:
        ValueError: ``lr_min >= lr_max``, non-positive bounds or ``steps < 2``.
    """
    if not 0 < lr_min < lr_max or steps < 2:
        raise ValueError(f"need 0 < lr_min < lr_max and steps >= 2; got {lr_min}, {lr_max}, {steps}")
    lrs_all = np.geomspace(lr_min, lr_max, steps)
    lrs, losses, smoothed = [], [], []
    avg, best = 0.0, math.inf
    for i, lr in enumerate(lrs_all):
        loss = float(step(float(lr)))
        lrs.append(float(lr))
        losses.append(loss)
        if not math.isfinite(loss):
            smoothed.append(math.inf)
            if len(lrs) >= 2:
                break
            continue
        avg = beta * avg + (1 - beta) * loss
        sm = avg / (1 - beta ** (i + 1))
        smoothed.append(sm)
        best = min(best, sm)
        if i > steps // 10 and sm > diverge * best:
            break
    suggestion, steep, at_min = suggest_lr(lrs, smoothed)
    return RangeTestResult(lrs, losses, smoothed, suggestion, steep, at_min, len(lrs))


def valley(lrs, smoothed, skip_end: int = 5) -> int:
    """Index of fastai's ``valley`` suggestion on a range-test curve (fastai ``callback/schedule.py``).

    The curve is cut as fastai's ``lr_find`` cuts it (the first 10 % of the points, the last ``skip_end`` and
    everything from the first non-finite value on). The *valley* is the longest strictly decreasing
    subsequence of the smoothed loss, from index ``max_end - length`` to ``max_end``; the suggestion is the
    point ``int(length / 3) + int(length / 6)`` after its start: about halfway down the longest descent.
    With fewer than 3 points left it is the point of the lowest smoothed loss.

    Args:
        lrs, smoothed: the range test's LRs and smoothed losses (same length, at least 1).
        skip_end: points dropped at the end (where the loss blows up); fewer when the curve is short.

    Returns:
        An index into ``lrs``. Raises ``ValueError`` for an empty curve.
    """
    sm = np.asarray(smoothed, np.float64)
    if len(sm) == 0 or len(sm) != len(lrs):
        raise ValueError(f"valley needs a non-empty curve of LRs and losses of the same length ({len(lrs)}, {len(sm)})")
    bad = np.flatnonzero(~np.isfinite(sm))
    stop = int(bad[0]) if len(bad) else len(sm)
    start = min(len(sm) // 10, max(stop - 1, 0))
    stop = max(start + 1, min(stop, len(sm) - skip_end) if stop - skip_end - start >= 3 else stop)
    seg = sm[start:stop]
    n = len(seg)
    if n < 3:
        return start + int(np.argmin(seg)) if n else 0
    lds = np.ones(n, int)
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if seg[i] < seg[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end, max_start = i, i - lds[i]
    sections = (max_end - max_start) / 3
    return start + min(n - 1, max(0, max_start + int(sections) + int(sections / 2)))


# --------------------------------------------------------------------------------------------- the run's finder
@dataclass
class LRFindResult:
    """What :func:`find_lr` found.

    Attributes:
        lrs: LR of every step (the base LR; each parameter group ran at ``lr x lr_ratio``).
        losses: the smoothed training loss of every step (what is plotted); raw_losses: the batch losses.
        suggestion: the LR training uses (``valley`` rule; from the checkpoint when ``source == "checkpoint"``).
        index: position of the suggestion in ``lrs`` (None when not run).
        lr_min_div10, steepest: the other suggestion rules, for comparison.
        rule: ``"valley"``; size: image side length [px] of the batches; steps: steps run; seconds: wall time [s]
            of the run that produced it; source: ``"run"``, ``"lr_find.json"`` (reused) or ``"checkpoint"``
            (not run: the run has started); key: what it depends on (:func:`finder_key`).
    """

    lrs: list
    losses: list
    suggestion: float
    raw_losses: list = field(default_factory=list)
    index: int | None = None
    lr_min_div10: float | None = None
    steepest: float | None = None
    rule: str = "valley"
    size: int | None = None
    steps: int = 0
    seconds: float = 0.0
    source: str = "run"
    key: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain JSON-able dict of the fields."""
        return asdict(self)


def frozen_at_start(cfg, model=None) -> bool:
    """Whether training starts with the encoder frozen: ``cfg.freeze_encoder_epochs`` > 0 and the encoder starts
    from pretrained weights (the rule of :meth:`~seglib.train.state.TrainingState.freeze_encoder`; judged from
    ``model.encoder_weights_loaded`` when ``model`` is given, else from ``cfg.encoder_weights``)."""
    pretrained = getattr(cfg, "encoder_weights", None) if model is None else getattr(model, "encoder_weights_loaded", None)
    return encoder_frozen(1, getattr(cfg, "freeze_encoder_epochs", 0), pretrained is not None)


def finder_key(cfg, size: int, data_id, steps: int, lr_min: float, lr_max: float, device: str) -> dict:
    """What a finder result depends on: model, loss, optimizer (and its groups), batch size, image size [px],
    augmentation, masks, seed, the data fingerprint id, the sweep, the device type and the finder version.
    A saved result is reused only when its key equals this one."""
    names = ("model", "model_kwargs", "encoder_weights", "n_classes", "ignore_index", "mask_threshold",
             "mask_scale", "loss", "loss_kwargs", "optimizer", "optimizer_kwargs", "encoder_lr_ratio",
             "weight_decay", "encoder_weight_decay", "batch_size", "augment", "seed", "amp", "channels_last")
    key = {**{n: getattr(cfg, n, None) for n in names}, "frozen_encoder": frozen_at_start(cfg), "size": int(size),
           "data": data_id, "steps": int(steps), "lr_min": float(lr_min), "lr_max": float(lr_max),
           "device": str(device), "version": FINDER_VERSION}
    return json.loads(json.dumps(key, default=str))  # as it reads back from lr_find.json (tuples -> lists)


def checkpoint_lr(ws) -> tuple[float, Path] | None:
    """``(lr, file)`` from the configuration of the first readable checkpoint of the run folder (local
    ``checkpoints/`` first, then WORKDIR's; :data:`CHECKPOINTS` order), or None when there is none. Read with
    ``mmap`` (the weights are not loaded). A file that cannot be read is skipped (training reports it)."""
    for folder in dict.fromkeys([Path(ws.local) / "checkpoints", Path(ws.workdir) / "checkpoints"]):
        for name in CHECKPOINTS:
            path = folder / name
            if not path.is_file():
                continue
            try:
                ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                return float(ckpt["config"]["lr"]), path
            except Exception:  # noqa: BLE001 - torn/foreign: restore() reports it; try the next file
                continue
    return None


def sweep(model, optimizer, batches, loss_fn, device, steps: int, lr_min: float, lr_max: float,
          amp: bool = False, channels_last: bool = False) -> RangeTestResult:
    """:func:`range_test` of ``model`` trained by ``optimizer`` on ``batches`` (an iterator of
    ``{"input", "target"}`` dicts), as :class:`~seglib.train.trainer.Trainer` steps: every group's LR set to
    ``lr x lr_ratio`` (:func:`~seglib.train.optim.set_lr`), autocast fp16 and a GradScaler when ``amp``."""
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    model.train()

    def step(lr: float) -> float:
        set_lr(optimizer, lr)
        batch = next(batches)
        x, t = to_device(batch["input"], device, channels_last), to_device(batch["target"], device)
        with torch.autocast(torch.device(device).type, dtype=torch.float16, enabled=amp):
            loss = loss_fn(model(x), t)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return float(loss.detach())

    return range_test(step, lr_min, lr_max, steps)


def _batches(loader):
    """Endless batches of an :func:`~seglib.data.datasets.make_loader` loader: epoch 1, 2, ... in turn."""
    epoch = 0
    while True:
        epoch += 1
        loader.sampler.set_epoch(epoch)
        yield from loader


def _run(run, size: int, steps: int, lr_min: float, lr_max: float) -> LRFindResult:
    """One finder run on a throwaway model, optimizer and loader of ``run`` (RNG states restored after)."""
    from ..data.datasets import make_loader

    cfg, device = run.cfg, torch.device(run.device)
    cuda = device.type == "cuda"
    amp, channels_last = bool(cfg.amp and cuda), bool(cfg.channels_last and cuda)
    saved = rng_state()
    t0 = time.monotonic()
    try:
        model = run.build_model().to(device)  # seeded with cfg.seed: the weights training starts from
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = build_optimizer(cfg.optimizer, model, cfg.lr, cfg.weight_decay, cfg.encoder_lr_ratio,
                                    cfg.encoder_weight_decay, **cfg.optimizer_kwargs)
        if frozen_at_start(cfg, model):  # as training's first epoch: no gradient, so the optimizer skips it
            set_encoder_trainable(model, False)
        dataset = run.dataset("train")
        dataset.size = lambda _epoch, s=int(size): s  # every batch at the first epoch's size
        loader = make_loader(dataset, cfg.batch_size, shuffle=True, seed=cfg.seed, num_workers=cfg.num_workers,
                             cuda=cuda)
        rt = sweep(model, optimizer, _batches(loader), run.loss(), device, steps, lr_min, lr_max, amp, channels_last)
        del loader
    finally:
        set_rng_state(saved)
    i = valley(rt.lrs, rt.smoothed)
    return LRFindResult(lrs=rt.lrs, losses=rt.smoothed, raw_losses=rt.losses, suggestion=float(rt.lrs[i]), index=i,
                        lr_min_div10=rt.suggestion, steepest=rt.steepest, size=int(size), steps=rt.steps,
                        seconds=time.monotonic() - t0)


def _read_saved(path: Path) -> dict | None:
    """The saved finder result at ``path``, or None when missing or unreadable (then it is redone; said so)."""
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
        return saved if isinstance(saved, dict) and "key" in saved else None
    except (OSError, ValueError) as err:
        print(f"LR finder: cannot read {path} ({err}); running again")
        return None


def find_lr(run, steps: int | None = None, lr_min: float = 1e-7, lr_max: float = 10.0,
            force: bool = False) -> LRFindResult:
    """The LR finder of an :class:`~seglib.experiment.Experiment` (after ``prepare()``); sets nothing itself
    (:meth:`~seglib.experiment.Experiment.find_lr` sets ``run.cfg.lr``). Prints what it did and its seconds.

    Order: a checkpoint in the run folder (:func:`checkpoint_lr`) -> not run, its LR returned
    (``source="checkpoint"``); else ``WORKDIR/lr_find.json`` with this run's :func:`finder_key` -> reused
    (``source="lr_find.json"``); else run (``steps`` optimizer steps, default :data:`STEPS`, :data:`SMOKE_STEPS`
    in a SMOKE run, at the first epoch's image size) and save ``lr_find.json`` atomically. ``force`` runs
    even when a result with the same key is saved (never over a checkpoint). The model is the configured one,
    fresh: with ``FINE_TUNE_FROM`` training starts from other weights, which the finder does not load (give a
    number as LR there).

    Raises:
        RuntimeError: before ``prepare()``.
        ValueError: bad ``lr_min``/``lr_max``/``steps`` (see :func:`range_test`).
        seglib.train.checkpoint.StorageError: ``lr_find.json`` cannot be written (disk full, read-only).
    """
    from ..data.transforms import size_for_epoch

    if not run.splits:
        raise RuntimeError("call prepare() before find_lr()")
    found = checkpoint_lr(run.ws)
    if found is not None:
        lr, path = found
        print(f"LR finder: not run -- this run has a checkpoint ({path}); it continues with its LR {lr:.3g}")
        return LRFindResult(lrs=[], losses=[], suggestion=lr, source="checkpoint")
    steps = int(steps or (SMOKE_STEPS if getattr(run, "smoke", False) else STEPS))
    size = size_for_epoch(1, run.cfg.img_size, run.cfg.resize_schedule)
    key = finder_key(run.cfg, size, run.data_fingerprint().get("id"), steps, lr_min, lr_max, run.device.type)
    path = Path(run.ws.workdir) / "lr_find.json"
    saved = _read_saved(path)
    if saved and saved.get("key") == key and not force:
        known = {f.name for f in fields(LRFindResult)}
        res = LRFindResult(**{**{k: v for k, v in saved.items() if k in known}, "source": "lr_find.json"})
        print(f"LR finder: suggestion {res.suggestion:.3g} ({res.rule}) reused from {path} (same model, loss, "
              "optimizer, data, size, batch size and seed)")
        return res
    if saved and saved.get("key") != key:
        changed = sorted(k for k in set(key) | set(saved.get("key") or {}) if key.get(k) != (saved.get("key") or {}).get(k))
        print(f"LR finder: {path} was for other settings ({', '.join(changed)}); running again")
    res = _run(run, size, steps, lr_min, lr_max)
    res.key = key
    atomic_write_json(path, res.to_dict())
    print(f"LR finder: suggestion {res.suggestion:.3g} ({res.rule} rule; minimum/10 {res.lr_min_div10:.3g}, steepest "
          f"{res.steepest:.3g}) from {res.steps} steps at {size} px in {res.seconds:.1f} s; saved to {path}")
    return res
