"""Prediction export: class-id PNGs (and colour previews) written into a zip atomically.

File names follow the JetCar notebook: the image name with ``Img`` -> ``Pred`` and ``.png``
(``Img_00012.jpg`` -> ``Pred_00012.png``); names without ``Img`` get a ``Pred_`` prefix. The grey
value of each pixel is the predicted class id (``torchvision.utils.save_image(mask / 255.0)`` in the
original).
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image


def pred_name(image_stem: str) -> str:
    """``"Img_00012"`` -> ``"Pred_00012.png"``; ``"0001TP_006690"`` -> ``"Pred_0001TP_006690.png"``."""
    return (image_stem.replace("Img", "Pred", 1) if "Img" in image_stem else f"Pred_{image_stem}") + ".png"


def png_bytes(array: np.ndarray) -> bytes:
    """PNG encoding of a ``uint8 H x W`` (8-bit grey), ``uint16 H x W`` (16-bit grey: class ids above 255, see
    :func:`seglib.predict.class_id_dtype`) or ``uint8 H x W x 3`` (RGB) array.

    Raises:
        TypeError: another dtype or shape (PIL cannot map it to a PNG mode).
    """
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG")
    return buf.getvalue()


def write_zip(path: str | os.PathLike, members: Iterable[tuple[str, bytes]]) -> Path:
    """Write ``(name, bytes)`` members to ``path`` via a temporary file and ``os.replace``.

    An existing zip is replaced only once the new one is complete; a zip that cannot be written leaves
    the old one untouched.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, data in members:
                zf.writestr(name, data)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
