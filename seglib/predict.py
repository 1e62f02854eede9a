"""Inference for semantic segmentation at the images' original resolution."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data.io import read_image
from .data.layouts import Sample
from .data.transforms import build_transform


@torch.no_grad()
def predict_samples(model: nn.Module, samples: Sequence[Sample], size: int, device: torch.device | str = "cpu",
                    batch_size: int = 8, amp: bool = False) -> Iterator[tuple[Sample, np.ndarray, np.ndarray, np.ndarray]]:
    """Predict class ids for each sample's image.

    Each image is resized to ``size`` and normalised by the same pipeline as validation
    (:func:`seglib.data.transforms.build_transform` with no augmentation); logits are resized back to
    the image's original size (bilinear) before the argmax.

    Args:
        model: returns logits ``float N x C x size x size``; switched to ``eval()``.
        samples: images to predict (masks are not read).
        size: network input side length [px].
        device: where to run.
        batch_size: images per forward pass.
        amp: float16 autocast (CUDA only).

    Yields:
        ``(sample, image uint8 H x W x 3, pred uint8 H x W class ids, probs_max float32 H x W)`` in input
        order, at the original ``H x W``; ``probs_max`` is the softmax probability of the chosen class.
    """
    device = torch.device(device)
    model.eval()
    transform = build_transform(size, "none")
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        images = [read_image(s.image) for s in chunk]
        x = torch.stack([transform(image=im)["image"] for im in images]).to(device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
            logits = model(x)
        for s, im, lg in zip(chunk, images, logits.float()):
            lg = F.interpolate(lg[None], size=im.shape[:2], mode="bilinear", align_corners=False)[0]
            probs = torch.softmax(lg, 0)
            conf, pred = probs.max(0)
            yield s, im, pred.byte().cpu().numpy(), conf.cpu().numpy()
