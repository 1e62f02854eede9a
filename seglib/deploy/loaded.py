"""A trained run from its checkpoint alone: :func:`load_run` gives the model, its preprocessing, class names and
colours, and :meth:`LoadedRun.predict` for an image, a folder or a zip (fastai's ``load_learner(...).predict``).

Everything comes from the checkpoint: the :class:`~seglib.config.TrainConfig` saved in it builds the model,
the epoch it was saved at gives the image size (the resize schedule's size for that epoch), and ``"task"`` /
``"classes"`` (saved since this version; inferred for older checkpoints) give the outputs' meaning.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from torch import nn

from ..config import TrainConfig
from ..data.classes import default_class_table, palette
from ..data.depth import read_background
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transform, size_for_epoch
from ..models import MODELS, build_model
from ..predict import class_id_dtype, predict_logits
from ..runtime import pick_device
from ..train.ckptfile import WEIGHT_KEYS, CheckpointError, TornCheckpoint, read_checkpoint
from ..train.state import FORMAT
from .inputs import as_rgb, collect_images, match_backgrounds
from .writing import Predictions, write_predictions

TASKS = {"multiclass": "segmentation", "segmentation": "segmentation", "binary": "binary", "depth": "depth"}
"""Checkpoint ``"task"`` -> what the outputs mean: ``segmentation`` (``C >= 2`` logits, argmax), ``binary``
(one logit, > 0 is foreground) or ``depth`` (DSResNet: depth and mask logits)."""
FALLBACK = {"best": ["best", "last", "last.prev"], "last": ["last", "last.prev"]}


def find_checkpoint(folder: str | Path, which: str = "best") -> tuple[Path, dict, str | None]:
    """Read ``folder/<which>.pt``, falling back as the run does: ``best`` -> ``last`` -> ``last.prev``.

    Returns:
        ``(path used, checkpoint dict, note)``; ``note`` says why another file than ``which`` was used, else None.

    Raises:
        FileNotFoundError: no checkpoint in ``folder``.
        RuntimeError: checkpoints exist but none is readable (names them; nothing is deleted).
        seglib.train.ckptfile.CheckpointError: a file holds something else or a refused pickle (names it).
    """
    folder, why, torn = Path(folder), None, []
    for name in FALLBACK.get(which, [which]):
        path = folder / f"{name}.pt"
        try:
            ckpt = read_checkpoint(path, "cpu", WEIGHT_KEYS, "load")
        except FileNotFoundError:
            why = why or f"{path.name} is missing"
            continue
        except TornCheckpoint as err:
            why = str(err)
            torn.append(why)
            continue
        return path, ckpt, (f"{why}; using {path.name} (epoch {ckpt.get('epoch')}) instead" if why else None)
    if torn:
        raise RuntimeError("no readable checkpoint: " + "; ".join(torn) +
                           ". Move these files away to start from scratch (nothing is deleted automatically)")
    raise FileNotFoundError(f"no checkpoint in {folder}; run train() first")


def _read_source(source, which: str) -> tuple[Path, dict]:
    if hasattr(source, "ws"):  # a notebook run (seglib.experiment.Experiment): its local checkpoints
        folder = source.ws.local / "checkpoints"
    else:
        path = Path(source)
        if path.is_file():
            return path, read_checkpoint(path, "cpu", WEIGHT_KEYS, "load")
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist; pass a run's WORKDIR or a checkpoint file (.pt)")
        folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    path, ckpt, note = find_checkpoint(folder, which)
    if note:
        print(note)
    return path, ckpt


def _task(ckpt: dict, cfg: TrainConfig) -> str:
    saved = ckpt.get("task")
    if saved is not None:
        if saved not in TASKS:
            raise CheckpointError(f"the checkpoint's task {saved!r} is not one this seglib knows ({sorted(TASKS)}); "
                                  "it was saved by a newer seglib: upgrade seglib to load it")
        return TASKS[saved]
    if cfg.model == "dsresnet":
        return "depth"
    return "binary" if cfg.n_classes == 1 else "segmentation"


class LoadedRun:
    """A trained model ready to predict, built from a checkpoint alone (see :func:`load_run`).

    Attributes:
        model: the network in eval mode on ``device``; takes what :meth:`preprocess` gives (two-input depth
            models: ``{"bg": ..., "bg_fg": ...}``) and returns logits (``float32 N x C x S x S``; depth models
            ``(depth_logits, mask_logits)``, each ``N x 1 x S x S``).
        config: the run's :class:`~seglib.config.TrainConfig`; task: ``"segmentation"``, ``"binary"`` or ``"depth"``.
        img_size: the network's input side S [px] (the resize schedule's size at the checkpoint's epoch).
        class_names / colors: one name and one ``uint8`` RGB colour (``C x 3`` array) per class (the mask's classes
            for binary and depth models: background, foreground).
        input_names / output_names: the names the ONNX graph uses (``("image",)`` -> ``("logits",)``; two-input
            depth: ``("bg", "bg_fg")`` -> ``("depth_logits", "mask_logits")``).
        checkpoint / epoch: the file the weights come from and its epoch.
        mean / std: the normalisation :meth:`preprocess` applies (ImageNet's, on RGB in [0, 1]).
    """

    mean, std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(self, model: nn.Module, config: TrainConfig, task: str, img_size: int, class_names: list[str],
                 colors: np.ndarray, checkpoint: Path, epoch: int | None, device: torch.device):
        self.model, self.config, self.task, self.img_size = model, config, task, int(img_size)
        self.class_names, self.colors = list(class_names), np.asarray(colors, dtype=np.uint8)
        self.checkpoint, self.epoch, self.device = Path(checkpoint), epoch, device
        self.two_inputs = task == "depth" and config.model_kwargs.get("inputs", "bg+bg_fg") == "bg+bg_fg"
        self.input_names = ("bg", "bg_fg") if self.two_inputs else ("image",)
        self.output_names = ("depth_logits", "mask_logits") if task == "depth" else ("logits",)
        self._transform = build_transform(self.img_size, "none")
        self._raw = A.Compose([A.Resize(self.img_size, self.img_size, interpolation=cv2.INTER_AREA), ToTensorV2()])

    def __repr__(self) -> str:
        return (f"LoadedRun({self.config.model!r}, task={self.task!r}, {len(self.class_names)} classes, "
                f"{self.img_size} px, epoch {self.epoch}, from {self.checkpoint})")

    def preprocess(self, image, normalized: bool = True) -> torch.Tensor:
        """The network input of one image: resized to ``img_size`` (area interpolation) and normalised exactly
        as in validation (:func:`seglib.data.transforms.build_transform` with no augmentation).

        Args:
            image: a path, PIL image or array of any mode (grey, RGBA, 16-bit: :func:`~seglib.deploy.inputs.as_rgb`).
            normalized: False gives the resized RGB values ``0..255`` as float32, the input of an ONNX graph
                exported with ``normalize_in_graph=True``.

        Returns:
            ``float32 1 x 3 x S x S`` CPU tensor (``S = img_size``).

        Raises:
            DataError: an unreadable file; TypeError/ValueError: an unsupported image type or shape.
        """
        rgb = as_rgb(image)
        if normalized:
            return self._transform(image=rgb)["image"][None]
        return self._raw(image=rgb)["image"][None].float()

    def forward(self, inputs: dict[str, torch.Tensor]):
        """The model on preprocessed inputs ``{input name: float32 N x 3 x S x S}``; returns a tuple of logits
        tensors in :attr:`output_names` order (on :attr:`device`)."""
        with torch.no_grad():
            x = {k: v.to(self.device) for k, v in inputs.items()}
            y = self.model({"bg": x["bg"], "bg_fg": x["bg_fg"]} if self.two_inputs else x["image"])
        return tuple(y) if isinstance(y, (tuple, list)) else (y,)

    def _outputs(self, items, backgrounds, batch_size: int, amp: bool) -> Iterator:
        def load(k):
            d = {"image": as_rgb(items[k])}
            if backgrounds is not None:  # a background of another size is resized to its image's, as in training
                hw, bg = d["image"].shape[:2], backgrounds[k]
                if isinstance(bg, (str, os.PathLike)):
                    d["bg"] = read_background(bg, hw)
                else:
                    bg = as_rgb(bg)
                    d["bg"] = bg if bg.shape[:2] == hw else cv2.resize(bg, hw[::-1], interpolation=cv2.INTER_AREA)
            return d

        keys = ("image", "bg") if self.two_inputs else ("image",)
        to_model = (lambda x: {"bg": x["bg"], "bg_fg": x["image"]}) if self.two_inputs else None
        yield from predict_logits(self.model, list(range(len(items))), self.img_size, self.device, batch_size, amp,
                                  load=load, input_keys=keys, model_input=to_model)

    def predict(self, source, *, backgrounds=None, names=None, out=None, batch_size: int = 8, progress: bool = True,
                previews: bool = True, amp: bool = False) -> Predictions:
        """Predict every image of ``source`` at its original resolution.

        Images are resized to ``img_size`` and normalised as in validation; the logits are resized back to each
        image's size (bilinear) before softmax/argmax/sigmoid (:func:`seglib.predict.predict_logits`). Runs in
        batches of ``batch_size`` on :attr:`device` (the GPU when there is one), with a tqdm progress bar.

        Args:
            source: an image (path, PIL, array of any mode), a folder (recursive, sorted by relative path), a zip,
                or a list of these (:func:`~seglib.deploy.inputs.collect_images`). Non-images are skipped and listed.
            backgrounds: two-input depth models only: one background for all, a list, or a folder/zip matched by
                name (:func:`~seglib.deploy.inputs.match_backgrounds`).
            names: one name per image, replacing the collected ones (file names in ``out``).
            out: None (nothing written), a ``.zip`` (written atomically) or a folder: segmentation writes
                ``Pred_<name>.png`` (grey value = class id; 255 = foreground for binary models) and, with
                ``previews``, ``preview/Pred_<name>.png`` (image | colour overlay); depth writes ``masks/<name>.png``
                (255 = foreground), ``depth/<name>.png`` (16-bit, value / 65535, 1 = near) and ``README.txt``.
            amp: float16 autocast on CUDA.

        Returns:
            :class:`~seglib.deploy.writing.Predictions`, a list with one entry per image in order: segmentation and
            binary: ``H x W`` class ids (``uint8``; ``uint16`` above 256 classes); depth: ``{"mask": uint8 {0, 1},
            "mask_probability": float32 [0, 1], "depth": float32 [0, 1] (1 = near)}``. ``.names``, ``.skipped`` and
            ``.path`` (what was written) say the rest.

        Raises:
            FileNotFoundError: ``source`` does not exist. ValueError: no image in it, ``names`` or ``backgrounds``
            of the wrong length. DataError: an unreadable single image.
        """
        with tempfile.TemporaryDirectory(prefix="seglib-predict-") as tmp:
            found = collect_images(source, tmp)
            if found.skipped:
                print(found.report())
            if not found.items:
                raise ValueError(f"no readable image in {source}" + (f" ({found.report()})" if found.skipped else ""))
            if names is not None:
                if len(names) != len(found.items):
                    raise ValueError(f"{len(names)} names for {len(found.items)} images")
                found.names = [str(n) for n in names]
            bgs = match_backgrounds(backgrounds, found.names, tmp) if self.two_inputs else None
            result = Predictions(names=found.names, skipped=found.skipped)
            images = [] if out is not None else None
            from tqdm.auto import tqdm

            for _k, data, logits in tqdm(self._outputs(found.items, bgs, batch_size, amp), total=len(found.items),
                                         desc="predict", disable=not progress, unit="image"):
                result.append(self._decode(logits))
                if images is not None:
                    images.append(data["image"])
            if out is not None:
                result.path = write_predictions(out, self.task, result, images, self.colors, previews)
                print(f"wrote {len(result)} predictions to {result.path}")
        return result

    def _decode(self, logits: tuple[torch.Tensor, ...]):
        if self.task == "depth":
            prob = torch.sigmoid(logits[1][0]).numpy()
            return {"mask": (prob > 0.5).astype(np.uint8), "mask_probability": prob,
                    "depth": torch.sigmoid(logits[0][0]).numpy()}
        if self.task == "binary":
            return (logits[0][0] > 0).numpy().astype(np.uint8)
        return logits[0].argmax(0).numpy().astype(class_id_dtype(logits[0].shape[0]))


def load_run(source, which: str = "best", device: str | torch.device | None = None) -> LoadedRun:
    """A trained run, ready to predict, from its checkpoint alone.

    Args:
        source: a run's WORKDIR (its ``checkpoints/`` folder is searched), a checkpoint file (``.pt``), or a
            notebook run object (:class:`~seglib.experiment.Experiment`: its local checkpoints).
        which: ``"best"`` (falls back to ``last.pt``, then ``last.prev.pt``, with a printed line) or ``"last"``.
        device: where the model runs; default CUDA when available.

    Returns:
        A :class:`LoadedRun` with the model in eval mode.

    Raises:
        FileNotFoundError: no such file or folder, or no checkpoint in it.
        seglib.train.ckptfile.CheckpointError: not a seglib checkpoint (a plain state_dict, another library's file,
            no saved configuration), a checkpoint format or task of a newer seglib, a model name this seglib does not
            know, or weights that do not fit the model the configuration builds (names the file and what to do).
    """
    path, ckpt = _read_source(source, which)
    if not isinstance(ckpt.get("config"), dict):
        raise CheckpointError(f"{path} holds model weights but no seglib configuration, so the model cannot be "
                              "rebuilt from it; pass a checkpoint that seglib's training wrote (WORKDIR/checkpoints/"
                              "best.pt or last.pt)")
    cfg = TrainConfig.from_dict(ckpt["config"])
    saved_by = (ckpt.get("versions") or {}).get("seglib", "an unknown version")
    fmt = str(ckpt.get("format", FORMAT))
    if fmt != FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {fmt!r} (seglib {saved_by}); this seglib reads {FORMAT!r}. "
                              "Upgrade seglib to load it")
    if cfg.model not in MODELS:
        raise CheckpointError(f"{path} was trained with model {cfg.model!r} (seglib {saved_by}), which this seglib does "
                              f"not know (known: {', '.join(MODELS.names())}); install the seglib that trained it or "
                              "register the model under that name before loading")
    kwargs = {"classes": cfg.n_classes, **cfg.model_kwargs}
    if cfg.model in ("unet_mobilenet_v2", "smp"):
        kwargs.setdefault("encoder_weights", None)
    model = build_model(cfg.model, **kwargs)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise CheckpointError(f"the weights in {path} (seglib {saved_by}) do not fit the model its configuration "
                              f"builds ({cfg.model!r}, {cfg.model_kwargs}, {cfg.n_classes} classes): "
                              f"{str(err).splitlines()[0]} ... Load it with the seglib version that wrote it") from None
    task = _task(ckpt, cfg)
    classes = ckpt.get("classes") or {}
    if task == "segmentation":
        table = default_class_table(cfg.n_classes)
        names = classes.get("names") or [name for _, name, _ in table]
        colors = np.asarray(classes["colors"], np.uint8) if classes.get("colors") else palette(cfg.n_classes, table)
    else:
        names = classes.get("names") or ["background", "foreground"]
        colors = np.asarray(classes.get("colors") or [[0, 0, 0], [255, 255, 255]], np.uint8)
    epoch = ckpt.get("epoch")
    size = size_for_epoch(max(1, int(epoch or cfg.epochs)), cfg.img_size, cfg.resize_schedule)
    device = pick_device(device)
    return LoadedRun(model.to(device).eval(), cfg, task, size, names, colors, path, epoch, device)
