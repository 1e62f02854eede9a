"""What every seglib notebook run shares: the data template :meth:`Experiment.prepare`, work folders, model
building and loading, the trainer, and ``summary.json`` in one common form.

A task subclasses :class:`Experiment`, sets the class attributes ``SYNTHETIC``, ``SMOKE_SYNTHETIC`` and
``SMOKE_COUNTS``, and provides the hooks ``read_layout(root)``, ``check()`` (and optionally ``describe()``)
for :meth:`~Experiment.prepare`, plus ``dataset(split)``, ``loss()``, ``metrics_factory()``,
``render_grid(...)``, ``final_metrics`` (training, evaluation) and ``batch_panels(item)`` (``show_batch``).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .config import TrainConfig
from .data.datasets import EpochSampler
from .data.fingerprint import data_fingerprint
from .data.sources import resolve_data
from .data.splits import split_counts, subset_evenly
from .data.transforms import size_for_epoch
from .deploy import find_checkpoint
from .models import build_model
from .runtime import pick_device, seed_everything, workspace
from .tensors import to_device
from .train import distributed
from .train.callbacks import LossMean
from .train.checkpoint import atomic_write_json
from .train.ckptfile import WEIGHT_KEYS, TornCheckpoint, read_checkpoint
from .train.lr_finder import find_lr
from .train.progress import EpochTable
from .train.trainer import FitResult, Trainer


def experiment_name(experiment: str, data) -> str:
    """The default work-folder name of a run on ``data``: ``experiment``, or ``<experiment>_synthetic`` for
    synthetic data (``"synthetic"``, ``"synthetic:<generator>"``) unless the name says so already (it contains
    ``synthetic`` or starts with ``demo``, as the ``seglib.nbrun`` demos). So the notebooks' synthetic default
    never lands in (or is resumed by) the real-data run of the same ``EXPERIMENT``; an explicit WORKDIR is
    used as given (its data fingerprint guards it)."""
    synthetic = str(data) == "synthetic" or str(data).startswith("synthetic:")
    if not synthetic or "synthetic" in experiment or experiment.startswith("demo"):
        return experiment
    return f"{experiment}_synthetic"


class Experiment:
    """Base of the notebook runs.

    Class attributes (per task):
        SYNTHETIC: generator used for ``DATA="synthetic"`` (:data:`seglib.data.synthetic.SYNTHETIC`).
        SMOKE_SYNTHETIC: generator arguments of a smoke run (None: the generator's defaults).
        SMOKE_COUNTS: ``{split: samples kept}`` in a smoke run (splits not named keep none).

    Args:
        cfg: the training configuration (``cfg.experiment`` names the work folder, see :func:`experiment_name`).
        data: the ``DATA`` value as the user gave it (see :func:`seglib.data.sources.resolve_data`).
        workdir / local: results folder and fast local folder (see :func:`seglib.runtime.workspace`).
        layout: layout name or ``"auto"`` (the task's :meth:`read_layout` resolves it).
        data_sha256: expected SHA-256 of a zip/download; synthetic_kwargs: arguments of the generator.
        smoke: small, seconds-long run.
        notebook: name recorded in ``summary.json``.
        device: ``"cpu"``/``"cuda"``; default CUDA when available.
    """

    SYNTHETIC: str | None = None
    SMOKE_SYNTHETIC: dict | None = None
    SMOKE_COUNTS: dict[str, int] = {}

    def __init__(self, cfg: TrainConfig, data: str, *, workdir=None, local=None, layout: str = "auto",
                 data_sha256: str | None = None, synthetic_kwargs: dict | None = None, smoke: bool = False,
                 notebook: str = "", device: str | None = None):
        self.t0 = time.monotonic()
        self.cfg, self.data, self.smoke, self.notebook = cfg, str(data), smoke, notebook
        self.sha256, self.synthetic_kwargs = data_sha256, synthetic_kwargs
        self.ws = workspace(experiment_name(cfg.experiment, data), workdir, local)
        self.device = pick_device(device)
        self.splits: dict = {}
        self.root: Path | None = None
        self.layout: str = layout
        self.fit_result: FitResult | None = None
        self.final_metrics: dict = {}
        self.predictions_zip: Path | None = None
        self.engine = "seglib"
        self.loaded: dict | None = None

    # ------------------------------------------------------------------ data: the one template
    def prepare(self, check: bool = True) -> dict:
        """Fetch the data (:func:`~seglib.data.sources.resolve_data`), read its layout (:meth:`read_layout`),
        keep :attr:`SMOKE_COUNTS` samples per split in a smoke run (:func:`~seglib.data.splits.subset_evenly`),
        check them (:meth:`check`) and print the counts (:meth:`describe`).

        Returns:
            ``{split: [sample, ...]}`` (also in ``self.splits``; ``self.root`` and ``self.layout`` are set).

        Raises:
            DataError: any data problem (missing/unreadable files, unmatched pairs, size mismatch, bad mask
                values, too few samples to split); the message names the file and the fix.
            KeyError: an unknown layout or synthetic generator (the message lists the valid ones).
        """
        kwargs = self.synthetic_kwargs if self.synthetic_kwargs is not None else (
            self.SMOKE_SYNTHETIC if self.smoke else None)
        with distributed.rank0_first():  # torchrun: one process fetches, the others then read
            self.root = resolve_data(self.data, synthetic=self.SYNTHETIC, synthetic_kwargs=kwargs, sha256=self.sha256)
            self.layout, splits = self.read_layout(self.root)
        if self.smoke:
            splits = {k: subset_evenly(v, self.SMOKE_COUNTS.get(k, 0)) for k, v in splits.items()}
        self.splits = splits
        if check:
            self.check()
        print(self.describe())
        return splits

    def describe(self) -> str:
        """The line :meth:`prepare` prints: folder, layout and samples per split."""
        return f"data: {self.root} ({self.layout} layout) -- {split_counts(self.splits)}"

    # ------------------------------------------------------------------ hooks for tasks
    def read_layout(self, root: Path) -> tuple[str, dict]:
        """``(layout name, {split: samples})`` of the data folder ``root`` (task hook of :meth:`prepare`)."""
        raise NotImplementedError

    def check(self) -> None:
        """Check the prepared samples once before training (task hook of :meth:`prepare`); raises DataError."""
        raise NotImplementedError

    def dataset(self, split: str, augment: str | None = None):
        """The ``(epoch, index)``-keyed dataset of ``split`` (a :class:`seglib.data.datasets.EpochDataset`)
        with :meth:`augmentation`."""
        raise NotImplementedError

    def augmentation(self, split: str, augment: str | None = None) -> str:
        """``augment`` when given, else the configured augmentation for ``"train"`` and ``"none"`` for the
        other splits. Raises RuntimeError before :meth:`prepare`."""
        if not self.splits:
            raise RuntimeError("call prepare() first")
        return augment if augment is not None else (self.cfg.augment if split == "train" else "none")

    def loss(self):
        """The training loss ``(outputs, targets) -> scalar tensor``."""
        raise NotImplementedError

    def metrics_factory(self):
        """A fresh metrics accumulator (``update(outputs, targets)``, ``compute() -> dict``)."""
        raise NotImplementedError

    def render_grid(self, inputs, outputs, targets):
        """``uint8 H x W x 3`` TensorBoard grid of a validation batch, or None (default: none)."""
        return None

    def batch_panels(self, item: dict) -> list:
        """``[(panel name, uint8 S x S x 3), ...]`` of one dataset item for :meth:`show_batch` (task hook)."""
        raise NotImplementedError

    def batch_legend(self, items: list) -> list:
        """``[(label, uint8 rgb), ...]``: the legend of :meth:`show_batch` for ``items`` (default: none)."""
        return []

    def show_batch(self, n: int = 8, split: str = "train", epoch: int | None = None):
        """``n`` items of ``split`` exactly as the trainer feeds them, drawn by :func:`seglib.inspect.batch.batch_figure`
        (the task's :meth:`batch_panels`, inputs denormalised): the first ``n`` of the epoch's order (train: the
        :class:`~seglib.data.datasets.EpochSampler` permutation of ``(seed, epoch)``; other splits: index order),
        augmented with the randomness of ``(seed, epoch, index)`` at that epoch's size. ``epoch`` None: the epoch
        the next training trains (:func:`~seglib.inspect.batch.next_epoch`: 1 for a new run, ``last.pt``'s + 1).

        Returns:
            A Figure titled with split, epoch, size [px] and augmentation; ``fig.seglib_panels`` holds the drawn
            arrays per sample and ``fig.seglib_batch`` ``{"split", "epoch", "size", "augment", "indices"}``.

        Raises:
            RuntimeError: before :meth:`prepare`. ValueError: ``n < 1``, an unknown or empty split, ``epoch < 1``.
        """
        from .inspect.batch import batch_figure, next_epoch

        if not self.splits:
            raise RuntimeError("call prepare() first")
        if n < 1 or not self.splits.get(split) or (epoch is not None and epoch < 1):
            raise ValueError(f"show_batch needs n >= 1 (got {n}), epoch >= 1 (got {epoch}) and a split with samples "
                             f"(got {split!r}; {split_counts(self.splits)})")
        folders = [self.ws.local] + ([self.ws.workdir] if self.ws.mirrored else [])
        epoch, note = (epoch, "as asked") if epoch is not None else next_epoch(folders, self.cfg.epochs)
        ds = self.dataset(split)
        indices = EpochSampler(len(ds), 1, self.cfg.seed, split == "train").order(epoch)[:n].tolist()
        items = [ds[(epoch, i)] for i in indices]
        info = {"split": split, "epoch": epoch, "size": ds.size(epoch), "augment": ds.augment, "indices": indices}
        title = (f"{split} batch as the model sees it: epoch {epoch} ({note}), {info['size']} px, augmentation "
                 f"'{ds.augment}'; first {len(items)} of the epoch's order")
        fig = batch_figure([self.batch_panels(it) for it in items], [f"#{i}" for i in indices], title,
                           self.batch_legend(items))
        fig.seglib_batch = info
        return fig

    def class_info(self) -> dict | None:
        """``{"names": [...], "colors": [[r, g, b], ...]}`` of the classes, saved in every checkpoint for
        :func:`seglib.deploy.load_run` (default: the task's own attributes ``class_names`` / ``colors`` when it
        has them, else None)."""
        names, colors = getattr(self, "class_names", None), getattr(self, "colors", None)
        return None if names is None else {"names": list(names), "colors": [[int(v) for v in c] for c in colors]}

    def model_kwargs(self) -> dict:
        """Keyword arguments of :func:`seglib.models.build_model` besides the name (default: classes)."""
        return {"classes": self.cfg.n_classes, **self.cfg.model_kwargs}

    # ------------------------------------------------------------------ model and training
    def n_parameters(self) -> int:
        """Number of parameters of the configured model, counted on PyTorch's ``meta`` device (no weights are
        allocated, initialised or fetched; the same count as :meth:`build_model`'s)."""
        kwargs = {**({"encoder_weights": None} if self.cfg.model in ("unet_mobilenet_v2", "smp") else {}),
                  **self.model_kwargs()}
        with torch.device("meta"):
            model = build_model(self.cfg.model, **kwargs)
        return sum(p.numel() for p in model.parameters())

    def build_model(self, pretrained: bool = True):
        """Seeded model from the registry; ``pretrained=False`` skips fetching encoder weights (a
        checkpoint will replace them)."""
        seed_everything(self.cfg.seed)
        kwargs = self.model_kwargs()
        if "encoder_weights" not in kwargs and self.cfg.model in ("unet_mobilenet_v2", "smp"):
            kwargs["encoder_weights"] = self.cfg.encoder_weights if pretrained else None
        return build_model(self.cfg.model, **kwargs)

    def data_fingerprint(self) -> dict:
        """The fingerprint of the data this run trains on (:func:`seglib.data.fingerprint.data_fingerprint` of
        ``DATA``, the layout and the current splits), recorded in every checkpoint. Raises RuntimeError before
        :meth:`prepare`."""
        if not self.splits:
            raise RuntimeError("call prepare() first")
        return data_fingerprint(self.data, self.layout, self.root, self.splits)

    def find_lr(self, steps: int | None = None, lr_min: float = 1e-7, lr_max: float = 10.0, force: bool = False):
        """``LR = "find"``: the LR range test on this run's model, optimizer, loss and training loader, as fastai's
        ``lr_find`` (:func:`seglib.train.lr_finder.find_lr`: valley rule, ``WORKDIR/lr_find.json`` reused, not
        run once the run has a checkpoint); sets ``cfg.lr`` to the suggestion and returns the
        :class:`~seglib.train.lr_finder.LRFindResult` (plot it with :func:`seglib.inspect.plot_lr_find`).
        Raises RuntimeError before :meth:`prepare`."""
        result = find_lr(self, steps, lr_min, lr_max, force)
        self.cfg.lr = float(result.suggestion)
        return result

    def trainer(self, lr_override: float | None = None, callbacks=(), progress: bool = True,
                fine_tune_from=None) -> Trainer:
        """A :class:`Trainer` for this run (``fit()`` resumes from the work folder if possible; see :meth:`train`
        for ``fine_tune_from``)."""
        if not self.splits:
            raise RuntimeError("call prepare() first")
        return Trainer(self.cfg, self.build_model(), self.dataset("train"), self.dataset("val"), self.ws,
                       loss_fn=self.loss(), metrics_factory=self.metrics_factory, render_grid=self.render_grid,
                       callbacks=callbacks, lr_override=lr_override, device=str(self.device), progress=progress,
                       data=self.data_fingerprint(), fine_tune_from=fine_tune_from, classes=self.class_info())

    def train(self, lr_override: float | None = None, callbacks=(), progress: bool = True,
              engine: str = "seglib", epoch_table: bool = True, fine_tune_from=None, devices=1) -> FitResult:
        """Train (or resume, or do nothing if finished) and return the :class:`FitResult`.

        A WORKDIR holds one run: resuming it with other data (another data fingerprint) stops before training
        with :class:`~seglib.train.identity.DataMismatch`, whose message gives the two ways forward.

        Args:
            engine: ``"seglib"`` (the :class:`Trainer`) or ``"catalyst"`` (Catalyst's ``SupervisedRunner``,
                :func:`seglib.integrations.catalyst_engine.train_catalyst`; needs ``requirements-catalyst.txt``).
                Both write the same checkpoints, so either can resume the other's run.
            epoch_table: print a header and one line per epoch (:class:`seglib.train.progress.EpochTable`).
            fine_tune_from: ``FINE_TUNE_FROM``: a checkpoint file or another run's WORKDIR (its ``best.pt``,
                else ``last.pt``). With no checkpoint in WORKDIR yet, a new run starts from those model weights
                (fresh optimizer, epoch 0, this data); Run all again resumes that run.
            devices: ``DEVICES``: ``"auto"`` (all visible GPUs) or a number of data-parallel processes, started from
                here or by ``torchrun`` (:func:`seglib.train.distributed.fit_parallel`; docs/scaling.md).

        Raises:
            ValueError: unknown ``engine``; ``DEVICES`` not understood, more than the GPUs, with the Catalyst engine,
                or not dividing ``BATCH_SIZE`` (:func:`seglib.train.distributed.plan`).
            seglib.train.identity.DataMismatch: WORKDIR's run was trained on other data (nothing is changed).
            seglib.train.identity.FineTuneError: ``fine_tune_from`` names no checkpoint or this WORKDIR, or
                WORKDIR already holds another run.
            seglib.train.mirror.MirrorError: the copy to WORKDIR failed twice (the local folder has it all).
            seglib.integrations.catalyst_compat.CatalystMissing: ``"catalyst"`` without Catalyst installed.
        """
        if engine not in ("seglib", "catalyst"):
            raise ValueError(f"ENGINE must be 'seglib' or 'catalyst', got {engine!r}")
        self.engine = engine
        if epoch_table:
            callbacks = [*callbacks, EpochTable()]
        launched = distributed.fit_parallel(self, devices, engine, lr_override, callbacks, progress, fine_tune_from)
        if launched is not None:
            self.fit_result = launched
            return launched
        if engine == "catalyst":
            from .integrations.catalyst_engine import train_catalyst

            self.fit_result = train_catalyst(self, lr_override, callbacks, progress, fine_tune_from)
            return self.fit_result
        self.fit_result = self.trainer(lr_override, callbacks, progress, fine_tune_from).fit()
        return self.fit_result

    @property
    def tensorboard_dir(self) -> Path:
        """Local TensorBoard folder (point ``%tensorboard --logdir`` here; Drive syncs event files late)."""
        return self.ws.local / "tensorboard"

    def load_model(self, which: str = "best"):
        """The model in eval mode with weights from the local ``checkpoints/<which>.pt``.

        ``"best"`` that is missing or torn falls back to ``last.pt`` (then ``last.prev.pt``) with one printed line
        naming the file used and why; ``"last"`` falls back to ``last.prev.pt`` the same way. The file used is
        recorded in :attr:`loaded` (``{"checkpoint", "epoch"}``) and named in the summary.

        Raises:
            FileNotFoundError: no checkpoint yet.
            RuntimeError: checkpoints exist but none is readable (names them; nothing is deleted).
            seglib.train.ckptfile.CheckpointError: a file holds something else or a refused pickle (names it).
        """
        path, ckpt, note = find_checkpoint(self.ws.local / "checkpoints", which)
        if note:
            print(note)
        model = self.build_model(pretrained=False)
        model.load_state_dict(ckpt["model"])
        self.loaded = {"checkpoint": str(path), "epoch": ckpt.get("epoch")}
        return model.to(self.device).eval()

    def best_file(self) -> dict | None:
        """What the local ``best.pt`` holds: ``{"epoch", "best": {"metric", "value", "epoch"}, "record"}``
        (``record``: its epoch's history record), or None when it is missing or torn."""
        try:
            b = read_checkpoint(self.ws.local / "checkpoints" / "best.pt", "cpu", WEIGHT_KEYS, "read")
        except (FileNotFoundError, TornCheckpoint):
            return None
        rec = next((h for h in b.get("history", []) if h.get("epoch") == b.get("epoch")), None)
        best = b.get("best") or {}
        return {"epoch": b.get("epoch"), "record": rec,
                "best": {"metric": best.get("monitor"), "value": best.get("value"), "epoch": b.get("epoch")}}

    @torch.no_grad()
    def score(self, model, dataset) -> dict:
        """One pass of ``model`` over ``dataset`` in order: ``metrics_factory()`` scores over the whole pass
        plus ``loss`` (``loss()`` per batch, weighted by its valid samples as in training: see
        :class:`~seglib.train.callbacks.LossMean`).

        ``dataset`` items are ``{"input", "target", "index"}`` (tensors, or dicts/tuples of tensors).
        """
        loss_fn, metrics = self.loss(), self.metrics_factory()
        mean = LossMean(self.device)
        for batch in torch.utils.data.DataLoader(dataset, batch_size=self.cfg.batch_size, shuffle=False, num_workers=0):
            x, t = to_device(batch["input"], self.device), to_device(batch["target"], self.device)
            out = model(x)
            mean.add(loss_fn(out, t), t, self.cfg.ignore_index)
            metrics.update(out, t)
        return {**metrics.compute(), "loss": mean.value()}

    def eval_size(self) -> int:
        """Side length for final evaluation and prediction: the size the best epoch was validated at."""
        best_epoch = self.fit_result.best["epoch"] if self.fit_result and self.fit_result.best["epoch"] else None
        return size_for_epoch(best_epoch or max(1, self.cfg.epochs), self.cfg.img_size, self.cfg.resize_schedule)

    # ------------------------------------------------------------------ summary
    def summary(self) -> dict:
        """The ``summary.json`` content, the same form for every notebook. ``status`` is ``"fresh"``,
        ``"resumed"``, ``"already finished"`` (this call trained nothing; ``resumed_from`` None) or
        ``"not trained"``; ``fine_tuned_from`` names the checkpoint a fine-tuning run started from;
        ``data.fingerprint`` is the data id every checkpoint records.

        One file: ``best`` (metric, value, epoch) and ``best_checkpoint`` are read from the ``best.pt`` that
        exists (None, with a ``note``, when there is none); ``evaluated`` names the checkpoint (and epoch) the
        ``final_metrics`` come from (:meth:`load_model`), with a ``note`` when it is not that ``best.pt``."""
        fr, bf = self.fit_result, self.best_file()
        notes = []
        if fr is not None and bf is None:
            notes.append(f"no readable best.pt in {self.ws.local / 'checkpoints'} (no best epoch yet, or it was "
                         "lost: see the training output)")
        if self.loaded and bf and (self.loaded["epoch"] != bf["epoch"] or not self.loaded["checkpoint"].endswith("best.pt")):
            notes.append(f"final_metrics come from {self.loaded['checkpoint']} (epoch {self.loaded['epoch']}), not from "
                         f"best.pt (epoch {bf['epoch']})")
        return {
            "notebook": self.notebook,
            "engine": self.engine,
            "data": {"source": self.data, "path": str(self.root), "layout": self.layout,
                     "counts": {k: len(v) for k, v in self.splits.items()},
                     "fingerprint": fr.data["id"] if fr and fr.data else None},
            "status": fr.status if fr else "not trained",
            "epochs_completed": fr.epochs_completed if fr else 0,
            "resumed_from": fr.resumed_from if fr else None,
            "fine_tuned_from": fr.fine_tuned_from if fr else None,
            "best": bf["best"] if bf else None,
            "stopped_early": fr.stopped_early if fr else False,
            "final_metrics": self.final_metrics,
            "evaluated": self.loaded,
            "seconds": time.monotonic() - self.t0,
            "config": self.cfg.to_dict(),
            "checkpoint": str(self.ws.workdir / "checkpoints" / "last.pt"),
            "best_checkpoint": str(self.ws.workdir / "checkpoints" / "best.pt") if bf else None,
            "predictions": str(self.predictions_zip) if self.predictions_zip else None,
            "tensorboard": str(self.ws.workdir / "tensorboard"),
            "note": "; ".join(notes) or None,
        }

    def write_summary(self) -> Path:
        """Write ``WORKDIR/summary.json`` atomically (strict JSON: NaN -> null) and return its path."""
        return atomic_write_json(self.ws.workdir / "summary.json", self.summary(), indent=2, strict=True)
