"""ONNX export of a trained run, checked against PyTorch before it is kept (Lightning's ``to_onnx`` plus the check).

:func:`export_onnx` rebuilds the model from its checkpoint (:func:`~seglib.deploy.load_run`), exports it with
PyTorch's ``torch.export``-based exporter (``torch.onnx.export(dynamo=True)``, opset 18, one self-contained
file), validates the graph with ``onnx.checker`` and runs it in onnxruntime (CPU) on real images next to
PyTorch. The file replaces ``path`` only when the two agree: argmax (or foreground) agreement >= 99.9 % of
the pixels and every logit within the tolerance (:data:`ATOL`); otherwise :class:`OnnxMismatch` is raised and
the graph is left beside ``path`` as ``<path>.rejected`` for inspection.

Graph (``S`` = ``img_size``, ``N`` = batch, dynamic when ``dynamic_batch``): segmentation ``image float32
N x 3 x S x S`` -> ``logits float32 N x C x S x S``; two-input depth ``bg``, ``bg_fg`` -> ``depth_logits``,
``mask_logits`` (``N x 1 x S x S``; sigmoid gives depth in [0, 1], 1 = near, and the foreground probability).
Inputs are what :meth:`LoadedRun.preprocess <seglib.deploy.LoadedRun.preprocess>` gives: RGB resized to
``S x S``, ``(x / 255 - mean) / std`` with ImageNet's mean ``(0.485, 0.456, 0.406)`` and std ``(0.229, 0.224,
0.225)``; with ``normalize_in_graph=True`` that normalisation is the graph's first layer and the inputs are the
resized RGB values 0..255 (float32). Both, and the class names and colours, are in the file's metadata.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..runtime import versions
from .inputs import collect_images, match_backgrounds
from .loaded import LoadedRun, load_run

ATOL = {False: 1e-3, True: 5e-2}
"""Largest allowed ``|onnxruntime - PyTorch|`` of any logit, relative to ``max(1, max |PyTorch logit|)``: float32
graphs 1e-3, float16 graphs (``fp16=True``) 5e-2 (float16 keeps about 3 significant digits)."""
MIN_AGREEMENT = 0.999
"""Smallest allowed share of pixels whose class (argmax; > 0 for one-logit outputs) is the same in both, among
the pixels PyTorch decides by more than the tolerance (:attr:`OnnxExport.agreement_decided`; for float32 graphs
that is practically every pixel)."""


class OnnxMismatch(AssertionError):
    """The exported graph's outputs differ from PyTorch's beyond :data:`ATOL` / :data:`MIN_AGREEMENT`."""


@dataclass
class OnnxExport:
    """What :func:`export_onnx` wrote and measured.

    Attributes:
        path: the ONNX file; task, img_size [px], input_names, output_names, fp16, normalize_in_graph,
        dynamic_batch: how it was exported. n_images / n_pixels: what the check ran on (at ``img_size``).
        agreement: share of pixels with the same class in onnxruntime and PyTorch (segmentation: argmax;
            binary and depth: mask logit > 0), in [0, 1]. agreement_decided: the same over the pixels whose class
            PyTorch decides by more than ``atol`` (top-1 minus top-2 logit; one logit: its distance from 0): a
            closer tie may flip within the tolerance, which matters for float16 graphs. max_abs_diff: ``{output name: max |difference|}`` of
            the logits; atol: the allowed difference (already scaled, see :data:`ATOL`).
        export_seconds / check_seconds: wall time of the export and of the check [s]; size_mb: file size [MB].
    """

    path: Path
    task: str
    img_size: int
    input_names: tuple
    output_names: tuple
    fp16: bool
    normalize_in_graph: bool
    dynamic_batch: bool
    n_images: int = 0
    n_pixels: int = 0
    agreement: float = float("nan")
    agreement_decided: float = float("nan")
    max_abs_diff: dict = field(default_factory=dict)
    atol: float = float("nan")
    export_seconds: float = 0.0
    check_seconds: float = 0.0
    size_mb: float = 0.0

    def __str__(self) -> str:
        diffs = ", ".join(f"{k} {v:.2e}" for k, v in self.max_abs_diff.items())
        return (f"{self.path} ({self.size_mb:.1f} MB, {'float16' if self.fp16 else 'float32'}, {self.img_size} px): "
                f"onnxruntime vs PyTorch on {self.n_images} images: {100 * self.agreement:.3f} % of "
                f"{self.n_pixels} pixels agree ({100 * self.agreement_decided:.3f} % of those not tied within the "
                f"tolerance), max |logit difference| {diffs} (allowed {self.atol:.1e})")

    def as_dict(self) -> dict:
        """JSON-ready dict of the fields."""
        d = asdict(self)
        d["path"] = str(self.path)
        return d


class _Graph(nn.Module):
    """The exported function: positional inputs (``input_names`` order) -> tuple of logits, with the optional
    ImageNet normalisation as a first layer (inputs in 0..255)."""

    def __init__(self, model: nn.Module, two_inputs: bool, normalize: bool, mean, std):
        super().__init__()
        self.model, self.two_inputs, self.normalize = model, two_inputs, normalize
        self.register_buffer("scale", 1.0 / (255.0 * torch.tensor(std).view(1, 3, 1, 1)))
        self.register_buffer("shift", 255.0 * torch.tensor(mean).view(1, 3, 1, 1))

    def forward(self, *inputs):
        if self.normalize:
            inputs = tuple((x - self.shift.to(x.dtype)) * self.scale.to(x.dtype) for x in inputs)
        y = self.model({"bg": inputs[0], "bg_fg": inputs[1]} if self.two_inputs else inputs[0])
        return tuple(y) if isinstance(y, (tuple, list)) else y


def _need_onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError as err:
        raise ImportError(f"ONNX export needs onnx, onnxscript and onnxruntime ({err}); "
                          "pip install onnx onnxscript onnxruntime") from None
    return onnx, onnxruntime


def _loaded(source) -> tuple[LoadedRun, list | None, list | None]:
    """The LoadedRun of ``source`` and, for a notebook run, its validation images (and backgrounds)."""
    if isinstance(source, LoadedRun):
        return source, None, None
    if isinstance(source, (str, os.PathLike)) or hasattr(source, "ws"):
        run = load_run(source, device="cpu")
        val = list(getattr(source, "splits", {}).get("val", []) or []) if hasattr(source, "ws") else []
        return run, ([s.image for s in val] or None), ([s.bg for s in val] if val and getattr(val[0], "bg", None) else None)
    raise TypeError(f"export_onnx exports seglib runs: pass a WORKDIR, a checkpoint file (.pt), a notebook run or "
                    f"seglib.load_run(...), not a {type(source).__name__} (for any other module use torch.onnx.export)")


def _batches(run: LoadedRun, images, backgrounds, max_images: int, batch: int, normalized: bool):
    with tempfile.TemporaryDirectory(prefix="seglib-onnx-") as tmp:
        found = collect_images(images, tmp)
        if not found.items:
            raise ValueError(f"no readable image to check the export on in {images}")
        items, names = found.items[:max_images], found.names[:max_images]
        bgs = match_backgrounds(backgrounds, names, tmp) if run.two_inputs else None
        for start in range(0, len(items), batch):
            sl = slice(start, start + batch)
            feeds = [torch.cat([run.preprocess(x, normalized) for x in items[sl]])]
            if bgs is not None:
                feeds = [torch.cat([run.preprocess(x, normalized) for x in bgs[sl]]), feeds[0]]
            yield dict(zip(run.input_names, feeds))


def _classes(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class per pixel (argmax; one logit: > 0) of ``N x C x S x S`` logits, and the margin that decides it
    (top-1 minus top-2 logit; one logit: its distance from 0)."""
    if logits.shape[1] == 1:
        return logits[:, 0] > 0, np.abs(logits[:, 0])
    top2 = np.partition(logits, -2, axis=1)[:, -2:]
    return logits.argmax(1), top2[:, 1] - top2[:, 0]


def export_onnx(source, path: str | os.PathLike, img_size: int | None = None, dynamic_batch: bool = True,
                fp16: bool = False, normalize_in_graph: bool = False, images=None, backgrounds=None,
                max_images: int = 16, batch_size: int = 4, opset: int = 18) -> OnnxExport:
    """Export a trained run to ONNX and check it against PyTorch in onnxruntime (see the module docstring).

    Args:
        source: a WORKDIR, a checkpoint file, a notebook run (its validation images are the default check
            images) or a :class:`~seglib.deploy.LoadedRun`.
        path: the ``.onnx`` file to write (replaced atomically once checked; its folder is created).
        img_size: input side S [px] (default: the run's, :attr:`LoadedRun.img_size`); DSResNet needs multiples of 32.
        dynamic_batch: a free batch dimension ``N`` (else N = 1). fp16: float16 weights, inputs and outputs
            (half the file; for TensorRT prefer the float32 graph and ``trtexec --fp16``).
        normalize_in_graph: the ImageNet normalisation as the first layer (inputs RGB 0..255).
        images: what to check on (an image, folder, zip or list: :func:`~seglib.deploy.inputs.collect_images`);
            backgrounds: their backgrounds for two-input depth models. max_images: at most this many are used.
        batch_size: images per onnxruntime run in the check. opset: the ONNX opset (18, the exporter's own;
            torch.onnx converts to others where onnx's version converter can, else this raises).

    Returns:
        :class:`OnnxExport` with the agreement and the largest logit difference.

    Raises:
        TypeError: a source that is not a seglib run (the exporter knows the models seglib builds only).
        ValueError: no check images (pass ``images=``). ImportError: onnx / onnxruntime missing.
        RuntimeError: torch.onnx cannot export the model (names it) or not at ``opset``.
        OnnxMismatch: onnxruntime disagrees with PyTorch (figures in the message; the graph is kept as
        ``<path>.rejected``).
        onnx.checker.ValidationError: an invalid graph. Plus :func:`~seglib.deploy.load_run`'s errors.
    """
    onnx, ort = _need_onnx()
    run, val_images, val_bgs = _loaded(source)
    if images is None:
        images, backgrounds = val_images, (backgrounds if backgrounds is not None else val_bgs)
    if images is None:
        raise ValueError("export_onnx checks the graph on real images: pass images=... (validation images: a "
                         "folder, a zip or a list of files)")
    path = Path(path)
    if img_size is not None and int(img_size) != run.img_size:
        run = LoadedRun(run.model, run.config, run.task, int(img_size), run.class_names, run.colors, run.checkpoint,
                        run.epoch, run.device)
    report = OnnxExport(path, run.task, run.img_size, run.input_names, run.output_names, bool(fp16),
                        bool(normalize_in_graph), bool(dynamic_batch))
    dtype = torch.float16 if fp16 else torch.float32
    graph = _Graph(copy.deepcopy(run.model).float().cpu().eval(), run.two_inputs, normalize_in_graph, run.mean,
                   run.std).to(dtype).eval()
    n = 2 if dynamic_batch else 1
    example = tuple(torch.zeros(n, 3, run.img_size, run.img_size, dtype=dtype) for _ in run.input_names)
    batch = torch.export.Dim("batch", min=1, max=4096)
    shapes = (tuple({0: batch} for _ in run.input_names),) if dynamic_batch else None  # forward(*inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    t0 = time.monotonic()
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), torch.no_grad():
            warnings.filterwarnings("ignore", message=".*(LeafSpec|axis name).*")  # torch.export's own notices
            torch.onnx.export(graph, example, str(tmp), dynamo=True, input_names=list(run.input_names),
                              output_names=list(run.output_names), opset_version=opset, dynamic_shapes=shapes,
                              external_data=False, verbose=False)
    except Exception as err:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"torch.onnx could not export model {run.config.model!r} ({run.task}): "
                           f"{type(err).__name__}: {str(err)[:500]}") from err
    report.export_seconds = time.monotonic() - t0
    try:
        _add_metadata(onnx, tmp, run, normalize_in_graph, opset)
        onnx.checker.check_model(str(tmp), full_check=True)
        report.size_mb = tmp.stat().st_size / 1e6
        _check(ort, tmp, run, report, images, backgrounds, max_images, batch_size if dynamic_batch else 1, dtype)
    except OnnxMismatch:
        os.replace(tmp, path.with_name(path.name + ".rejected"))
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return report


def _add_metadata(onnx, file: Path, run: LoadedRun, normalize_in_graph: bool, opset: int) -> None:
    model = onnx.load(str(file))
    written = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if written != opset:  # torch.onnx falls back to its own opset (with a warning) when it cannot convert
        raise RuntimeError(f"torch.onnx could not write opset {opset} for model {run.config.model!r} (it wrote opset "
                           f"{written}: onnx's version converter has no adapter for some of its ops); use opset=18")
    meta = {"seglib_version": versions().get("seglib", "?"), "task": run.task, "model": run.config.model, "img_size": str(run.img_size),
            "inputs": "RGB 0..255 (normalised in the graph)" if normalize_in_graph else
            "RGB, (x / 255 - mean) / std per channel", "mean": json.dumps(list(run.mean)),
            "std": json.dumps(list(run.std)), "class_names": json.dumps(run.class_names),
            "colors": json.dumps(run.colors.tolist()), "checkpoint": str(run.checkpoint), "epoch": str(run.epoch)}
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(file))


def _check(ort, file: Path, run: LoadedRun, report: OnnxExport, images, backgrounds, max_images: int,
           batch_size: int, dtype: torch.dtype) -> None:
    t0 = time.monotonic()
    session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    reference = copy.deepcopy(run.model).float().cpu().eval()
    mean, std = torch.tensor(run.mean).view(1, 3, 1, 1), torch.tensor(run.std).view(1, 3, 1, 1)
    got, want = [], []
    for feed in _batches(run, images, backgrounds, max_images, batch_size, not report.normalize_in_graph):
        got.append([o.astype(np.float32) for o in session.run(list(run.output_names),
                                                               {k: v.to(dtype).numpy() for k, v in feed.items()})])
        x = {k: (v / 255.0 - mean) / std for k, v in feed.items()} if report.normalize_in_graph else feed
        with torch.no_grad():
            ref = reference({"bg": x["bg"], "bg_fg": x["bg_fg"]} if run.two_inputs else x["image"])
        want.append([r.numpy() for r in (ref if isinstance(ref, (tuple, list)) else (ref,))])
    got = [np.concatenate(o) for o in zip(*got)]
    want = [np.concatenate(o) for o in zip(*want)]
    report.max_abs_diff = {n: float(np.abs(a - b).max()) for n, a, b in zip(run.output_names, got, want)}
    report.atol = ATOL[report.fp16] * max(1.0, *(float(np.abs(b).max()) for b in want))
    (mine, _), (theirs, margin) = _classes(got[-1]), _classes(want[-1])  # the class output (mask logits for depth)
    decided = margin > report.atol
    report.n_images, report.n_pixels = int(theirs.shape[0]), int(theirs.size)
    report.agreement = float((mine == theirs).mean())
    report.agreement_decided = float((mine == theirs)[decided].mean()) if decided.any() else 1.0
    report.check_seconds = time.monotonic() - t0
    if report.agreement_decided < MIN_AGREEMENT or max(report.max_abs_diff.values()) > report.atol:
        raise OnnxMismatch(f"the ONNX graph disagrees with PyTorch: {report}; kept as {report.path}.rejected. "
                           "Report this with the file; export with fp16=False if it was float16")
