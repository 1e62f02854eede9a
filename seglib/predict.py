"""Inference at the images' original resolution: one path (:func:`predict_logits`) for every task, and
the class-id form of semantic segmentation (:func:`predict_samples`).

Each image is resized to the network size and normalised by the validation pipeline
(:func:`seglib.data.transforms.build_transform` with no augmentation); every output is resized back to
the image's original size (bilinear, on logits) before any sigmoid, softmax or argmax.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data.io import read_image
from .data.layouts import Sample
from .data.transforms import build_transform


def class_id_dtype(n_classes: int) -> type:
    """The smallest unsigned dtype holding class ids ``0..n_classes-1`` that PNG can store: ``np.uint8`` up to
    256 classes, ``np.uint16`` up to 65536 (a 16-bit grey PNG).

    Raises:
        ValueError: ``n_classes`` < 1 or > 65536.
    """
    if not 1 <= int(n_classes) <= 65536:
        raise ValueError(f"{n_classes} classes cannot be written as a PNG of class ids (1 to 65536 classes)")
    return np.uint8 if n_classes <= 256 else np.uint16


def _image_only(sample) -> dict[str, np.ndarray]:
    return {"image": read_image(sample.image)}


@torch.no_grad()
def predict_logits(model: nn.Module, samples: Sequence, size: int, device: torch.device | str = "cpu",
                   batch_size: int = 8, amp: bool = False,
                   load: Callable[[object], dict[str, np.ndarray]] = _image_only, input_keys: Sequence[str] = ("image",),
                   model_input: Callable[[dict[str, torch.Tensor]], object] | None = None,
                   ) -> Iterator[tuple[object, dict, tuple[torch.Tensor, ...]]]:
    """Run ``model`` over ``samples`` in batches and yield its outputs at each image's original size.

    Args:
        model: switched to ``eval()``; returns logits ``float N x C x size x size`` or a tuple of them.
        samples: any sample objects ``load`` understands.
        size: network input side length [px].
        device: where to run; batch_size: images per forward pass; amp: float16 autocast (CUDA only).
        load: ``sample -> {name: array}`` decoded at original resolution; the ``input_keys`` entries are
            ``uint8 H x W x 3`` RGB images, the first one sets ``H x W``; other entries pass through.
            Default: ``{"image": read_image(sample.image)}``.
        input_keys: the entries resized and normalised as network inputs.
        model_input: ``{key: float32 N x 3 x size x size} -> model input``; default the ``"image"`` batch.

    Yields:
        ``(sample, data, outputs)`` in input order: ``data`` is ``load``'s dict, ``outputs`` a tuple with one
        ``float32 C x H x W`` CPU tensor of logits per model output, at the original ``H x W``.

    Raises:
        Whatever ``load`` raises (:class:`~seglib.data.io.DataError` for unreadable files).
    """
    device = torch.device(device)
    model.eval()
    first, *others = input_keys
    transform = build_transform(size, "none", additional_targets={k: "image" for k in others} or None)
    to_model = model_input or (lambda t: t["image"])
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        datas = [load(s) for s in chunk]
        outs = [transform(**{("image" if k == first else k): d[k] for k in input_keys}) for d in datas]
        x = {k: torch.stack([o["image" if k == first else k] for o in outs]).to(device) for k in input_keys}
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
            y = model(to_model(x))
        y = tuple(y) if isinstance(y, (tuple, list)) else (y,)
        for k, (s, d) in enumerate(zip(chunk, datas)):
            hw = d[first].shape[:2]
            yield s, d, tuple(F.interpolate(o[k:k + 1].float(), size=hw, mode="bilinear", align_corners=False)[0].cpu()
                              for o in y)


def predict_samples(model: nn.Module, samples: Sequence[Sample], size: int, device: torch.device | str = "cpu",
                    batch_size: int = 8, amp: bool = False) -> Iterator[tuple[Sample, np.ndarray, np.ndarray, np.ndarray]]:
    """Predict class ids for each sample's image (:func:`predict_logits`, then softmax and argmax).

    Args:
        model: returns logits ``float N x C x size x size``; samples: images to predict (masks are not read);
        size, device, batch_size, amp: see :func:`predict_logits`.

    Yields:
        ``(sample, image uint8 H x W x 3, pred H x W class ids, probs_max float32 H x W)`` in input order, at
        the original ``H x W``; ``pred`` is ``uint8`` up to 256 classes and ``uint16`` above
        (:func:`class_id_dtype`), so no id wraps; ``probs_max`` is the softmax probability of the chosen class.

    Raises:
        ValueError: more than 65536 classes; DataError: an unreadable image.
    """
    for s, data, (logits,) in predict_logits(model, samples, size, device, batch_size, amp):
        conf, pred = torch.softmax(logits, 0).max(0)
        yield s, data["image"], pred.numpy().astype(class_id_dtype(logits.shape[0])), conf.numpy()
