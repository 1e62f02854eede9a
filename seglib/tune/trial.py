"""One trial of a study: a binary U-Net training in its own folder, resumable, with a ``result.json``.

:class:`BinaryTrial` is an :class:`seglib.experiment.Experiment` whose data are the study's shared
splits: the training pool cut to ``spec["train_fraction"]`` (nested subsets: 20 % is inside 40 % ...)
and the fixed held-out validation split, never augmented and never training data. :func:`execute`
trains it (resuming from ``checkpoints/last.pt`` after any interruption), evaluates the best
checkpoint on the un-augmented training subset and on validation, logs the hyperparameters to
TensorBoard's HParams view and writes ``result.json`` atomically. A finished trial is never retrained,
and a spec already finished in another study (same hash) is reused instead of trained again.
:func:`check_binary_masks` and :func:`data_id` check and identify the study's data once.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data.datasets import SegmentationDataset
from ..data.io import DataError, check_pair_size, image_size, read_mask
from ..data.transforms import denormalize
from ..experiment import Experiment
from ..losses import build_loss  # seglib.losses registers the binary losses
from ..metrics_binary import BinaryMetrics
from ..train.checkpoint import atomic_write_json, mirror
from .studies import make_config, spec_hash

RESULT_FORMAT = "seglib-hparam-trial/1"
BINARY_COLORS = np.array([[40, 40, 40], [255, 200, 0]], np.uint8)
"""Colours of background (0) and foreground (1) in prediction grids."""


class StopTrial(Exception):
    """Raised by a trainer callback to end a trial early; ``state`` is ``"pruned"`` or ``"lost"``
    (another worker took the trial over)."""

    def __init__(self, state: str, message: str = ""):
        super().__init__(message or state)
        self.state = state


class BinaryDataset(Dataset):
    """A :class:`SegmentationDataset` with 2 classes whose target is optionally inverted.

    Items: ``{"input": float32 3 x S x S, "target": int64 S x S in {0, 1}, "index": int}``; with
    ``invert`` the target is ``1 - target`` (ISBI 2012: the membrane, stored as 0, becomes the positive class).
    """

    def __init__(self, base: SegmentationDataset, invert: bool = False):
        self.base, self.invert = base, bool(invert)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key) -> dict:
        item = self.base[key]
        if self.invert and "target" in item:
            item["target"] = 1 - item["target"]
        return item


def check_binary_masks(samples) -> None:
    """Read every sample's mask once: values within {0, 1} or {0, 255}, size equal to its image's (header only).

    Args:
        samples: :class:`~seglib.data.layouts.Sample` objects with ``image`` and ``mask`` paths.

    Raises:
        DataError: an unreadable file, a mask of other values or of another size; the message names the
            file and the fix.
    """
    for s in samples:
        raw = read_mask(s.mask, 1 << 32)  # grey values as stored (no class-id limit, nothing mapped to {0, 1})
        values = np.unique(raw).tolist()
        if not (set(values) <= {0, 1} or set(values) <= {0, 255}):
            raise DataError(f"mask {s.mask} has values {values[:10]}{' ...' if len(values) > 10 else ''}; "
                            "a binary mask holds only {0, 1} or {0, 255} (foreground 1 or 255). Threshold it "
                            "(e.g. 255 * (mask > 127)) and save it as PNG, or remove it from the dataset")
        w, h = image_size(s.image)
        if raw.shape != (h, w):
            check_pair_size(s.image, s.mask)


def data_id(root, splits: dict) -> str:
    """8-hex-digit id of a study's data, the same wherever the folder lives (another machine, a moved copy).

    Hashes the split names and, per sample, its name and the image and mask paths relative to ``root``
    with their sizes in bytes (``os.stat``; nothing is read). Changes when a file is renamed, added,
    removed or changes size.

    Args:
        root: the data folder; splits: ``{split name: [Sample, ...]}``.

    Raises:
        FileNotFoundError: a listed file is missing.
    """
    def entry(path):
        return None if path is None else [os.path.relpath(path, root).replace(os.sep, "/"), os.stat(path).st_size]

    ident = {k: [[s.name, entry(s.image), entry(s.mask)] for s in v] for k, v in splits.items()}
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:8]


def nested_subset(samples: list, fraction: float, seed: int) -> list:
    """The first ``max(1, round(fraction * n))`` samples of the seeded permutation of ``samples``, in
    their original order; smaller fractions are subsets of larger ones.

    Raises:
        ValueError: ``fraction`` outside (0, 1].
    """
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"train fraction must be in (0, 1], got {fraction}")
    n = len(samples)
    order = np.random.default_rng([int(seed), 4]).permutation(n)
    keep = sorted(order[:max(1, round(float(fraction) * n))])
    return [samples[i] for i in keep]


class BinaryTrial(Experiment):
    """A binary-segmentation training of one spec on shared splits.

    Args:
        spec: a full spec (see :mod:`seglib.tune.studies`); ``spec["invert"]`` inverts the masks.
        splits: ``{"train": pool, "val": held-out}`` samples of the study.
        data: the study's ``DATA`` value (recorded as in every :class:`Experiment`).
        workdir / local: the trial's folders.
        device: ``"cpu"``/``"cuda"``; default CUDA when available.

    Validation during training computes Dice, IoU and pixel AP only (the monitored ``val_dice`` needs no
    more); object AP@0.5 (connected components on the CPU) is computed by :meth:`evaluate`.
    """

    def __init__(self, spec: dict, splits: dict, *, data: str, workdir, local=None, device: str | None = None):
        cfg = make_config(spec, experiment=Path(workdir).name)
        if cfg.num_workers is None:  # not the trainer's default (up to 2 CPU / 8 CUDA workers): small images
            cfg.num_workers = 0 if not torch.cuda.is_available() or device == "cpu" else 2
        super().__init__(cfg, data, workdir=workdir, local=local, notebook="hyperparameter_study", device=device)
        self.spec, self.invert = spec, bool(spec.get("invert", False))
        self.objects = False
        self.splits = {"train": nested_subset(splits["train"], spec["train_fraction"], spec["seed"]),
                       "val": list(splits["val"])}

    def dataset(self, split: str, augment: str | None = None) -> BinaryDataset:
        """``split`` as a :class:`BinaryDataset`; only ``"train"`` gets the configured augmentation."""
        aug = augment if augment is not None else (self.cfg.augment if split == "train" else "none")
        return BinaryDataset(SegmentationDataset(self.splits[split], 2, self.cfg.img_size, aug, self.cfg.seed),
                             self.invert)

    def loss(self):
        """The binary loss named by ``spec["loss"]``."""
        return build_loss(self.cfg.loss, 2, None, **self.cfg.loss_kwargs)

    def metrics_factory(self) -> BinaryMetrics:
        """Fresh :class:`BinaryMetrics` for one validation pass; object AP only while :meth:`evaluate` asks
        for it (``self.objects``), not in the per-epoch validation."""
        return BinaryMetrics(objects=self.objects)

    def model_kwargs(self) -> dict:
        """U-Net arguments: one output logit plus the spec's width, BatchNorm and dropout."""
        return {"classes": 1, **self.cfg.model_kwargs}

    def render_grid(self, inputs, outputs, targets) -> np.ndarray:
        """image | true | predicted rows for TensorBoard."""
        from ..inspect.render import prediction_grid

        return prediction_grid([denormalize(x) for x in inputs], [t.numpy() for t in targets],
                               [(o[0] > 0).numpy().astype(np.uint8) for o in outputs], BINARY_COLORS)

    @torch.no_grad()
    def evaluate(self, split: str = "val", which: str = "best", objects: bool = True) -> dict:
        """Loss and :class:`BinaryMetrics` scores of checkpoint ``which`` on un-augmented ``split``.

        Returns:
            ``{"loss", "dice", "iou", "precision", "recall", "pixel_ap"}`` floats, plus ``"object_ap50"``,
            ``"objects_true"``, ``"objects_pred"`` when ``objects``.

        Raises:
            FileNotFoundError: no checkpoint yet.
        """
        model, data = self.load_model(which), self.dataset(split, "none")
        self.objects = bool(objects)
        try:
            return self.score(model, data)
        finally:
            self.objects = False

    @torch.no_grad()
    def predict(self, split: str = "val", n: int = 4, which: str = "best") -> dict:
        """The first ``n`` samples of ``split`` at the training size: ``{"names", "images" (uint8 S x S x 3),
        "true" (uint8 S x S), "pred" (uint8 S x S), "prob" (float32 S x S)}``."""
        model, ds = self.load_model(which), self.dataset(split, "none")
        out = {"names": [], "images": [], "true": [], "pred": [], "prob": []}
        for i in range(min(n, len(ds))):
            item = ds[i]
            prob = torch.sigmoid(model(item["input"][None].to(self.device)))[0, 0].float().cpu().numpy()
            out["names"].append(self.splits[split][i].name)
            out["images"].append(denormalize(item["input"]))
            out["true"].append(item["target"].numpy().astype(np.uint8))
            out["pred"].append((prob > 0.5).astype(np.uint8))
            out["prob"].append(prob)
        return out


def load_result(folder) -> dict | None:
    """``folder/result.json`` of a finished trial, or None."""
    path = Path(folder) / "result.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def hparams_of(spec: dict) -> dict:
    """The spec's values as TensorBoard HParams (``str``/``float``/``int``/``bool`` only)."""
    return {k: v if isinstance(v, (str, int, float, bool)) else str(v) for k, v in spec.items()
            if k not in ("num_workers", "checkpoint_minutes", "loss_kwargs")}


def write_hparams(tb_dir: Path, spec: dict, metrics: dict) -> None:
    """Write one HParams session (spec values, ``hparam/*`` metrics) into the trial's TensorBoard folder."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    exp, ssi, sei = hparams(hparams_of(spec), metrics)
    with SummaryWriter(str(tb_dir), filename_suffix=".hparams") as w:
        for s in (exp, ssi, sei):
            w.file_writer.add_summary(s)
        for k, v in metrics.items():
            w.add_scalar(k, v, 0)


def _reusable(folder: Path, h: str) -> dict | None:
    """A complete, not pruned result with spec hash ``h`` in a sibling study folder, if any."""
    trials_root = folder.parent.parent
    for path in sorted(trials_root.glob(f"*/*-{h}/result.json")):
        if path.parent == folder:
            continue
        res = load_result(path.parent)
        if res and res.get("hash") == h and res.get("state") == "complete" and not res.get("reused_from"):
            return res
    return None


def execute(trial: BinaryTrial, *, study: str, key: str, params: dict, callbacks=(), progress: bool = False,
            reuse: bool = True) -> dict:
    """Run (or resume, or reuse) one trial and return its result dict (also in ``workdir/result.json``).

    Returns:
        ``{"format", "study", "key", "hash", "params", "spec", "state" ("complete"|"pruned"),
        "epochs_completed", "best_epoch", "best_val_dice", "stopped_early", "steps", "steps_per_epoch",
        "final" {train_loss, train_dice, val_loss, val_dice, val_iou, val_pixel_ap, val_object_ap50, ...},
        "history", "resumed_from", "reused_from", "seconds"}``.

    Raises:
        StopTrial: with state ``"lost"`` when a callback says another worker owns the trial now.
        Whatever training raises otherwise (the checkpoint stays; a rerun resumes).
    """
    folder = trial.ws.workdir
    h = spec_hash(trial.spec)
    done = load_result(folder)
    if done and done.get("hash") == h and done.get("state") in ("complete", "pruned"):
        return done
    t0 = time.monotonic()
    other = _reusable(folder, h) if reuse else None
    if other is not None:
        result = {**other, "study": study, "key": key, "params": params, "reused_from": other["key"],
                  "reused_study": other["study"]}
        atomic_write_json(folder / "result.json", result)
        return result
    with open(folder / "runs.jsonl", "a") as f:
        f.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}) + "\n")
    if not trial.splits:
        raise RuntimeError("the trial has no splits")
    trainer = trial.trainer(callbacks=callbacks, progress=progress)
    state = "complete"
    try:
        trainer.fit()
    except StopTrial as stop:
        if stop.state != "pruned":
            raise
        state = "pruned"
    history = list(trainer.history)
    final = {f"train_{k}": v for k, v in trial.evaluate("train", objects=False).items() if k in ("loss", "dice", "iou")}
    final.update({f"val_{k}": v for k, v in trial.evaluate("val").items()})
    result = {
        "format": RESULT_FORMAT, "study": study, "key": key, "hash": h, "params": params, "spec": trial.spec,
        "state": state, "epochs_completed": trainer.epoch, "best_epoch": trainer.best.epoch,
        "best_val_dice": trainer.best.value, "stopped_early": trainer.early.should_stop, "steps": trainer.step,
        "steps_per_epoch": trainer.n_batches, "train_images": len(trial.splits["train"]),
        "final": final, "history": history, "resumed_from": trainer.resumed_from, "reused_from": None,
        "seconds": time.monotonic() - t0,
    }
    metrics = {"hparam/val_dice": final["val_dice"], "hparam/val_loss": final["val_loss"],
               "hparam/train_dice": final["train_dice"]}
    write_hparams(trial.ws.local / "tensorboard", trial.spec, metrics)
    mirror(trial.ws.local, trial.ws.workdir, ["tensorboard"])
    atomic_write_json(folder / "result.json", result)
    return result
