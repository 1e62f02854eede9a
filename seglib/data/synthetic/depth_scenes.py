"""Synthetic MODEST-style data: rooms with known depth, people pasted at random places and flips.

Seed 000 built its dataset (MODEST Museum, github.com/shan18/MODEST-Museum-Dataset) by pasting 100
foreground people (PNG with alpha) at 20 random positions, and 20 more times flipped, on each of 100
museum backgrounds, keeping each composite's mask (the alpha channel) and a DenseDepth depth map. This
generator does the same with scenes whose depth is known exactly instead of predicted:

* a background is a room seen by a pinhole camera (floor with tiles, side walls, back wall with
  framed pictures, ceiling, pedestals standing on the floor), ray-cast so every pixel has its distance;
* a foreground is a person-like silhouette (head, torso, arms, legs in a random pose and colours);
* a placement stands the person on the floor at a random distance and column (its size follows the
  perspective), flipped horizontally in the second half of the placements; the person's depth is the
  floor distance at its feet, and is always nearer than the background it covers.

Depth convention (the one seglib uses, :mod:`seglib.data.depth`): ``d = (Z_FAR - z) / (Z_FAR - Z_NEAR)``
clipped to [0, 1] with distance ``z`` in metres, so 1 = near (0.5 m), 0 = far (15 m), stored as an
8-bit grey PNG "bright = near" like the original's DenseDepth maps. Every pixel is valid (no zeros).

Output (MODEST layout, names without extension in ``file_map.txt``)::

    bg/bg001.jpeg   fg/fg001.png (RGBA)   bg_fg/bg001_fg001_01.jpeg
    bg_fg_mask/bg001_fg001_01_mask.png (0/255)   bg_fg_depth_map/bg001_fg001_01_depth_map.png
    file_map.txt: bg <TAB> bg_fg <TAB> bg_fg_mask <TAB> bg_fg_depth_map, one line per composite
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .build import build_once

GENERATOR_VERSION = 1
Z_NEAR, Z_FAR = 0.5, 15.0  # metres mapped to depth 1 and 0
CAM_HEIGHT = 1.5  # metres
PERSON_HEIGHT = 1.7  # metres
_FG_CANON = 256  # canonical foreground height [px]


def depth_to_unit(z: np.ndarray) -> np.ndarray:
    """Distance ``z`` [m] -> seglib depth in [0, 1] (1 = near): ``(Z_FAR - z) / (Z_FAR - Z_NEAR)``, clipped."""
    return np.clip((Z_FAR - z) / (Z_FAR - Z_NEAR), 0.0, 1.0).astype(np.float32)


def _noise(rng: np.random.Generator, size: int, scale: int) -> np.ndarray:
    """Smooth noise in [-1, 1], ``size x size``, correlated over about ``size / scale`` px."""
    small = rng.uniform(-1, 1, (scale, scale)).astype(np.float32)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def render_room(rng: np.random.Generator, size: int = 224) -> tuple[np.ndarray, np.ndarray, dict]:
    """Ray-cast one room background.

    Returns:
        ``(image uint8 size x size x 3 RGB, z float32 size x size distance along the optical axis [m],
        camera {"f": focal length [px], "horizon": horizon row [px], "z_back": back wall distance [m]})``.
    """
    s = size
    f = rng.uniform(0.8, 1.0) * s
    horizon = rng.uniform(0.36, 0.5) * s
    cx = s / 2 + rng.uniform(-0.08, 0.08) * s
    half_w, x0 = rng.uniform(2.5, 4.5), rng.uniform(-0.8, 0.8)
    z_back, ceil_h = rng.uniform(7.0, 13.0), rng.uniform(3.0, 4.5)
    v, u = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    a, b = (u - cx) / f, (v - horizon) / f
    inf = np.float32(np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        cands = np.stack([
            np.where(b > 1e-6, CAM_HEIGHT / b, inf),  # 0 floor
            np.where(b < -1e-6, (ceil_h - CAM_HEIGHT) / -b, inf),  # 1 ceiling
            np.where(a < -1e-6, (half_w + x0) / -a, inf),  # 2 left wall
            np.where(a > 1e-6, (half_w - x0) / a, inf),  # 3 right wall
            np.full_like(a, z_back),  # 4 back wall
        ])
    surface = cands.argmin(0)
    z = cands.min(0).astype(np.float32)
    wx, wy = a * z + x0, CAM_HEIGHT - b * z  # world x (right) and height (up) of the hit point
    base = rng.uniform(0.25, 0.85, (5, 3)).astype(np.float32)
    base[1] = rng.uniform(0.75, 0.95, 3)  # light ceiling
    img = base[surface]
    tile = rng.uniform(0.6, 1.2)
    checker = ((np.floor(wx / tile) + np.floor(z / tile)) % 2).astype(np.float32)
    floor_mod = 1.0 - 0.25 * checker
    img = img * np.where(surface == 0, floor_mod, 1.0)[..., None]
    # framed pictures on the back wall and the side walls (a museum)
    for _ in range(rng.integers(2, 6)):
        wall = rng.choice([2, 3, 4])
        coord = np.where(wall == 4, wx, z)
        c0 = rng.uniform(-half_w + 0.5, half_w - 1.5) if wall == 4 else rng.uniform(2.0, z_back - 1.5)
        w, y0 = rng.uniform(0.6, 1.6), rng.uniform(1.0, 1.6)
        h = rng.uniform(0.5, 1.2)
        inside = (surface == wall) & (coord > c0) & (coord < c0 + w) & (wy > y0) & (wy < y0 + h)
        frame = (surface == wall) & (coord > c0 - 0.08) & (coord < c0 + w + 0.08) & (wy > y0 - 0.08) & (wy < y0 + h + 0.08)
        img[frame] = rng.uniform(0.05, 0.3, 3)
        art = np.stack([0.5 + 0.45 * _noise(rng, s, rng.integers(3, 8)) for _ in range(3)], -1)
        img[inside] = art[inside]
    # pedestals: front faces of boxes standing on the floor
    for _ in range(rng.integers(0, 3)):
        zo = rng.uniform(3.0, z_back - 0.5)
        xo, w, ho = rng.uniform(-half_w + 0.5, half_w - 0.5), rng.uniform(0.4, 1.0), rng.uniform(0.6, 1.4)
        u0, u1 = cx + f * (xo - w / 2 - x0) / zo, cx + f * (xo + w / 2 - x0) / zo
        v0, v1 = horizon + f * (CAM_HEIGHT - ho) / zo, horizon + f * CAM_HEIGHT / zo
        box = (u >= u0) & (u < u1) & (v >= v0) & (v < v1) & (z > zo)
        z[box] = zo
        img[box] = rng.uniform(0.3, 0.95, 3) * (0.9 + 0.1 * np.sin(v[box] / 3.0))[:, None]
    shade = 1.0 / (1.0 + 0.06 * z) + 0.08 * _noise(rng, s, 12)
    img = img * shade[..., None] + rng.normal(0, 0.015, img.shape)
    camera = {"f": float(f), "horizon": float(horizon), "z_back": float(z_back)}
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8), z, camera


def render_person(rng: np.random.Generator) -> np.ndarray:
    """One foreground: a person-like silhouette in a random pose and colours.

    Returns:
        ``uint8 256 x W x 4`` RGBA (alpha 0/255), the feet on the bottom row, W about 0.6 x 256.
    """
    h = _FG_CANON
    w = int(h * 0.6)
    rgba = np.zeros((h, w, 4), np.uint8)
    skin = rng.uniform(0.35, 0.95) * np.array([1.0, 0.78, 0.62])
    shirt, trousers = rng.uniform(0.05, 0.95, 3), rng.uniform(0.05, 0.8, 3)
    c = w / 2
    head_r, shoulder, hip, feet = h * 0.065, h * 0.2, h * 0.52, h - 1
    torso_w = h * rng.uniform(0.09, 0.13)

    def draw(color, fn):
        layer = np.zeros((h, w), np.uint8)
        fn(layer)
        on = layer > 0
        rgba[on, :3] = (np.clip(color, 0, 1) * 255).astype(np.uint8)
        rgba[on, 3] = 255

    def limb(img, p0, angle, length, thick):
        p1 = (p0[0] + length * np.sin(angle), p0[1] + length * np.cos(angle))
        cv2.line(img, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), 255, int(thick), cv2.LINE_AA)

    spread = rng.uniform(0.02, 0.3)
    for side in (-1, 1):  # legs
        draw(trousers, lambda im, s=side: limb(im, (c + s * torso_w * 0.5, hip), s * spread, feet - hip, h * 0.07))
    for side in (-1, 1):  # arms
        ang = side * rng.uniform(0.1, 1.4)
        draw(shirt * 0.85, lambda im, s=side, a=ang: limb(im, (c + s * torso_w, shoulder + 6), a, h * 0.3, h * 0.05))
    draw(shirt, lambda im: cv2.ellipse(im, (int(c), int((shoulder + hip) / 2)),
                                       (int(torso_w), int((hip - shoulder) / 2 + 6)), 0, 0, 360, 255, -1))
    draw(skin, lambda im: cv2.circle(im, (int(c), int(shoulder - head_r)), int(head_r), 255, -1))
    shade = 0.8 + 0.2 * np.linspace(1, 0, w)[None, :, None]
    rgba[..., :3] = (rgba[..., :3] * shade).astype(np.uint8)
    return rgba


def paste(bg: np.ndarray, z_bg: np.ndarray, camera: dict, fg: np.ndarray, rng: np.random.Generator,
          flip: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stand ``fg`` (RGBA) on the floor of ``bg`` (``z_bg`` and ``camera`` from :func:`render_room`) at a
    random distance and column.

    Returns:
        ``(bg_fg uint8 H x W x 3, mask uint8 H x W in {0, 255}, depth float32 H x W in [0, 1], 1 = near)``;
        inside the mask the depth is the feet's floor distance (slightly nearer towards the body's
        centre) and always at least 0.02 nearer than the background it covers.
    """
    s = bg.shape[0]
    f, horizon = camera["f"], camera["horizon"]
    z_min = max(2.0, f * PERSON_HEIGHT * 1.1 / (0.95 * s), f * CAM_HEIGHT / (s - 1 - horizon))
    z_fg = rng.uniform(z_min, max(z_min + 0.5, min(8.0, camera["z_back"] - 1.0)))
    height = max(8, int(f * PERSON_HEIGHT * rng.uniform(0.85, 1.1) / z_fg))
    width = max(4, int(round(fg.shape[1] * height / fg.shape[0])))
    small = cv2.resize(fg, (width, height), interpolation=cv2.INTER_AREA)
    if flip:
        small = small[:, ::-1]
    feet = int(min(s - 1, horizon + f * CAM_HEIGHT / z_fg))
    top = feet - height + 1
    left = int(rng.integers(0, max(1, s - width)))
    canvas = np.zeros((s, s, 4), np.float32)
    y0, x0 = max(0, top), max(0, left)
    y1, x1 = min(s, top + height), min(s, left + width)
    canvas[y0:y1, x0:x1] = small[y0 - top:y1 - top, x0 - left:x1 - left]
    alpha = canvas[..., 3:] / 255.0
    bg_fg = (bg * (1 - alpha) + canvas[..., :3] * alpha).round().astype(np.uint8)
    mask = (alpha[..., 0] > 0.5).astype(np.uint8)
    depth = depth_to_unit(z_bg)
    if mask.any():
        core = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
        core = core / max(float(core.max()), 1.0)
        d_fg = depth_to_unit(np.float32(z_fg - 0.15 * core))
        depth = np.where(mask > 0, np.maximum(d_fg, np.minimum(depth + 0.02, 1.0)), depth)
    return bg_fg, mask * 255, depth.astype(np.float32)


def generate_depth_scenes(root, n_bg: int = 8, n_fg: int = 8, per_pair: int = 4, size: int = 224, seed: int = 0) -> Path:
    """Write ``n_bg x n_fg x per_pair`` composites in the MODEST layout under ``root`` (see module docstring).

    Placement ``k`` of foreground ``j`` on background ``i`` is drawn from
    ``np.random.default_rng([seed, i, j, k])``; placements ``k >= per_pair // 2`` are flipped (the original
    used 20 plain + 20 flipped). Written to a temporary sibling folder renamed into place at the end;
    ``root/.complete.json`` holds the parameters and a second call with the same ones does nothing.

    Raises:
        ValueError: counts < 1, negative seed or ``size < 32``.
        FileExistsError: ``root`` exists with other content (nothing is deleted).
    """
    root = Path(root)
    if min(n_bg, n_fg, per_pair) < 1 or seed < 0 or size < 32:
        raise ValueError(f"need n_bg, n_fg, per_pair >= 1, seed >= 0, size >= 32; got {n_bg}, {n_fg}, "
                         f"{per_pair}, {seed}, {size}")
    params = {"generator": "seglib.data.synthetic.depth_scenes", "version": GENERATOR_VERSION, "n_bg": int(n_bg),
              "n_fg": int(n_fg), "per_pair": int(per_pair), "size": int(size), "seed": int(seed)}

    def write(tmp: Path) -> None:
        for d in ("bg", "fg", "bg_fg", "bg_fg_mask", "bg_fg_depth_map"):
            (tmp / d).mkdir()
        fgs = []
        for j in range(n_fg):
            fgs.append(render_person(np.random.default_rng([seed, 1_000_000 + j])))
            Image.fromarray(fgs[-1]).save(tmp / "fg" / f"fg{j + 1:03d}.png")
        lines = []
        for i in range(n_bg):
            bg, z, cam = render_room(np.random.default_rng([seed, 2_000_000 + i]), size)
            Image.fromarray(bg).save(tmp / "bg" / f"bg{i + 1:03d}.jpeg", quality=92)
            for j in range(n_fg):
                for k in range(per_pair):
                    rng = np.random.default_rng([seed, i, j, k])
                    bg_fg, mask, depth = paste(bg, z, cam, fgs[j], rng, flip=k >= per_pair // 2 and per_pair > 1)
                    name = f"bg{i + 1:03d}_fg{j + 1:03d}_{k + 1:02d}"
                    Image.fromarray(bg_fg).save(tmp / "bg_fg" / f"{name}.jpeg", quality=92)
                    Image.fromarray(mask).save(tmp / "bg_fg_mask" / f"{name}_mask.png")
                    Image.fromarray((depth * 255).round().astype(np.uint8)).save(
                        tmp / "bg_fg_depth_map" / f"{name}_depth_map.png")
                    lines.append(f"bg{i + 1:03d}\t{name}\t{name}_mask\t{name}_depth_map")
        (tmp / "file_map.txt").write_text("\n".join(lines) + "\n")

    return build_once(root, params, write)


if __name__ == "__main__":  # preview: python -m seglib.data.synthetic.depth_scenes [out.png]
    import sys

    rows = []
    for k in range(4):
        bg, z, cam = render_room(np.random.default_rng([0, 2_000_000 + k]))
        im, m, d = paste(bg, z, cam, render_person(np.random.default_rng([0, k])), np.random.default_rng(k), k % 2 == 1)
        rows.append(np.concatenate([bg, im, np.repeat(m[..., None], 3, 2),
                                    np.repeat((d[..., None] * 255).astype(np.uint8), 3, 2)], 1))
    Image.fromarray(np.concatenate(rows)).save(sys.argv[1] if len(sys.argv) > 1 else "depth_scenes_preview.png")
