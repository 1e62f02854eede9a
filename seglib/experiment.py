"""What every seglib notebook run shares: work folders, model building and loading, the trainer, and
``summary.json`` in one common form.

A task subclasses :class:`Experiment` and provides ``prepare()`` (fill ``self.splits``),
``dataset(split)``, ``loss()``, ``metrics_factory()``, ``render_grid(...)`` and ``final_metrics``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .config import TrainConfig
from .data.transforms import size_for_epoch
from .models import build_model
from .runtime import pick_device, seed_everything, workspace
from .train.checkpoint import atomic_write_json, load_checkpoint
from .train.trainer import FitResult, Trainer, to_device


def subset_evenly(samples: list, n: int) -> list:
    """``n`` items spread evenly over ``samples`` (deterministic; all of them when there are fewer)."""
    if len(samples) <= n:
        return list(samples)
    idx = np.linspace(0, len(samples) - 1, n).round().astype(int)
    return [samples[i] for i in idx]


class Experiment:
    """Base of the notebook runs.

    Args:
        cfg: the training configuration (``cfg.experiment`` names the work folder).
        data: the ``DATA`` value as the user gave it (recorded in the summary).
        workdir / local: results folder and fast local folder (see :func:`seglib.runtime.workspace`).
        smoke: small, seconds-long run.
        notebook: name recorded in ``summary.json``.
        device: ``"cpu"``/``"cuda"``; default CUDA when available.
    """

    def __init__(self, cfg: TrainConfig, data: str, *, workdir=None, local=None, smoke: bool = False,
                 notebook: str = "", device: str | None = None):
        self.t0 = time.monotonic()
        self.cfg, self.data, self.smoke, self.notebook = cfg, str(data), smoke, notebook
        self.ws = workspace(cfg.experiment, workdir, local)
        self.device = pick_device(device)
        self.splits: dict = {}
        self.root: Path | None = None
        self.layout: str = "auto"
        self.fit_result: FitResult | None = None
        self.final_metrics: dict = {}
        self.predictions_zip: Path | None = None
        self.engine = "seglib"

    # ------------------------------------------------------------------ hooks for tasks
    def dataset(self, split: str):
        raise NotImplementedError

    def loss(self):
        raise NotImplementedError

    def metrics_factory(self):
        raise NotImplementedError

    def render_grid(self, inputs, outputs, targets):
        return None

    def model_kwargs(self) -> dict:
        """Keyword arguments of :func:`seglib.models.build_model` besides the name (default: classes)."""
        return {"classes": self.cfg.n_classes, **self.cfg.model_kwargs}

    # ------------------------------------------------------------------ model and training
    def build_model(self, pretrained: bool = True):
        """Seeded model from the registry; ``pretrained=False`` skips fetching encoder weights (a
        checkpoint will replace them)."""
        seed_everything(self.cfg.seed)
        kwargs = self.model_kwargs()
        if "encoder_weights" not in kwargs and self.cfg.model in ("unet_mobilenet_v2", "smp"):
            kwargs["encoder_weights"] = self.cfg.encoder_weights if pretrained else None
        return build_model(self.cfg.model, **kwargs)

    def trainer(self, lr_override: float | None = None, callbacks=(), progress: bool = True) -> Trainer:
        """A :class:`Trainer` for this run (``fit()`` resumes from the work folder if possible)."""
        if not self.splits:
            raise RuntimeError("call prepare() first")
        return Trainer(self.cfg, self.build_model(), self.dataset("train"), self.dataset("val"), self.ws,
                       loss_fn=self.loss(), metrics_factory=self.metrics_factory, render_grid=self.render_grid,
                       callbacks=callbacks, lr_override=lr_override, device=str(self.device), progress=progress)

    def train(self, lr_override: float | None = None, callbacks=(), progress: bool = True,
              engine: str = "seglib") -> FitResult:
        """Train (or resume, or do nothing if finished) and return the :class:`FitResult`.

        Args:
            engine: ``"seglib"`` (the :class:`Trainer`) or ``"catalyst"`` (Catalyst's ``SupervisedRunner``,
                :func:`seglib.integrations.catalyst_engine.train_catalyst`; needs ``requirements-catalyst.txt``).
                Both write the same checkpoints, so either can resume the other's run.

        Raises:
            ValueError: unknown ``engine``.
            seglib.integrations.catalyst_compat.CatalystMissing: ``"catalyst"`` without Catalyst installed.
        """
        if engine not in ("seglib", "catalyst"):
            raise ValueError(f"ENGINE must be 'seglib' or 'catalyst', got {engine!r}")
        self.engine = engine
        if engine == "catalyst":
            from .integrations.catalyst_engine import train_catalyst

            self.fit_result = train_catalyst(self, lr_override, callbacks, progress)
            return self.fit_result
        self.fit_result = self.trainer(lr_override, callbacks, progress).fit()
        return self.fit_result

    @property
    def tensorboard_dir(self) -> Path:
        """Local TensorBoard folder (point ``%tensorboard --logdir`` here; Drive syncs event files late)."""
        return self.ws.local / "tensorboard"

    def load_model(self, which: str = "best"):
        """The model in eval mode with weights from ``checkpoints/<which>.pt`` (``"best"`` falls back to ``"last"``).

        Raises:
            FileNotFoundError: no checkpoint yet.
        """
        model = self.build_model(pretrained=False)
        for name in ([which, "last"] if which == "best" else [which]):
            ckpt = load_checkpoint(self.ws.local / "checkpoints" / f"{name}.pt")
            if ckpt is not None:
                model.load_state_dict(ckpt["model"])
                return model.to(self.device).eval()
        raise FileNotFoundError(f"no checkpoint in {self.ws.local / 'checkpoints'}; run train() first")

    @torch.no_grad()
    def score(self, model, dataset) -> dict:
        """One pass of ``model`` over ``dataset`` in order: ``metrics_factory()`` scores over the whole pass
        plus ``loss`` (``loss()`` per batch, weighted by batch size: the mean over samples).

        ``dataset`` items are ``{"input", "target", "index"}`` (tensors, or dicts/tuples of tensors).
        """
        loss_fn, metrics = self.loss(), self.metrics_factory()
        loss_sum, seen = 0.0, 0
        for batch in torch.utils.data.DataLoader(dataset, batch_size=self.cfg.batch_size, shuffle=False, num_workers=0):
            x, t = to_device(batch["input"], self.device), to_device(batch["target"], self.device)
            out = model(x)
            n = len(batch["index"])
            loss_sum += float(loss_fn(out, t)) * n
            seen += n
            metrics.update(out, t)
        return {**metrics.compute(), "loss": loss_sum / max(seen, 1)}

    def eval_size(self) -> int:
        """Side length for final evaluation and prediction: the size the best epoch was validated at."""
        best_epoch = self.fit_result.best["epoch"] if self.fit_result and self.fit_result.best["epoch"] else None
        return size_for_epoch(best_epoch or max(1, self.cfg.epochs), self.cfg.img_size, self.cfg.resize_schedule)

    # ------------------------------------------------------------------ summary
    def summary(self) -> dict:
        """The ``summary.json`` content, the same form for every notebook."""
        fr = self.fit_result
        return {
            "notebook": self.notebook,
            "engine": self.engine,
            "data": {"source": self.data, "path": str(self.root), "layout": self.layout,
                     "counts": {k: len(v) for k, v in self.splits.items()}},
            "epochs_completed": fr.epochs_completed if fr else 0,
            "resumed_from": fr.resumed_from if fr else None,
            "best": fr.best if fr else None,
            "stopped_early": fr.stopped_early if fr else False,
            "final_metrics": self.final_metrics,
            "seconds": time.monotonic() - self.t0,
            "config": self.cfg.to_dict(),
            "checkpoint": str(self.ws.workdir / "checkpoints" / "last.pt"),
            "best_checkpoint": str(self.ws.workdir / "checkpoints" / "best.pt"),
            "predictions": str(self.predictions_zip) if self.predictions_zip else None,
            "tensorboard": str(self.ws.workdir / "tensorboard"),
        }

    def write_summary(self) -> Path:
        """Write ``WORKDIR/summary.json`` atomically (strict JSON: NaN -> null) and return its path."""
        return atomic_write_json(self.ws.workdir / "summary.json", self.summary(), indent=2, strict=True)
