"""A semantic-segmentation experiment from data to summary: what the JetCar notebook calls, step by step.

``run = SegmentationRun(cfg, data=DATA)`` then ``run.prepare()`` (fetch, check, count),
``run.train()`` (resumable), ``run.evaluate()``, ``run.viewer()``, ``run.export()`` and
``run.write_summary()``. Each step is plain and tested; the notebook only sets parameters and shows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .config import TrainConfig
from .data.cache import cache_folder, run_sizes
from .data.checks import check_samples, class_id_reader
from .data.classes import default_class_table, palette
from .data.datasets import SegmentationDataset
from .data.io import DataError
from .data.layouts import Splits, load_splits
from .data.transforms import denormalize, size_fn
from .deploy import load_run
from .experiment import Experiment
from .losses import build_loss
from .metrics import SegmentationMetrics
from .predict import predict_samples


def auto_augment(class_names) -> str:
    """``AUGMENT="auto"``: ``"flip"`` (horizontal flips, scale, rotation, brightness) unless a class name says left
    or right (JetCar's lanes and arrows: a flip would swap them), then ``"street"`` (zoom, tilt, brightness, noise;
    no flip). A pure function of the class names, so a resumed run resolves it the same way."""
    sided = any(w in str(n).lower().replace("-", "_").split("_") for n in class_names for w in ("left", "right"))
    return "street" if sided else "flip"


class SegmentationRun(Experiment):
    """One semantic-segmentation experiment: data source, layout, model, training, evaluation, export, summary.

    Args:
        cfg: the training configuration (``cfg.experiment`` names the work folder).
        data: a ``DATA`` value (see :func:`seglib.data.sources.resolve_data`); ``"synthetic"`` = streets.
        workdir: results folder (default: Drive on Colab, ``runs/<experiment>`` elsewhere).
        class_names: one name per class (default: JetCar's for 22 classes, CamVid's for 12).
        layout: ``"auto"``, ``"jetcar"`` or ``"pairs"`` (:data:`seglib.data.layouts.SEGMENTATION_LAYOUTS`; a
            depth layout such as ``"modest"`` is refused by :meth:`prepare` with a KeyError listing these).
        pair_by: ``PAIR_BY``, a regular expression capturing the id that an image's and its mask's names share
            (e.g. ``r"^(\\d+)_"`` for DRIVE's ``21_training.tif`` / ``21_manual1.gif``), for the pairs layout
            (:mod:`seglib.data.pairing`; a ``pairs.csv`` needs no setting).
        data_sha256: expected SHA-256 of a zip/download.
        smoke: keep only a few images per split (CPU runs in seconds).
        synthetic_kwargs: arguments of the synthetic generator (counts, size, seed).
        notebook: name recorded in ``summary.json``.
        device: ``"cpu"``/``"cuda"``; default CUDA when available.

    Raises:
        ValueError: ``class_names`` of the wrong length.
    """

    SYNTHETIC = "streets"
    SMOKE_SYNTHETIC = {"n_train": 24, "n_val": 8, "n_test": 4, "size": 96}
    SMOKE_COUNTS = {"train": 16, "val": 8, "test": 4}

    def __init__(self, cfg: TrainConfig, data: str = "synthetic", *, workdir=None, local=None,
                 class_names: list[str] | None = None, layout: str = "auto", data_sha256: str | None = None,
                 smoke: bool = False, synthetic_kwargs: dict | None = None, notebook: str = "jetcar_segmentation",
                 device: str | None = None, pair_by: str | None = None):
        super().__init__(cfg, data, workdir=workdir, local=local, layout=layout, data_sha256=data_sha256,
                         synthetic_kwargs=synthetic_kwargs, smoke=smoke, notebook=notebook, device=device)
        self.pair_by = pair_by
        self.table = default_class_table(cfg.n_classes, class_names)
        self.class_names = [name for _, name, _ in self.table]
        self.colors = palette(cfg.n_classes, self.table)
        if cfg.augment == "auto":
            cfg.augment = auto_augment(self.class_names)

    # ------------------------------------------------------------------ data
    def read_layout(self, root: Path) -> tuple[str, Splits]:
        """``(layout, splits)`` of a segmentation layout (:func:`seglib.data.layouts.load_splits`)."""
        return load_splits(root, self.layout, seed=self.cfg.seed, pair_by=self.pair_by)

    def check(self) -> None:
        """Decode every image and mask of every split once (test images too): no corrupt, truncated or bomb
        file, masks of their image's size holding class ids -- or binarised by ``cfg.mask_threshold`` / scaled
        by ``cfg.mask_scale`` (:func:`seglib.data.checks.check_samples`)."""
        check_samples([s for split in self.splits.values() for s in split], self.mask_reader())

    def mask_reader(self):
        """``path -> class ids`` with this run's settings (:func:`seglib.data.checks.class_id_reader`)."""
        return class_id_reader(self.cfg.n_classes, self.cfg.ignore_index, self.cfg.mask_threshold, self.cfg.mask_scale)

    def dataset(self, split: str, augment: str | None = None) -> SegmentationDataset:
        """The dataset of ``split`` with the configured resize schedule and :meth:`augmentation`, its resized
        images cached as ``cfg.cache`` says (RAM, or ``<local>/cache/resized``: :mod:`seglib.data.cache`)."""
        ds = SegmentationDataset(self.splits[split], self.cfg.n_classes,
                                 size_fn(self.cfg.img_size, self.cfg.resize_schedule),
                                 self.augmentation(split, augment), self.cfg.seed, self.cfg.ignore_index,
                                 self.cfg.mask_threshold, self.cfg.mask_scale)
        return ds.use_cache(self.cfg.cache, cache_folder(self.ws.local),
                            run_sizes(self.cfg.img_size, self.cfg.resize_schedule, self.cfg.epochs), name=f"{split} split")

    # ------------------------------------------------------------------ task hooks
    def loss(self):
        return build_loss(self.cfg.loss, self.cfg.n_classes, self.cfg.ignore_index, **self.cfg.loss_kwargs)

    def metrics_factory(self) -> SegmentationMetrics:
        return SegmentationMetrics(self.cfg.n_classes, self.cfg.ignore_index)

    def render_grid(self, inputs, outputs, targets) -> np.ndarray:
        """image | true mask | predicted mask rows for TensorBoard (class colours)."""
        from .inspect.render import prediction_grid

        images = [denormalize(x) for x in inputs]
        return prediction_grid(images, [t.numpy() for t in targets], [o.argmax(0).numpy() for o in outputs],
                               self.colors, self.cfg.ignore_index)

    def batch_panels(self, item: dict) -> list:
        """``show_batch`` panels of one item: the denormalised image and its class-colour mask (ignored grey)."""
        from .inspect.batch import segmentation_panels

        mask = item["target"].numpy() if "target" in item else None
        return segmentation_panels(denormalize(item["input"]), mask, self.colors, self.cfg.ignore_index)

    def batch_legend(self, items: list) -> list:
        """The classes present in the items' masks (``show_batch``'s legend)."""
        from .inspect.batch import class_legend

        masks = [it["target"].numpy() for it in items if "target" in it]
        return class_legend(masks, self.class_names, self.colors, self.cfg.ignore_index)

    # ------------------------------------------------------------------ evaluation and inspection
    @torch.no_grad()
    def evaluate(self, which: str = "best", split: str = "val") -> dict:
        """Loss, mIoU, Dice, pixel accuracy, per-class IoU and confusion matrix of ``which`` on ``split``."""
        size = self.eval_size()
        ds = SegmentationDataset(self.splits[split], self.cfg.n_classes, size, "none", self.cfg.seed, self.cfg.ignore_index,
                                 self.cfg.mask_threshold, self.cfg.mask_scale)
        scores = self.score(self.load_model(which), ds)
        scores["img_size"] = size
        self.final_metrics = scores
        return scores

    def predictions(self, split: str = "val", which: str = "best", max_samples: int = 200) -> dict:
        """Images, true masks and predictions of ``split`` at original resolution, for viewers and plots."""
        model = self.load_model(which)
        samples = self.splits[split][:max_samples]
        out = {"names": [], "images": [], "true": [], "pred": []}
        for s, image, pred, _ in predict_samples(model, samples, self.eval_size(), self.device, self.cfg.batch_size):
            out["names"].append(s.name)
            out["images"].append(image)
            out["pred"].append(pred)
            out["true"].append(self.mask_reader()(s.mask) if s.mask else None)
        return out

    def viewer(self, split: str = "val", max_samples: int = 200):
        """An ipywidgets :class:`~seglib.inspect.widgets.SegmentationViewer` over ``split``."""
        from .inspect.widgets import SegmentationViewer

        p = self.predictions(split, max_samples=max_samples)
        return SegmentationViewer(p["images"], p["true"], p["pred"], class_names=self.class_names,
                                  colors=self.colors, ignore_index=self.cfg.ignore_index, names=p["names"])

    # ------------------------------------------------------------------ export and summary
    def export(self, split: str | None = None, which: str = "best") -> Path:
        """Predict ``split`` (default ``test``, or ``val`` when there is no test split) through
        :func:`seglib.deploy.load_run` (the checkpoint alone, as any later user of the model) and write
        ``WORKDIR/predictions.zip``: ``Pred_*.png`` class ids plus ``preview/Pred_*.png`` colour overlays."""
        split = split or ("test" if self.splits.get("test") else "val")
        samples = self.splits[split]
        print(f"predicting the {split} split")
        self.predictions_zip = load_run(self, which, self.device).predict(
            [s.image for s in samples], names=[s.name for s in samples], out=self.ws.workdir / "predictions.zip",
            batch_size=self.cfg.batch_size, progress=False).path
        return self.predictions_zip

    def summary(self) -> dict:
        """The common ``summary.json`` with ``final_metrics`` = loss, miou, dice, pixel_accuracy, img_size and
        per-class IoU by class name."""
        out = super().summary()
        fm = {k: v for k, v in self.final_metrics.items() if k in ("loss", "miou", "dice", "pixel_accuracy", "img_size")}
        if "iou_per_class" in self.final_metrics:
            fm["iou_per_class"] = dict(zip(self.class_names, self.final_metrics["iou_per_class"]))
        out["final_metrics"] = fm
        return out


__all__ = ["DataError", "SegmentationRun"]
