"""One trial of a study: a binary U-Net training in its own folder, resumable, with a ``result.json``.

:class:`BinaryTrial` is an :class:`seglib.experiment.Experiment`. Given the study's shared splits it
trains on the training pool cut to ``spec["train_fraction"]`` (nested subsets: 20 % is inside 40 % ...)
and validates on the fixed held-out split, never augmented and never training data; without splits its
:meth:`~seglib.experiment.Experiment.prepare` reads them (what :class:`seglib.hparam.HParamRun` does once
for the whole study). :func:`execute`
trains it (resuming from ``checkpoints/last.pt`` after any interruption), evaluates the best
checkpoint on the un-augmented training subset and on validation, logs the hyperparameters to
TensorBoard's HParams view and writes ``result.json`` atomically. The best checkpoint follows the rule of
single runs: the numbers come from ``best.pt`` and only when it holds the epoch the training recorded as
best (``result["evaluated"]`` names file and epoch); a missing or other-epoch ``best.pt`` raises
:class:`BestCheckpointError` instead of a result made of another epoch's numbers. A finished trial is never retrained,
and a spec already finished in another study (same hash) is reused instead of trained again.
:func:`data_id` (:mod:`seglib.data.fingerprint`) identifies the study's data.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import torch

from ..data.cache import cache_folder
from ..data.checks import check_samples, read_binary_mask_values
from ..data.datasets import BinaryDataset
from ..data.fingerprint import data_id  # noqa: F401  (seglib.hparam imports it from here)
from ..data.io import read_mask
from ..data.layouts import load_splits
from ..data.transforms import denormalize
from ..experiment import Experiment
from ..losses import build_loss  # seglib.losses registers the binary losses
from ..metrics import BinaryMetrics, upgrade_keys
from ..predict import predict_logits
from ..train.checkpoint import atomic_write_json, mirror
from ..train.ckptfile import load_checkpoint
from ..train.progress import EpochTable
from .specs import make_config, spec_hash

RESULT_FORMAT = "seglib-hparam-trial/2"
"""2: ``evaluated`` ({"file", "epoch"}: the checkpoint the final numbers come from) was added."""
BINARY_COLORS = np.array([[40, 40, 40], [255, 200, 0]], np.uint8)
"""Colours of background (0) and foreground (1) in prediction grids."""


class BestCheckpointError(RuntimeError):
    """A finished trial's ``best.pt`` is missing, unreadable or holds another epoch than the training's best
    epoch: its ``result.json`` is not written (its numbers would describe another epoch)."""


class StopTrial(Exception):
    """Raised by a trainer callback to end a trial early; ``state`` is ``"pruned"`` or ``"lost"``
    (another worker took the trial over)."""

    def __init__(self, state: str, message: str = ""):
        super().__init__(message or state)
        self.state = state


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
    """A binary-segmentation training of one spec, on given splits or on the data it prepares.

    Args:
        spec: a full spec (see :mod:`seglib.tune.specs`); ``spec["invert"]`` inverts the masks.
        splits: ``{"train": pool, "val": held-out}`` samples of the study; None: :meth:`prepare` reads them
            from ``data`` (whole pool, no train-fraction cut).
        data: the study's ``DATA`` value (``"synthetic"`` = seeded cell blobs; recorded in the summary).
        workdir / local: the trial's folders.
        device: ``"cpu"``/``"cuda"``; default CUDA when available.
        val_fraction, smoke, synthetic_kwargs: used by :meth:`prepare` (seeded split when the data has no
            ``splits/`` files; a smoke subset; the generator's arguments).

    Validation during training computes Dice, IoU and pixel AP only (the monitored ``val_fg_dice`` needs no
    more); object AP@0.5 (connected components on the CPU) is computed by :meth:`evaluate`.
    """

    SYNTHETIC = "blobs"
    SMOKE_SYNTHETIC = {"n_train": 12, "n_val": 4, "size": 64}
    SMOKE_COUNTS = {"train": 8, "val": 4}

    def __init__(self, spec: dict, splits: dict | None = None, *, data: str, workdir, local=None,
                 device: str | None = None, val_fraction: float = 0.2, smoke: bool = False,
                 synthetic_kwargs: dict | None = None):
        cfg = make_config(spec, experiment=Path(workdir).name)
        if cfg.num_workers is None:  # not the trainer's default (up to 2 CPU / 8 CUDA workers): small images
            cfg.num_workers = 0 if not torch.cuda.is_available() or device == "cpu" else 2
        super().__init__(cfg, data, workdir=workdir, local=local, synthetic_kwargs=synthetic_kwargs, smoke=smoke,
                         notebook="hyperparameter_study", device=device)
        self.spec, self.invert, self.val_fraction = spec, bool(spec.get("invert", False)), float(val_fraction)
        self.objects = False
        if splits is not None:
            self.splits = {"train": nested_subset(splits["train"], spec["train_fraction"], spec["seed"]),
                           "val": list(splits["val"])}

    def read_layout(self, root: Path) -> tuple[str, dict]:
        """The train pool and the held-out val split of a segmentation layout (a test split is dropped)."""
        layout, splits = load_splits(root, "auto", seed=self.cfg.seed, val_fraction=self.val_fraction)
        return layout, {"train": splits["train"], "val": splits["val"]}

    def check(self) -> None:
        """Every mask holds {0, 1} or {0, 255} and has its image's size (:func:`seglib.data.checks.check_samples`)."""
        check_samples(self.splits["train"] + self.splits["val"], read_binary_mask_values)

    def dataset(self, split: str, augment: str | None = None) -> BinaryDataset:
        """``split`` as a :class:`BinaryDataset`; only ``"train"`` gets the configured augmentation. Resized
        images are cached as ``cfg.cache`` says (:mod:`seglib.data.cache`; the trials of a study in one process
        share one RAM copy)."""
        ds = BinaryDataset(self.splits[split], self.cfg.img_size, self.augmentation(split, augment), self.cfg.seed,
                           self.invert)
        return ds.use_cache(self.cfg.cache, cache_folder(self.ws.local), (self.cfg.img_size,),
                            name=f"{split} split")

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

    def batch_panels(self, item: dict) -> list:
        """``show_batch`` panels of one item: the denormalised image and its binary mask (inverted with the spec)."""
        from ..inspect.batch import segmentation_panels

        return segmentation_panels(denormalize(item["input"]), item["target"].numpy(), BINARY_COLORS)

    def batch_legend(self, items: list) -> list:
        """Background (0) and foreground (1), as present in the items' masks."""
        from ..inspect.batch import class_legend

        return class_legend([it["target"].numpy() for it in items], ["background", "foreground"], BINARY_COLORS)

    def checkpoint_model(self, which: str = "best", epoch: int | None = None) -> tuple[torch.nn.Module, dict]:
        """The model (eval mode) of ``checkpoints/<which>.pt`` in the trial's local folder, never another file.

        Args:
            which: ``"best"`` or ``"last"``.
            epoch: the epoch the file must hold (``best``: the fit's best epoch, ``last``: its last); None: any.

        Returns:
            ``(model, {"file": "checkpoints/<which>.pt", "epoch": int})``, the file relative to the trial folder.

        Raises:
            BestCheckpointError: the file is missing or unreadable, or holds another epoch than ``epoch``
                (the message names the file, both epochs and what to do).
        """
        path = self.ws.local / "checkpoints" / f"{which}.pt"
        try:
            ckpt = load_checkpoint(path, purpose="evaluate")
        except (RuntimeError, ValueError) as err:  # torn (and no readable .prev copy), or foreign content
            ckpt, why = None, f"unreadable ({err})"
        else:
            why = "missing"
        folders = " and ".join(dict.fromkeys(str(f) for f in (self.ws.workdir, self.ws.local)))
        fix = f". To train this trial again, delete {folders} and rerun the study (the other trials are kept)"
        if ckpt is None:
            raise BestCheckpointError(f"{path} is {why}" + (f": the training's best epoch is {epoch}" if epoch else "")
                                      + f"; no result is written from another checkpoint{fix}")
        held = int(ckpt.get("epoch", -1))
        if epoch is not None and held != int(epoch):
            raise BestCheckpointError(f"{path} holds epoch {held}, but the training recorded epoch {epoch} as "
                                      f"{which} (a kill between the two checkpoint writes?); its numbers would "
                                      f"describe another epoch, so no result is written{fix}")
        model = self.build_model(pretrained=False)
        model.load_state_dict(ckpt["model"])
        return model.to(self.device).eval(), {"file": f"checkpoints/{which}.pt", "epoch": held}

    @torch.no_grad()
    def evaluate(self, split: str = "val", which: str = "best", objects: bool = True, model=None) -> dict:
        """Loss and :class:`BinaryMetrics` scores of checkpoint ``which`` (:meth:`checkpoint_model`, or ``model``
        when given) on un-augmented ``split``.

        Returns:
            ``{"loss", "fg_dice", "fg_iou", "precision", "recall", "pixel_ap"}`` floats, plus ``"object_ap50"``,
            ``"objects_true"``, ``"objects_pred"`` when ``objects``.

        Raises:
            BestCheckpointError: no such checkpoint (see :meth:`checkpoint_model`).
        """
        model = self.checkpoint_model(which)[0] if model is None else model
        data = self.dataset(split, "none")
        self.objects = bool(objects)
        try:
            return self.score(model, data)
        finally:
            self.objects = False

    def predict(self, split: str = "val", n: int = 4, which: str = "best") -> dict:
        """The first ``n`` samples of ``split`` at their original size (:func:`seglib.predict.predict_logits`):
        ``{"names", "images" (uint8 H x W x 3), "true" (uint8 H x W in {0, 1}, inverted with the spec),
        "pred" (uint8 H x W, probability > 0.5), "prob" (float32 H x W)}``.

        Raises:
            BestCheckpointError: no such checkpoint (:meth:`checkpoint_model`); DataError: unreadable files.
        """
        out = {"names": [], "images": [], "true": [], "pred": [], "prob": []}
        samples = self.splits[split][:n]
        for s, d, (logits,) in predict_logits(self.checkpoint_model(which)[0], samples, self.cfg.img_size, self.device,
                                              self.cfg.batch_size):
            prob = torch.sigmoid(logits[0]).numpy()
            true = read_mask(s.mask, 2)
            for k, v in zip(out, (s.name, d["image"], (1 - true if self.invert else true).astype(np.uint8),
                                  (prob > 0.5).astype(np.uint8), prob)):
                out[k].append(v)
        return out


def load_result(folder) -> dict | None:
    """``folder/result.json`` of a finished trial, or None; keys written before issue 9 (``val_dice``, ...) come back
    renamed (:func:`seglib.metrics.upgrade_keys`), and a format-1 result gets ``evaluated`` = its ``best.pt`` and
    ``best_epoch`` (what it claimed; format 2 checks it before writing)."""
    path = Path(folder) / "result.json"
    if not path.exists():
        return None
    try:
        res = upgrade_keys(json.loads(path.read_text()), BinaryMetrics.task)
    except json.JSONDecodeError:
        return None
    res.setdefault("evaluated", {"file": "checkpoints/best.pt", "epoch": res.get("best_epoch")})  # format 1
    return res


def hparams_of(spec: dict) -> dict:
    """The spec's values as TensorBoard HParams (``str``/``float``/``int``/``bool`` only)."""
    return {k: v if isinstance(v, (str, int, float, bool)) else str(v) for k, v in spec.items()
            if k not in ("num_workers", "checkpoint_minutes", "loss_kwargs")}


HPARAMS_FILE = "events.out.tfevents.0.seglib.hparams"
"""The one file holding a trial's HParams session (a fixed name: a trial finished again after a kill replaces it
instead of adding a second session with the same step)."""


def write_hparams(tb_dir: Path, spec: dict, metrics: dict, mirrors: tuple[Path, ...] = ()) -> None:
    """Write one HParams session (spec values, ``hparam/*`` metrics) into the trial's TensorBoard folder as
    :data:`HPARAMS_FILE`, atomically (written in a temporary folder beside it, then renamed over the old one).
    Other ``*.hparams`` event files (from a try interrupted between this write and ``result.json``) are removed
    here and in the ``mirrors`` folders (the WORKDIR copy), so TensorBoard shows one session, no step twice; so is
    the temporary folder of a write killed midway."""
    import tempfile

    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    tb_dir = Path(tb_dir)
    tb_dir.mkdir(parents=True, exist_ok=True)
    for stale in tb_dir.parent.glob(".hparams-*"):  # the temporary folder of a try killed while writing
        shutil.rmtree(stale, ignore_errors=True)
    exp, ssi, sei = hparams(hparams_of(spec), metrics)
    with tempfile.TemporaryDirectory(dir=tb_dir.parent, prefix=".hparams-") as tmp:
        with SummaryWriter(tmp, filename_suffix=".hparams") as w:
            for s in (exp, ssi, sei):
                w.file_writer.add_summary(s)
            for k, v in metrics.items():
                w.add_scalar(k, v, 0)
        (written,) = Path(tmp).glob("*.hparams")
        os.replace(written, tb_dir / HPARAMS_FILE)
    for folder in (tb_dir, *mirrors):
        for old in Path(folder).glob("*tfevents*.hparams"):
            if old.name != HPARAMS_FILE:
                old.unlink(missing_ok=True)


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
            reuse: bool = True, epoch_table: bool = True) -> dict:
    """Run (or resume, or reuse) one trial and return its result dict (also in ``workdir/result.json``).

    ``callbacks`` go to the trainer; ``progress`` shows its tqdm bars; ``epoch_table`` prints one indented
    line per epoch (:class:`seglib.train.progress.EpochTable`); ``reuse`` takes a finished result of the
    same spec from a sibling study instead of training.

    Returns:
        ``{"format", "study", "key", "hash", "params", "spec", "state" ("complete"|"pruned"),
        "epochs_completed", "best_epoch", "best_val_fg_dice", "stopped_early", "steps", "steps_per_epoch",
        "final" {train_loss, train_fg_dice, val_loss, val_fg_dice, val_fg_iou, val_pixel_ap, val_object_ap50, ...}
        (scores of ``best.pt``), "evaluated" {"file": "checkpoints/best.pt", "epoch": best_epoch} (relative to the
        trial folder; ``last.pt`` and the last epoch, said in a line, when no epoch had a val Dice to rank), "history",
        "resumed_from", "reused_from", "seconds"}``.

    Raises:
        StopTrial: with state ``"lost"`` when a callback says another worker owns the trial now.
        BestCheckpointError: ``best.pt`` is missing or holds another epoch than the fit's best (nothing written).
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
    table = [EpochTable(prefix="      ")] if epoch_table else []
    trainer = trial.trainer(callbacks=[*callbacks, *table], progress=progress)
    state = "complete"
    try:
        trainer.fit()
    except StopTrial as stop:
        if stop.state != "pruned":
            raise
        state = "pruned"
    history = list(trainer.history)
    if trainer.best.epoch is None:  # val Dice NaN in every epoch (a diverged trial): nothing to rank, no best.pt
        print(f"      {key}: no epoch had a val Dice to rank, so there is no best.pt; scored on last.pt (epoch "
              f"{trainer.epoch})")
        model, evaluated = trial.checkpoint_model("last", trainer.epoch)
    else:  # the fit's best epoch, or an error
        model, evaluated = trial.checkpoint_model("best", trainer.best.epoch)
    final = {f"train_{k}": v for k, v in trial.evaluate("train", objects=False, model=model).items()
             if k in ("loss", "fg_dice", "fg_iou")}
    final.update({f"val_{k}": v for k, v in trial.evaluate("val", model=model).items()})
    result = {
        "format": RESULT_FORMAT, "study": study, "key": key, "hash": h, "params": params, "spec": trial.spec,
        "state": state, "epochs_completed": trainer.epoch, "best_epoch": trainer.best.epoch,
        "best_val_fg_dice": trainer.best.value, "stopped_early": trainer.early.should_stop, "steps": trainer.step,
        "steps_per_epoch": trainer.n_batches, "train_images": len(trial.splits["train"]),
        "final": final, "evaluated": evaluated, "history": history, "resumed_from": trainer.resumed_from,
        "reused_from": None,
        "seconds": time.monotonic() - t0,
    }
    metrics = {"hparam/val_fg_dice": final["val_fg_dice"], "hparam/val_loss": final["val_loss"],
               "hparam/train_fg_dice": final["train_fg_dice"]}
    write_hparams(trial.ws.local / "tensorboard", trial.spec, metrics, (trial.ws.workdir / "tensorboard",))
    mirror(trial.ws.local, trial.ws.workdir, ["tensorboard"])
    atomic_write_json(folder / "result.json", result)
    return result
