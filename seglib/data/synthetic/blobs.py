"""Synthetic binary "cells": seglib's download-free dataset for the hyperparameter-study notebook.

Each image shows 0-11 irregular blobs (cells) with a dark rim and a textured interior on a textured
background, plus unlabelled debris (small dark specks) and sensor noise, so the task needs more than a
brightness threshold. About one image in ten has no cell at all, which exercises the "image without
objects" case of object AP. Masks are {0, 255} with 255 = cell, as the ISBI 2012 masks of
``../shared/data/isbi2012_membrane`` are encoded.

Run ``python -m seglib.data.synthetic.blobs [out.png]`` for timing and a preview.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .build import build_once

GENERATOR_VERSION = 1
SPLITS: tuple[tuple[str, int], ...] = (("train", 0), ("val", 1), ("test", 2))


def _smooth_noise(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """Zero-mean, unit-std noise with correlation length ``scale`` [px] (``float32 size x size``)."""
    n = rng.standard_normal((size, size)).astype(np.float32)
    n = cv2.GaussianBlur(n, (0, 0), max(scale, 0.5))
    return (n - n.mean()) / (n.std() + 1e-6)


def _blob_polygon(rng: np.random.Generator, cx: float, cy: float, r: float) -> np.ndarray:
    """An irregular closed outline around (cx, cy) with mean radius ``r`` (``int32 K x 2`` points)."""
    theta = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    radius = np.full_like(theta, r)
    for k in (2, 3, 5):
        radius *= 1 + rng.uniform(0, 0.12) * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
    aspect = rng.uniform(0.7, 1.0)
    rot = rng.uniform(0, np.pi)
    x, y = radius * np.cos(theta), aspect * radius * np.sin(theta)
    xr, yr = x * np.cos(rot) - y * np.sin(rot), x * np.sin(rot) + y * np.cos(rot)
    return np.stack([cx + xr, cy + yr], 1).round().astype(np.int32)


def render_blobs(rng: np.random.Generator, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """One grey image and its mask.

    Args:
        rng: the only source of randomness (same generator state -> same pair).
        size: side length [px], at least 32.

    Returns:
        ``(image uint8 size x size, mask uint8 size x size in {0, 255})``.

    Raises:
        ValueError: ``size < 32``.
    """
    if size < 32:
        raise ValueError(f"size must be >= 32 px, got {size}")
    mask = np.zeros((size, size), np.uint8)
    rim = np.zeros((size, size), np.uint8)
    n_cells = 0 if rng.random() < 0.1 else int(rng.integers(1, 12))
    for _ in range(n_cells):
        r = rng.uniform(0.06, 0.16) * size
        cx, cy = rng.uniform(0, size, 2)
        poly = _blob_polygon(rng, cx, cy, r)
        cv2.fillPoly(mask, [poly], 255)
        cv2.polylines(rim, [poly], True, 255, thickness=max(1, size // 64))
    cell = mask.astype(np.float32) / 255.0
    img = 0.45 + 0.06 * _smooth_noise(rng, size, size / 10)  # uneven illumination
    img += cell * (0.18 + 0.05 * _smooth_noise(rng, size, 2.0))  # textured, brighter interior
    img -= 0.22 * rim.astype(np.float32) / 255.0  # dark cell membrane
    for _ in range(int(rng.integers(0, 12))):  # unlabelled debris
        c = tuple(int(v) for v in rng.integers(0, size, 2))
        cv2.circle(img, c, int(rng.integers(1, max(2, size // 40) + 1)), float(rng.uniform(0.1, 0.3)), -1)
    img = cv2.GaussianBlur(img, (0, 0), 0.8)
    img += rng.normal(0, 0.04, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8), mask


def generate_blobs(root, n_train: int = 96, n_val: int = 24, n_test: int = 0, size: int = 128, seed: int = 0) -> Path:
    """Write a ``pairs``-layout binary dataset under ``root`` and return ``root``.

    Layout: ``images/{split}_NNNN.png`` (grey), ``masks/{split}_NNNN.png`` ({0, 255}, none for test) and
    ``splits/{train,val,test}.txt``. Sample ``i`` of a split is ``render_blobs(default_rng([seed, code,
    i]), size)`` (codes train 0, val 1, test 2), so it does not depend on the other counts. Written to a
    temporary sibling folder renamed into place; ``root/.complete.json`` records the parameters and makes
    a second call with the same parameters a no-op.

    Raises:
        ValueError: negative counts or seed, ``n_train`` or ``n_val`` of 0, ``size < 32``.
        FileExistsError: ``root`` holds something else (nothing is deleted).
    """
    root = Path(root)
    if min(n_test, seed) < 0 or min(n_train, n_val) < 1 or size < 32:
        raise ValueError(f"need n_train, n_val >= 1, n_test, seed >= 0 and size >= 32; got {n_train}, {n_val}, "
                         f"{n_test}, {seed}, {size}")
    params = {"generator": "seglib.data.synthetic.blobs", "version": GENERATOR_VERSION, "n_train": int(n_train),
              "n_val": int(n_val), "n_test": int(n_test), "size": int(size), "seed": int(seed)}

    def write(tmp: Path) -> None:
        for sub in ("images", "masks", "splits"):
            (tmp / sub).mkdir()
        for (split, code), n in zip(SPLITS, (n_train, n_val, n_test)):
            names = []
            for i in range(n):
                img, mask = render_blobs(np.random.default_rng([seed, code, i]), size)
                name = f"{split}_{i:04d}"
                Image.fromarray(img).save(tmp / "images" / f"{name}.png")
                if split != "test":
                    Image.fromarray(mask).save(tmp / "masks" / f"{name}.png")
                names.append(name)
            if names:
                (tmp / "splits" / f"{split}.txt").write_text("\n".join(names) + "\n")

    return build_once(root, params, write)


if __name__ == "__main__":  # timing and a preview: python -m seglib.data.synthetic.blobs [out.png]
    import sys
    import time

    t0 = time.perf_counter()
    pairs = [render_blobs(np.random.default_rng([0, 0, i]), 128) for i in range(8)]
    print(f"{(time.perf_counter() - t0) / 8 * 1000:.1f} ms per 128 px image; foreground fractions "
          f"{[round(float((m > 0).mean()), 2) for _, m in pairs]}")
    if len(sys.argv) > 1:
        top = np.concatenate([p[0] for p in pairs], 1)
        bottom = np.concatenate([p[1] for p in pairs], 1)
        Image.fromarray(np.concatenate([top, bottom], 0)).save(sys.argv[1])
