"""Depth + foreground-mask experiments (seed 000): what ``notebooks/depth_segmentation.ipynb`` calls.

``run = DepthSegRun(depth_config(...), DATA)`` then ``run.prepare()``, ``run.train()`` (resumable),
``run.evaluate()``, ``run.viewer()``, ``run.export()``, ``run.write_summary()``. With several losses
:class:`DepthLossComparison` (the notebook's ``DepthSegStudy``, an alias) trains one run per loss in
``WORKDIR/<loss>/`` and writes the comparison.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from .config import TrainConfig
from .data.cache import cache_folder, run_sizes
from .data.checks import check_samples
from .data.depth import DepthSegDataset, load_inputs, load_sample, load_targets
from .data.depth_layouts import load_depth_splits
from .data.io import DataError
from .data.splits import subset_evenly
from .data.transforms import denormalize, size_fn
from .deploy import load_run
from .experiment import Experiment, experiment_name
from .losses import DEPTH_LOSSES, LOSSES, build_loss
from .metrics import DepthSegMetrics
from .predict import predict_logits
from .runtime import workspace
from .train.checkpoint import atomic_write_json

DEFAULT_SCHEDULE = {1: 96, 4: 160, 9: 224}
"""Seed 000's progressive resizing: 96 px for epochs 1-3, 160 px for 4-8, 224 px for 9-11."""
FINAL_KEYS = ("loss", "mask_iou", "mask_iou_soft", "rmse", "abs_rel", "delta1", "img_size")


def depth_config(experiment: str = "depthseg", inputs: str = "bg+bg_fg", width: int = 16,
                 loss: str = "rmse_bce_dice", img_size: int = 224, resize_schedule: dict | None = DEFAULT_SCHEDULE,
                 batch_size: int = 32, epochs: int = 11, lr: float = 0.01, augment: str = "photometric",
                 monitor: str = "val_loss", scheduler_patience: int = 2, min_lr: float = 1e-6, **overrides) -> TrainConfig:
    """Seed 000's training set-up as a :class:`TrainConfig`: DSResNet (``n_classes=1``), SGD (momentum 0.9,
    no weight decay, one LR for all layers), ReduceLROnPlateau (factor 0.1, ``scheduler_patience``,
    ``min_lr``) stepped on ``monitor``, progressive resizing, photometric augmentation, no early stopping.
    ``overrides`` set any other TrainConfig field (e.g. ``checkpoint_minutes``, ``seed``, ``log_images``)."""
    fields = dict(experiment=experiment, model="dsresnet", model_kwargs={"inputs": inputs, "width": int(width)},
                  encoder_weights=None, n_classes=1, img_size=img_size, resize_schedule=resize_schedule,
                  augment=augment, batch_size=batch_size, loss=loss, optimizer="sgd", lr=lr, encoder_lr_ratio=1.0,
                  weight_decay=0.0, encoder_weight_decay=None, scheduler="plateau",
                  scheduler_kwargs={"factor": 0.1, "patience": scheduler_patience, "min_lr": min_lr},
                  monitor=monitor, early_stop_patience=None, epochs=epochs)
    fields.update(overrides)
    return TrainConfig(**fields)


def _grey3(x: np.ndarray) -> np.ndarray:
    return np.repeat((np.clip(x, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, 2)


def depth_grid(images, true_masks, pred_probs, true_depths, pred_depths, valids=None) -> np.ndarray:
    """TensorBoard grid, one row per sample: image | true mask | predicted mask probability | true depth |
    predicted depth (magma colour map, 1 = near = bright; invalid true depth grey); 2 px white separators.

    Args: N ``uint8 H x W x 3`` images and N float ``H x W`` arrays (masks/probabilities in [0, 1], depths
    in [0, 1]); ``valids`` N bool ``H x W`` or None. Returns ``uint8 (N H + 2 (N - 1)) x (5 W + 8) x 3``.
    """
    from .inspect.render import depth_to_rgb

    rows = []
    for k, image in enumerate(images):
        td = np.where(valids[k], true_depths[k], np.nan) if valids is not None else true_depths[k]
        panels = [image, _grey3(true_masks[k]), _grey3(pred_probs[k]), depth_to_rgb(td.astype(np.float32)),
                  depth_to_rgb(pred_depths[k].astype(np.float32))]
        h = image.shape[0]
        sep = np.full((h, 2, 3), 255, np.uint8)
        rows.append(np.concatenate([x for p in panels for x in (p, sep)][:-1], 1))
    out = []
    for r in rows:
        out += [r, np.full((2, r.shape[1], 3), 255, np.uint8)]
    return np.concatenate(out[:-1], 0)


class DepthSegRun(Experiment):
    """One depth + mask experiment: data, DSResNet, training, evaluation, viewer, export, summary.

    Args:
        cfg: from :func:`depth_config` (``cfg.model_kwargs["inputs"]`` is ``"bg+bg_fg"`` or ``"rgb"``).
        data: a ``DATA`` value (:func:`seglib.data.sources.resolve_data`); ``"synthetic"`` = depth_scenes.
        workdir / local: results and fast local folders (see :func:`seglib.runtime.workspace`).
        layout: ``"auto"``, ``"modest"``, ``"fgbg"`` or ``"rgbd"`` (:mod:`seglib.data.depth_layouts`).
        near: ``"auto"``, ``"bright"`` (larger value = nearer) or ``"dark"`` (larger = farther) depth files.
        val_fraction: share of samples drawn (seeded by ``cfg.seed``) for validation.
        data_sha256: expected SHA-256 of a zip/download; smoke: a few samples only;
        synthetic_kwargs: arguments of :func:`seglib.data.synthetic.depth_scenes.generate_depth_scenes`.
    """

    SYNTHETIC = "depth_scenes"
    SMOKE_SYNTHETIC = {"n_bg": 3, "n_fg": 3, "per_pair": 2, "size": 96}
    SMOKE_COUNTS = {"train": 12, "val": 4}

    def __init__(self, cfg: TrainConfig, data: str = "synthetic", *, workdir=None, local=None, layout: str = "auto",
                 near: str = "auto", val_fraction: float = 0.2, data_sha256: str | None = None, smoke: bool = False,
                 synthetic_kwargs: dict | None = None, notebook: str = "depth_segmentation", device: str | None = None):
        super().__init__(cfg, data, workdir=workdir, local=local, layout=layout, data_sha256=data_sha256,
                         synthetic_kwargs=synthetic_kwargs, smoke=smoke, notebook=notebook, device=device)
        self.near, self.val_fraction = near, val_fraction
        self.inputs = cfg.model_kwargs.get("inputs", "bg+bg_fg")

    # ------------------------------------------------------------------ data
    def read_layout(self, root: Path) -> tuple[str, dict]:
        """``(layout, splits)`` of a depth layout (:func:`seglib.data.depth_layouts.load_depth_splits`).

        Raises:
            DataError: layout problems, or ``INPUTS="bg+bg_fg"`` on data without backgrounds.
        """
        layout, splits = load_depth_splits(root, self.layout, seed=self.cfg.seed, val_fraction=self.val_fraction,
                                           near=self.near)
        if self.inputs == "bg+bg_fg" and any(s.bg is None for s in splits["train"]):
            raise DataError(f"INPUTS='bg+bg_fg' needs a background per sample but {root} ({layout} layout) has "
                            "none; set INPUTS='rgb' for RGB-D data")
        return layout, splits

    def check(self) -> None:
        """Decode every image, mask, depth map and background of every split once: no corrupt, truncated or
        bomb file, masks and depth maps of their image's size (:func:`seglib.data.checks.check_samples`; masks
        are binarised by the explicit threshold of :func:`seglib.data.depth.read_binary_mask`, so JPEG masks
        are accepted), then :meth:`check_depth_direction`."""
        check_samples([s for split in self.splits.values() for s in split])
        self.check_depth_direction()

    def describe(self) -> str:
        """The line :meth:`prepare` prints: folder, layout, inputs and samples per non-empty split."""
        return (f"data: {self.root} ({self.layout} layout, INPUTS={self.inputs}) -- "
                + ", ".join(f"{k}: {len(v)} samples" for k, v in self.splits.items() if v))

    def check_depth_direction(self, n: int = 24) -> tuple[int, int]:
        """Compare the mean depth inside each mask with a 15 px ring around it on up to ``n`` train samples;
        warn when the foreground is mostly *farther* (the depth files' near setting is probably inverted).

        Returns:
            ``(samples whose foreground is nearer, samples checked)``.
        """
        nearer = checked = 0
        for s in subset_evenly(self.splits["train"], n):
            d = load_targets(s)
            m, v = d["mask"].astype(bool), d["valid"].astype(bool)
            ring = cv2.dilate(d["mask"], np.ones((15, 15), np.uint8)).astype(bool) & ~m & v
            if (m & v).any() and ring.any():
                checked += 1
                nearer += int(d["depth"][m & v].mean() > d["depth"][ring].mean())
        print(f"depth check: foreground nearer than its surroundings in {nearer} of {checked} samples")
        if checked and nearer < checked / 2:
            warnings.warn(f"in {checked - nearer} of {checked} samples the foreground reads as farther than what "
                          "surrounds it: the depth files probably use the other convention. Set DEPTH_NEAR='dark' "
                          "(larger value = farther) or 'bright' (larger = nearer)", UserWarning, stacklevel=2)
        return nearer, checked

    def preview(self, n: int = 4, size: int = 128, split: str = "train") -> np.ndarray:
        """``uint8`` grid of ``n`` samples of ``split`` at ``size`` px: bg (or image) | bg_fg | mask | depth
        (magma, bright = near, invalid grey), to see that the data and its depth convention are right."""
        from .inspect.render import depth_to_rgb

        rows = []
        for s in subset_evenly(self.splits[split], n):
            d = load_sample(s, self.inputs)
            r = {k: cv2.resize(v.astype(np.float32) if k != "image" and k != "bg" else v, (size, size),
                                 interpolation=cv2.INTER_NEAREST) for k, v in d.items()}
            depth = depth_to_rgb(np.where(r["valid"] > 0.5, r["depth"], np.nan).astype(np.float32))
            rows.append(np.concatenate([r.get("bg", r["image"]), r["image"], _grey3(r["mask"]), depth], 1))
        return np.concatenate(rows, 0)

    def dataset(self, split: str, augment: str | None = None) -> DepthSegDataset:
        """``split``'s dataset with the resize schedule and :meth:`augmentation`."""
        ds = DepthSegDataset(self.splits[split], size_fn(self.cfg.img_size, self.cfg.resize_schedule),
                             self.inputs, self.augmentation(split, augment), self.cfg.seed)
        return ds.use_cache(self.cfg.cache, cache_folder(self.ws.local),
                            run_sizes(self.cfg.img_size, self.cfg.resize_schedule, self.cfg.epochs), name=f"{split} split")

    # ------------------------------------------------------------------ task hooks
    def loss(self):
        """The configured loss (``rmse_bce_dice``, ``ssim_dice``, ``rmse_bce``; :mod:`seglib.losses.depth`)."""
        return build_loss(self.cfg.loss, 1, None, **self.cfg.loss_kwargs)

    def metrics_factory(self) -> DepthSegMetrics:
        """A fresh :class:`~seglib.metrics.DepthSegMetrics` (mask_iou, mask_iou_soft, rmse, abs_rel, delta1)."""
        return DepthSegMetrics()

    def render_grid(self, inputs, outputs, targets) -> np.ndarray:
        """bg_fg | true mask | predicted mask | true depth | predicted depth, for TensorBoard."""
        images = (inputs["bg_fg"] if isinstance(inputs, dict) else inputs).detach().cpu()
        depth, mask = (torch.sigmoid(o.detach().float().cpu())[:, 0].numpy() for o in outputs)
        return depth_grid([denormalize(x) for x in images], targets["mask"][:, 0].numpy(), mask,
                          targets["depth"][:, 0].numpy(), depth, targets["valid"][:, 0].numpy() > 0.5)

    def batch_panels(self, item: dict) -> list:
        """``show_batch`` panels of one item: bg and bg_fg (or image) denormalised, mask, depth (invalid grey)."""
        from .inspect.batch import depth_sample_panels

        x, t = item["input"], {k: v[0].numpy() for k, v in item["target"].items()}
        images = {k: denormalize(v) for k, v in x.items()} if isinstance(x, dict) else {"image": denormalize(x)}
        return depth_sample_panels(images, t["mask"], t["depth"], t["valid"])

    # ------------------------------------------------------------------ evaluation and inspection
    @torch.no_grad()
    def evaluate(self, which: str = "best", split: str = "val") -> dict:
        """Loss, ``mask_iou`` (threshold 0.5), ``mask_iou_soft`` (seed 000's), ``rmse``, ``abs_rel``, ``delta1`` of
        checkpoint ``which`` on ``split`` at :meth:`eval_size`; stored as ``final_metrics``."""
        size = self.eval_size()
        ds = DepthSegDataset(self.splits[split], size, self.inputs, "none", self.cfg.seed)
        scores = self.score(self.load_model(which), ds)
        scores["img_size"] = size
        self.final_metrics = scores
        return scores

    @torch.no_grad()
    def predict(self, split: str = "val", which: str = "best", max_samples: int | None = None,
                targets: bool = True):
        """Yield ``(sample, data, pred_depth, pred_prob)`` per sample of ``split`` at its original size.

        ``data`` is :func:`seglib.data.depth.load_sample`'s dict (``targets=False``: only
        :func:`~seglib.data.depth.load_inputs`' ``image`` [and ``bg``], mask and depth are not read);
        ``pred_depth`` (float32 H x W, [0, 1], 1 = near) and ``pred_prob`` (float32 H x W foreground
        probability) are the network outputs at :meth:`eval_size`, resized back bilinearly before the sigmoid.

        Raises:
            FileNotFoundError: no checkpoint yet; DataError: unreadable files.
        """
        two = self.inputs == "bg+bg_fg"
        outputs = predict_logits(self.load_model(which), self.splits[split][:max_samples], self.eval_size(), self.device,
                                 self.cfg.batch_size, load=lambda s: (load_sample if targets else load_inputs)(s, self.inputs),
                                 input_keys=("image", "bg") if two else ("image",),
                                 model_input=(lambda x: {"bg": x["bg"], "bg_fg": x["image"]}) if two else None)
        for s, d, (depth_logits, mask_logits) in outputs:
            yield s, d, torch.sigmoid(depth_logits[0]).numpy(), torch.sigmoid(mask_logits[0]).numpy()

    def predictions(self, split: str = "val", which: str = "best", max_samples: int = 200) -> dict:
        """Lists ``names, images, true_masks, pred_masks (p > 0.5), true_depths, pred_depths, valid`` for the viewer."""
        out = {k: [] for k in ("names", "images", "true_masks", "pred_masks", "true_depths", "pred_depths", "valid")}
        for s, d, pd, pm in self.predict(split, which, max_samples):
            for k, v in zip(out, (s.name, d["image"], d["mask"], (pm > 0.5).astype(np.uint8), d["depth"], pd,
                                  d["valid"].astype(bool))):
                out[k].append(v)
        return out

    def viewer(self, split: str = "val", max_samples: int = 200):
        """A :class:`~seglib.inspect.widgets.DepthSegViewer` over ``split`` (slider, true/pred toggles,
        error map, per-sample IoU and RMSE)."""
        from .inspect.widgets import DepthSegViewer

        p = self.predictions(split, max_samples=max_samples)
        return DepthSegViewer(p["images"], p["true_masks"], p["pred_masks"], p["true_depths"], p["pred_depths"],
                              p["valid"], names=p["names"])

    def export(self, split: str | None = None, which: str = "best") -> Path:
        """Write ``WORKDIR/predictions.zip``: ``masks/<name>.png`` (0/255, probability > 0.5) and
        ``depth/<name>.png`` (16-bit, ``round(d * 65535)``, bright = near) at each image's size, for
        ``split`` (default ``test`` if it has samples, else ``val``)."""
        split = split or ("test" if self.splits.get("test") else "val")
        samples = self.splits[split]
        print(f"predicting the {split} split")
        self.predictions_zip = load_run(self, which, self.device).predict(
            [s.image for s in samples], backgrounds=[s.bg for s in samples] if self.inputs == "bg+bg_fg" else None,
            names=[s.name for s in samples], out=self.ws.workdir / "predictions.zip", batch_size=self.cfg.batch_size,
            progress=False).path
        return self.predictions_zip

    def summary(self) -> dict:
        """The common ``summary.json`` with ``final_metrics`` = loss, mask_iou, mask_iou_soft, rmse, abs_rel, delta1, img_size."""
        out = super().summary()
        out["final_metrics"] = {k: v for k, v in self.final_metrics.items() if k in FINAL_KEYS}
        out["data"]["inputs"] = self.inputs
        return out


class DepthLossComparison:
    """``LOSS`` as one name (one run in WORKDIR) or a list (one resumable run per loss in ``WORKDIR/<loss>/``):
    several :class:`DepthSegRun` experiments composed, one per loss (the notebook imports it as
    :data:`DepthSegStudy`).

    ``summary.json`` in WORKDIR holds the first loss's run (``final_metrics``) plus ``comparison``
    (every loss's final metrics) and ``runs`` (their folders). ``cfg.loss_kwargs`` applies to every loss,
    or, when its keys are loss names, per loss (``{"ssim_dice": {"ssim_weight": 1}}``). Other arguments
    go to :class:`DepthSegRun`.

    Raises:
        KeyError: a name that is not a depth + mask loss (``"dice"``, ``"ce"``, ... take mask logits only;
            the message lists the depth losses); ValueError: an empty or repeated list.
    """

    def __init__(self, cfg: TrainConfig, data: str, losses, *, workdir=None, local=None, **kwargs):
        self.t0 = time.monotonic()
        self.nested = not isinstance(losses, str)
        names = list(losses) if self.nested else [losses]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"LOSS must be a loss name or a list of distinct names, got {losses!r}")
        for n in names:
            if str(n).lower() not in DEPTH_LOSSES:
                raise KeyError(f"unknown depth loss {n!r}; valid loss names for depth + mask: {', '.join(DEPTH_LOSSES)}"
                               + (" (a segmentation loss takes mask logits only)" if n in LOSSES else ""))
        per_loss = bool(cfg.loss_kwargs) and set(cfg.loss_kwargs) <= set(DEPTH_LOSSES)

        def config(n):
            return dataclasses.replace(cfg, loss=n, loss_kwargs=dict(cfg.loss_kwargs.get(n, {})) if per_loss
                                       else dict(cfg.loss_kwargs))

        if self.nested:
            self.ws = workspace(experiment_name(cfg.experiment, data), workdir, local)
            self.runs = {n: DepthSegRun(config(n), data, workdir=self.ws.workdir / n, local=self.ws.local / n,
                                        **kwargs) for n in names}
        else:
            self.runs = {names[0]: DepthSegRun(config(names[0]), data, workdir=workdir, local=local, **kwargs)}
            self.ws = self.run.ws

    @property
    def run(self) -> DepthSegRun:
        """The first (selected) loss's run: viewer, export and ``final_metrics`` come from it."""
        return next(iter(self.runs.values()))

    @property
    def tensorboard_dir(self) -> Path:
        """Point TensorBoard here: with several losses each is a run of its own."""
        return self.ws.local if self.nested else self.run.tensorboard_dir

    def prepare(self) -> dict:
        """Prepare the first run and share its data and splits with the others."""
        splits = self.run.prepare()
        for r in list(self.runs.values())[1:]:
            r.root, r.layout, r.splits = self.run.root, self.run.layout, splits
        return splits

    def train(self, lr_override: float | None = None, progress: bool = True, epoch_table: bool = True,
              fine_tune_from=None, devices=1) -> dict:
        """Train (or resume) each loss in turn, one line per epoch unless ``epoch_table`` is False
        (:meth:`seglib.experiment.Experiment.train`, also for ``fine_tune_from``: every loss starts from those
        weights, and ``devices``: data-parallel processes); returns ``{loss: FitResult}``."""
        results = {}
        for name, r in self.runs.items():
            if self.nested:
                print(f"== loss {name}: {r.ws.workdir}")
            results[name] = r.train(lr_override=lr_override, progress=progress, epoch_table=epoch_table,
                                    fine_tune_from=fine_tune_from, devices=devices)
        return results

    def evaluate(self, which: str = "best") -> dict:
        """``{loss: final metrics}`` (each run's :meth:`DepthSegRun.evaluate`)."""
        return {name: r.evaluate(which) for name, r in self.runs.items()}

    def report(self) -> str:
        """One line per loss of the runs trained in this session: epochs done, best epoch, where it resumed from
        (the per-epoch table was printed while it trained); ``"<loss>: not trained in this session"`` otherwise."""
        return "\n".join(f"{n}: not trained in this session" if r.fit_result is None else
                         f"{n}: {r.fit_result.epochs_completed} epochs done; best {r.fit_result.best}; resumed from "
                         f"{r.fit_result.resumed_from}" for n, r in self.runs.items())

    def histories(self) -> dict:
        """``{loss: per-epoch history}`` of the runs trained in this session (empty lists otherwise)."""
        return {name: (r.fit_result.history if r.fit_result else []) for name, r in self.runs.items()}

    def plot_comparison(self, metrics=("train_loss", "val_loss", "val_mask_iou", "val_rmse")):
        """Every loss's curves on shared axes (:func:`seglib.inspect.plot_loss_comparison`)."""
        from .inspect import plot_loss_comparison

        return plot_loss_comparison(self.histories(), metrics)

    def summary(self) -> dict:
        """The first run's common summary, plus ``comparison``, ``runs`` and ``selected_loss`` for a list."""
        out = self.run.summary()
        if self.nested:
            out["comparison"] = {n: r.summary()["final_metrics"] for n, r in self.runs.items()}
            out["runs"] = {n: str(r.ws.workdir) for n, r in self.runs.items()}
            out["selected_loss"] = next(iter(self.runs))
            out["tensorboard"] = str(self.ws.workdir)
            out["seconds"] = time.monotonic() - self.t0
        return out

    def write_summary(self) -> Path:
        """Write each run's own ``summary.json`` and ``WORKDIR/summary.json``; return the latter."""
        for r in self.runs.values():
            r.write_summary()
        return atomic_write_json(self.ws.workdir / "summary.json", self.summary(), indent=2, strict=True)


DepthSegStudy = DepthLossComparison
"""The name ``notebooks/depth_segmentation.ipynb`` imports (kept): :class:`DepthLossComparison`."""
