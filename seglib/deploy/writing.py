"""Where :meth:`seglib.deploy.LoadedRun.predict` writes: the list it returns (:class:`Predictions`) and the PNG
files of a zip or a folder (:func:`write_predictions`), in the layouts the notebooks' exports use.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..data.classes import colorize
from ..data.depth import depth_png16
from ..export import png_bytes, pred_name, write_zip

DEPTH_README = ("masks/*.png: predicted foreground, 8-bit, 255 = foreground (probability > 0.5).\n"
                "depth/*.png: predicted depth, 16-bit grey, value / 65535 in [0, 1], 1 = near (bright = near).\n")


class Predictions(list):
    """A list of predictions, one per image in input order, with ``names`` (one per entry), ``skipped``
    (``(file, reason)`` of the files left out) and ``path`` (the zip or folder written, or None)."""

    def __init__(self, items=(), names=(), skipped=(), path: Path | None = None):
        super().__init__(items)
        self.names, self.skipped, self.path = list(names), list(skipped), path


def _pred_path(name: str) -> str:
    """``"sub/Img_001"`` -> ``"sub/Pred_001.png"``: :func:`seglib.export.pred_name` of the last part."""
    head, _, stem = name.rpartition("/")
    return (head + "/" if head else "") + pred_name(stem)


def members(task: str, predictions: Predictions, images: list[np.ndarray], colors: np.ndarray,
            previews: bool = True) -> Iterator[tuple[str, bytes]]:
    """``(relative file name, PNG bytes)`` of every prediction.

    Segmentation / binary: ``Pred_<name>.png`` (class ids; binary: 0 / 255) and, with ``previews``,
    ``preview/Pred_<name>.png`` (``uint8 H x 2W x 3``: the image | 50 % colour overlay). Depth: ``README.txt``,
    ``masks/<name>.png`` (0 / 255) and ``depth/<name>.png`` (16-bit, :func:`seglib.data.depth.depth_png16`).
    """
    if task == "depth":
        yield "README.txt", DEPTH_README.encode()
        for name, p in zip(predictions.names, predictions):
            yield f"masks/{name}.png", png_bytes(p["mask"] * np.uint8(255))
            yield f"depth/{name}.png", png_bytes(depth_png16(p["depth"]))
        return
    for name, pred, image in zip(predictions.names, predictions, images):
        file = _pred_path(name)
        yield file, png_bytes(pred * np.uint8(255) if task == "binary" else pred)
        if previews:
            overlay = (0.5 * image + 0.5 * colorize(pred, colors)).astype(np.uint8)
            yield f"preview/{file}", png_bytes(np.concatenate([image, overlay], 1))


def write_predictions(out: str | os.PathLike, task: str, predictions: Predictions, images: list[np.ndarray],
                      colors: np.ndarray, previews: bool = True) -> Path:
    """Write :func:`members` to ``out``: a ``.zip`` (atomically, :func:`seglib.export.write_zip`) or a folder
    (created; each file written to a temporary name, then renamed, so no half-written PNG is left).

    Returns:
        ``out`` as a Path.

    Raises:
        ValueError: ``out`` is an existing file that is not a zip.
    """
    out = Path(out)
    files = members(task, predictions, images, colors, previews)
    if out.suffix.lower() == ".zip":
        return write_zip(out, files)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; pass a folder or a .zip path to write predictions to")
    for name, data in files:
        dest = out / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, dest)
    return out
