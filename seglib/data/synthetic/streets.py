"""Synthetic JetCar-style street scenes: seglib's download-free dataset for the 22-class JetCar notebook.

JetCar (github.com/StefansAI/JetCar) is a small robot car driving on a printed model street map; its
ImageSegmenter wrote 224x224 RGB JPEGs and 1-channel PNG masks whose grey value is the class id
(classes in :data:`seglib.data.classes.JETCAR_CLASSES`). This module renders look-alike scenes: a
forward/down looking camera over a perspective road (own lane, wrong-direction lane, turn lanes),
painted lines, wait lines, arrows, merge markings and yield/stop signs on poles, with photometric
noise so that image colours never equal the mask palette.

Mask draw order follows JetCar's draw-order numbers (lanes 6,7,8,5; lane_limit; wait_line; arrows;
merge_left; yellow lines; white lines), later classes overwriting earlier ones. Signs and their poles
stand in front of the ground, so they are drawn last (poles are class 0) to keep image and mask
consistent. Run ``python -m seglib.data.synthetic.streets [out.png]`` for timing and a preview.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .build import build_once

SPLITS: tuple[tuple[str, int], ...] = (("Train", 0), ("Val", 1), ("Test", 2))
"""(folder name, split code used in the per-sample seed); Test has no masks."""
GENERATOR_VERSION = 1
_SH = 4  # fixed-point bits of the polygon coordinates handed to cv2
_ZMIN = 0.25  # near clipping depth (lane widths)


def _stroke(pts, w: float = 0.36, head: float = 0.0) -> list[np.ndarray]:
    """A thick polyline as one polygon (mitred joints), plus a triangular head at its end."""
    p = np.asarray(pts, np.float64)
    d = np.diff(p, axis=0)
    n = np.stack([-d[:, 1], d[:, 0]], 1) / np.hypot(d[:, 0], d[:, 1])[:, None]
    nv = np.concatenate([n[:1], n[:-1] + n[1:], n[-1:]])
    nv /= np.hypot(nv[:, 0], nv[:, 1])[:, None]
    nv /= np.sum(nv * np.concatenate([n[:1], n]), 1)[:, None]  # miter length
    out = [np.concatenate([p + nv * w / 2, (p - nv * w / 2)[::-1]])]
    if head:
        t, nn, e = d[-1] / np.hypot(*d[-1]), n[-1], p[-1]
        out.append(np.array([e + nn * head * 0.7, e + t * head, e - nn * head * 0.7]))
    return out


def _arrow_shapes() -> dict[int, list[np.ndarray]]:
    """Road-marking shapes in an isotropic design frame: x in [-1, 1] (right), y in [0, 3] (forward)."""
    def branch(y, s, ln=0.45):
        return _stroke([(0, y), (s * ln, y + ln)], head=0.55)

    st = _stroke([(0, 0), (0, 2.1)], head=0.85)
    a = np.linspace(-np.pi / 2, np.pi * 1.15, 24)
    ring = [(0.75 * np.cos(t), 2.0 + 0.75 * np.sin(t)) for t in a]
    return {
        12: st,
        13: st + branch(1.0, -1),
        14: st + branch(1.0, 1),
        15: st + branch(1.0, -1) + branch(1.0, 1),
        16: _stroke([(0, 0), (0, 1.5), (-0.3, 1.9)], head=0.6),
        17: _stroke([(0, 0), (0, 1.5), (0.3, 1.9)], head=0.6),
        18: _stroke([(0, 0), (0, 1.4)]) + branch(1.25, -1) + branch(1.25, 1),
        19: _stroke([(0, 0), (0, 1.25)]) + _stroke(ring, w=0.3, head=0.5),
        20: _stroke([(0.55, 0), (0.5, 0.9), (0.1, 1.7), (-0.4, 2.2)], w=0.32, head=0.6),
    }


_SHAPES = _arrow_shapes()


def _g3(x) -> np.ndarray:
    """HxW -> HxWx3 float32 (cv2 is much faster than numpy broadcasting over a length-3 last axis)."""
    return cv2.cvtColor(np.asarray(x, np.float32), cv2.COLOR_GRAY2RGB)


def _rgb(g: np.ndarray, base) -> np.ndarray:
    """HxW gain map times an RGB colour -> HxWx3 float32."""
    return cv2.merge([g * np.float32(b) for b in base])


def _fix(p: np.ndarray) -> np.ndarray:
    return np.round(np.clip(p, -3e4, 3e4) * (1 << _SH)).astype(np.int32)


_BANKS: dict[int, np.ndarray] = {}


def _noise(rng, h: int, w: int, cell: int = 1, size: int = 224) -> np.ndarray:
    """N(0, 1)-ish float32 noise of shape (h, w), smooth with feature size ``cell`` px (at 224, scaled with size).

    A random crop (chosen by ``rng``) of a fixed bank built once per feature size: fast and deterministic.
    """
    c = max(1, round(cell * size / 224)) if cell > 1 else 1
    if c not in _BANKS:
        g = np.random.default_rng(c).standard_normal((768 // c + 2, 2048 // c + 2), np.float32)
        _BANKS[c] = g if c == 1 else cv2.resize(g, None, fx=c, fy=c, interpolation=cv2.INTER_CUBIC)[:768, :2048]
    b = _BANKS[c]
    if h > b.shape[0] or w > b.shape[1]:  # very large images: no bank
        g = rng.standard_normal((h // c + 2, w // c + 2), np.float32)
        return g[:h, :w] if c == 1 else cv2.resize(g, None, fx=c, fy=c, interpolation=cv2.INTER_CUBIC)[:h, :w]
    y, x = rng.integers(0, b.shape[0] - h + 1), rng.integers(0, b.shape[1] - w + 1)
    return b[y : y + h, x : x + w]


class _Scene:
    def __init__(self, rng: np.random.Generator, size: int):
        self.r, self.s = rng, size
        self.f = size * rng.uniform(0.5, 0.8)  # focal length (px)
        self.h = rng.uniform(1.0, 1.8)  # camera height (lane widths)
        self.vh = size * rng.uniform(0.08, 0.32)  # horizon row
        self.cx, self.cy = size / 2 + rng.normal(0, size * 0.02), size / 2
        yaw, roll = rng.normal(0, 0.09), rng.normal(0, 0.045)
        self.cyaw, self.syaw, self.cr, self.sr = np.cos(yaw), np.sin(yaw), np.cos(roll), np.sin(roll)
        self.k = rng.normal(0, 0.006) if rng.random() < 0.4 else 0.0  # road curvature
        self.cam_x, self.img, self.mask = 0.0, None, np.zeros((size, size), np.uint8)

    def roll(self, uv: np.ndarray) -> np.ndarray:
        du, dv = uv[:, 0] - self.cx, uv[:, 1] - self.cy
        return np.stack([self.cx + self.cr * du - self.sr * dv, self.cy + self.sr * du + self.cr * dv], 1)

    def cam(self, X, Z):
        """Road (lateral X, forward Z) -> camera (lateral, depth); curvature bends X with Z."""
        X = X + self.k * Z * Z - self.cam_x
        return X * self.cyaw - Z * self.syaw, X * self.syaw + Z * self.cyaw

    def px(self, pts: np.ndarray) -> np.ndarray | None:
        """Road polygon (N,2) -> rolled pixel polygon, clipped at depth _ZMIN; None if fully behind."""
        xc, zc = self.cam(pts[:, 0], pts[:, 1])
        inside = zc >= _ZMIN
        if not inside.all():
            if not inside.any():
                return None
            j = np.roll(np.arange(len(zc)), -1)  # Sutherland-Hodgman against one plane: keep/intersect per edge
            t = (_ZMIN - zc) / np.where(zc[j] != zc, zc[j] - zc, 1.0)
            keep = np.stack([inside, inside != inside[j]], 1).ravel()
            xc = np.stack([xc, xc + t * (xc[j] - xc)], 1).ravel()[keep]
            zc = np.stack([zc, np.full_like(zc, _ZMIN)], 1).ravel()[keep]
        return self.roll(np.stack([self.cx + self.f * xc / zc, self.vh + self.f * self.h / zc], 1))

    def draw(self, polys, cls=None, colour=None, opacity=1.0, road=True):
        """Fill polygons: mask (exact id, LINE_8) if cls is given, image (anti-aliased) if colour is."""
        px = [q for q in (self.px(p) if road else p for p in polys) if q is not None and len(q) > 2]
        if not px:
            return
        if cls is not None:
            for q in px:
                cv2.fillPoly(self.mask, [_fix(q)], int(cls), cv2.LINE_8, _SH)
        if colour is None:
            return
        allp = np.concatenate(px)
        x0, y0 = np.clip(np.floor(allp.min(0)).astype(int) - 1, 0, self.s)
        x1, y1 = np.clip(np.ceil(allp.max(0)).astype(int) + 2, 0, self.s)
        if x1 <= x0 or y1 <= y0:
            return
        a = np.zeros((y1 - y0, x1 - x0), np.uint8)
        for q in px:
            cv2.fillPoly(a, [_fix(q - (x0, y0))], 255, cv2.LINE_AA, _SH)
        al = _g3(a) * np.float32(opacity / 255.0)
        roi = self.img[y0:y1, x0:x1]
        if np.ndim(colour) == 3:
            col = colour[y0:y1, x0:x1]
        else:
            col = np.tile(np.asarray(colour, np.float32), (y1 - y0, x1 - x0)).reshape(roi.shape)
        roi += (col - roi) * al

    def strip(self, xa, xb, za, zb, n=None):
        """Road polygon between lateral xa..xb and depth za..zb (n samples per side, more on curves)."""
        n = n or (24 if self.k else 8)
        z = np.geomspace(za, zb, n) if n > 2 else np.array([za, zb])
        return np.concatenate([np.stack([np.full(n, xa), z], 1), np.stack([np.full(n, xb), z[::-1]], 1)])

    def texture(self, base, amp, cell, fine):
        """Textured colour image, float32 HxWx3: ``base`` x (1 + amp x smooth noise) + ``fine`` x pixel noise."""
        base = np.asarray(base, np.float32)
        g = amp * _noise(self.r, self.s, self.s, cell, self.s) + 1
        g += fine / max(float(base.mean()), 1.0) * _noise(self.r, self.s, self.s)
        return _rgb(g, base)


def _background(sc: _Scene, z_wall: float) -> None:
    """Floor (paper, grass, wood or carpet) and, above it, a wall with furniture or (outdoors) sky."""
    r, s = sc.r, sc.s
    kind = r.integers(4)
    base = [(200, 190, 165), (70, 120, 55), (130, 90, 55), r.uniform(60, 190, 3)][kind] * r.uniform(0.8, 1.15, 3)
    floor = sc.texture(base, 0.08, 24, 5.0 if kind != 1 else 14.0)
    yy, xx = np.ogrid[0:s, 0:s]
    yy, xx = yy.astype(np.float32), xx.astype(np.float32)
    if kind == 2:  # wood planks
        th, per = r.uniform(0, np.pi), r.uniform(8, 30) * s / 224
        ph = (xx * np.float32(np.cos(th) / per) + yy * np.float32(np.sin(th) / per)) + 2 * _noise(r, s, s, 40, s)
        floor *= _g3(1 + 0.1 * np.sin(np.float32(2 * np.pi) * ph) - 0.25 * (np.abs(ph % 1 - 0.5) < 0.03))
    if z_wall == np.inf:  # outdoors: sky
        sky = r.uniform([150, 175, 200], [210, 225, 255]).astype(np.float32)
        top = _rgb(np.linspace(1.0, 0.75, s, dtype=np.float32)[:, None] + 0.05 * _noise(r, s, s, 50, s), sky)
        v_b = sc.vh
    else:  # indoors: wall with furniture
        top = sc.texture(r.uniform(120, 235) * r.uniform(0.85, 1.1, 3), 0.06, 60, 2.0)
        v_b = sc.vh + sc.f * sc.h / z_wall
        for _ in range(r.integers(0, 4)):
            x0, w = r.uniform(-0.2, 1.0) * s, r.uniform(0.08, 0.5) * s
            top[: int(v_b), int(max(x0, 0)) : int(max(x0 + w, 0))] *= r.uniform(0.3, 0.9, 3).astype(np.float32)
    v_un = (sc.cy - sc.sr * (xx - sc.cx)) + sc.cr * (yy - sc.cy)
    a = _g3(np.clip(np.float32(v_b + 0.5) - v_un, 0, 1))
    floor += (top - floor) * a
    sc.img = floor


def _layout(r):
    """Lanes left to right as [x0, x1, class] (own lane starts at x=0) and inner boundaries [x, line class]."""
    nw = r.choice([0, 1, 2], p=[0.04, 0.84, 0.12])
    lt, rt, extra = r.random() < 0.3, r.random() < 0.3, r.random() < 0.15
    seq = [6] * nw + [7] * lt + [5] + [5] * extra + [8] * rt
    x = np.concatenate([[0.0], np.cumsum(r.uniform(0.85, 1.2, len(seq)))])
    x -= x[nw + lt]
    lanes = [(x[i], x[i + 1], c) for i, c in enumerate(seq)]
    yellow = 3 if r.random() < 0.5 else 4
    lines = [(x[i], yellow if seq[i - 1] == 6 and seq[i] != 6 else 2 if seq[i] == 6 or r.random() < 0.75 else 1)
             for i in range(1, len(seq))]
    return lanes, lines


def _marks(r, lanes, same) -> list[tuple[int, float, float, float]]:
    """Arrows (and one merge_left) as (class, lane centre, lane width, +1 forward / -1 facing the camera)."""
    merge = same[-1] if r.random() < 0.15 else None
    out = [(20, (merge[0] + merge[1]) / 2, merge[1] - merge[0], 1.0)] if merge else []
    for a, b, c in lanes:
        if (a, b, c) != merge and r.random() < {5: 0.55, 6: 0.15, 7: 0.75, 8: 0.75}[c]:
            ids = {7: [16, 16, 13, 15], 8: [17, 17, 14, 15]}.get(c, [12, 12, 13, 14, 15, 16, 17, 18, 19])
            out.append((int(r.choice(ids)), (a + b) / 2, b - a, -1.0 if c == 6 else 1.0))
    return out


def _sign(sc: _Scene, cls: int, x: float, z: float, white) -> None:
    """Yield (9: red-rimmed inverted triangle) or stop (10: white-rimmed red octagon) on a grey pole (class 0)."""
    r, f = sc.r, sc.f
    xc, zc = (float(v[0]) for v in sc.cam(np.array([x]), np.array([z])))
    if zc < 0.6:
        return
    u, v = sc.cx + f * xc / zc, sc.vh + f * sc.h / zc
    rad, hp, pw = f * r.uniform(0.28, 0.45) / zc, f * r.uniform(0.6, 1.2) * sc.h / zc, max(1.0, f * 0.05 / zc)
    sc.draw([sc.roll(np.array([[u - pw, v], [u + pw, v], [u + pw, v - hp], [u - pw, v - hp]]))], 0,
            r.uniform(40, 100) * r.uniform(0.9, 1.1, 3), road=False)
    n = 3 if cls == 9 else 8
    ang = (np.pi / 2 if cls == 9 else np.pi / 8) + np.arange(n) * 2 * np.pi / n
    shape, ctr = np.stack([np.cos(ang), np.sin(ang)], 1) * rad, np.array([u, v - hp])
    red = r.uniform([170, 10, 10], [230, 50, 50])
    sc.draw([sc.roll(ctr + shape)], cls, red if cls == 9 else white, road=False)
    sc.draw([sc.roll(ctr + shape * (0.55 if cls == 9 else 0.87))], None, white if cls == 9 else red, road=False)
    if cls == 10 and rad > 4:  # "STOP" lettering, as a white bar
        bar = np.array([[-0.55, -0.14], [0.55, -0.14], [0.55, 0.14], [-0.55, 0.14]]) * rad
        sc.draw([sc.roll(ctr + bar)], None, white * 0.95, road=False)


def render_street(rng: np.random.Generator, size: int = 224) -> tuple[np.ndarray, np.ndarray]:
    """Render one synthetic JetCar-style street scene.

    Args:
        rng: the only source of randomness; the same generator state gives byte-identical output.
        size: output height and width in pixels (>= 32).

    Returns:
        ``(image, mask)``: ``image`` is ``uint8`` of shape ``(size, size, 3)``, RGB in 0..255;
        ``mask`` is ``uint8`` of shape ``(size, size)`` with JetCar class ids 0..21.

    Raises:
        ValueError: if ``size < 32``.
    """
    if size < 32:
        raise ValueError(f"size must be >= 32, got {size}")
    r = rng
    sc = _Scene(r, size)
    lanes, lines = _layout(r)
    own = next(lane for lane in lanes if lane[2] == 5)
    sc.cam_x = (own[0] + own[1]) / 2 + r.uniform(-0.3, 0.3) * (own[1] - own[0])
    z_wall = np.inf if r.random() < 0.3 else r.uniform(15, 80)  # outdoors or a room
    z_end = 300.0 if z_wall == np.inf else max(12.0, z_wall * (1.0 if r.random() < 0.5 else r.uniform(0.4, 0.95)))
    _background(sc, z_wall)
    left, right = lanes[0][0], lanes[-1][1]
    kerb = [r.uniform(0.08, 0.25) if r.random() < 0.5 else 0.0 for _ in range(2)]
    asphalt = sc.texture(r.uniform(55, 135) * r.uniform(0.93, 1.07, 3), 0.07, 30, r.uniform(3, 9))
    white = r.uniform(205, 250) * r.uniform(0.95, 1.02, 3)
    # lanes (mask per class in draw order 6, 7, 8, 5; image: one road surface), then lane_limit kerbs
    sc.draw([sc.strip(left, right, 0.1, z_end)], None, asphalt)
    for c in (6, 7, 8, 5):
        sc.draw([sc.strip(a, b, 0.1, z_end) for a, b, cc in lanes if cc == c], c)
    kerbs = [sc.strip(x, x + w, 0.1, z_end) for x, w in ((left - kerb[0], kerb[0]), (right, kerb[1])) if w > 0]
    sc.draw(kerbs, 21, r.uniform(120, 210) * r.uniform(0.9, 1.1, 3))
    # wait line across the same-direction lanes: solid bar (stop sign) or blocks (yield sign)
    same, sign = [lane for lane in lanes if lane[2] != 6], None
    if r.random() < 0.3:
        zw, t = r.uniform(2.0, 9.0), r.uniform(0.15, 0.35)
        xa, xb = same[0][0], same[-1][1]
        sign = (10, zw) if r.random() < 0.5 else (9, zw)
        bars = [(xa, xb)] if sign[0] == 10 else [(a, a + 0.18) for a in np.arange(xa, xb - 0.1, 0.3)]
        sc.draw([sc.strip(a, b, zw, zw + t, 2) for a, b in bars], 11, white, r.uniform(0.7, 1.0))
    elif r.random() < 0.12:
        sign = (int(r.choice([9, 10])), r.uniform(2.0, 7.0))
    # arrows (draw order 6) and merge_left (7): design shapes scaled, flipped, placed in the lane
    marks = _marks(r, lanes, same)
    for cls in sorted({m[0] for m in marks}):
        polys = []
        for _, xc, width, d in (m for m in marks if m[0] == cls):
            sx = width * r.uniform(0.22, 0.3)
            sz, z0 = sx * r.uniform(1.6, 2.6), r.uniform(0.8, 5.0)
            polys += [np.stack([xc + d * q[:, 0] * sx, z0 + (q[:, 1] if d > 0 else 3.0 - q[:, 1]) * sz], 1)
                      for q in _SHAPES[cls]]
        sc.draw(polys, cls, white, r.uniform(0.7, 1.0))
    # lines: yellow (8) then white (9); road edges get white solid lines
    lw, yellow = r.uniform(0.045, 0.09), r.uniform([190, 150, 20], [240, 200, 80])
    edges = [(x, 1) for x, p in ((left, r.random()), (right, r.random())) if p < 0.85]
    for cls in (3, 4, 1, 2):
        polys = []
        for x, _ in (ln for ln in lines + edges if ln[1] == cls):
            if cls in (1, 3):
                polys.append(sc.strip(x - lw / 2, x + lw / 2, 0.1, z_end))
            else:  # dashes; beyond ~35 lane widths they are sub-pixel
                per = r.uniform(1.0, 2.2)
                for za in np.arange(-r.uniform(0, per), min(z_end, 35.0), per):
                    if za + per / 2 > 0.1:
                        polys.append(sc.strip(x - lw / 2, x + lw / 2, max(za, 0.1), min(za + per / 2, z_end), 2))
        sc.draw(polys, cls, yellow if cls in (3, 4) else white, r.uniform(0.7, 1.0))
    for _ in range(r.integers(1, 3) if r.random() < 0.4 else 0):  # soft shadows
        pts = r.uniform(-0.3, 1.3, (r.integers(3, 6), 2)).astype(np.float32) * size
        a = np.zeros((size, size), np.float32)
        cv2.fillPoly(a, [_fix(cv2.convexHull(pts)[:, 0])], 1.0, cv2.LINE_8, _SH)
        sc.img *= _g3(1 - r.uniform(0.25, 0.5) * cv2.GaussianBlur(a, (0, 0), r.uniform(1, 6) * size / 224))
    if sign is not None:  # drawn last: signs stand in front of the ground
        off = r.uniform(0.25, 0.8)
        x = right + kerb[1] + off if r.random() < 0.8 else left - kerb[0] - off
        _sign(sc, sign[0], x, sign[1], white)
    # photometric: brightness/contrast with a colour cast, vignetting, blur, sensor noise
    img = np.ascontiguousarray(sc.img)
    m, c, cast = float(img.mean()), r.uniform(0.7, 1.25), r.normal(1.0, 0.04, 3)
    flat = img.reshape(size, -1)  # a view: per-channel affine transform without slow broadcasting
    flat *= np.tile((c * cast).astype(np.float32), size)
    flat += np.tile((m * (r.uniform(0.7, 1.2) - c) * cast).astype(np.float32), size)
    if r.random() < 0.5:
        yy, xx = np.ogrid[0:size, 0:size]
        img *= _g3(1 - r.uniform(0.1, 0.35) * ((xx - size / 2) ** 2 + (yy - size / 2) ** 2) / (size * size / 2))
    img = cv2.GaussianBlur(img, (0, 0), r.uniform(0.35, 1.0) * size / 224)
    img += r.uniform(1.5, 6.0) * _noise(r, size, 3 * size).reshape(img.shape)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), sc.mask


def generate_streets(root, n_train: int = 400, n_val: int = 60, n_test: int = 30, size: int = 224,
                     seed: int = 0) -> Path:
    """Write a synthetic JetCar-layout dataset under ``root`` and return ``root`` as a Path.

    Layout: ``root/DataSet/Img/{Train,Val,Test}/Img_NNNNN.jpg`` (RGB JPEG, quality 92, size x size) and
    ``root/DataSet/Mask/{Train,Val}/Mask_NNNNN.png`` (mode "L", uint8 class ids 0..21; none for Test);
    numbering restarts at 00000 per split. Sample ``i`` of a split is rendered by
    ``render_street(np.random.default_rng([seed, split_code, i]), size)`` (codes Train 0, Val 1, Test 2),
    so it does not depend on the other counts. Files are written to a temporary sibling folder that is
    renamed to ``root`` at the end, with ``root/DataSet/.complete.json`` holding the parameters.
    If that marker is there with the same parameters, nothing is done (idempotent).

    Raises:
        FileExistsError: ``root`` exists and is neither an empty folder nor a complete dataset with the same
            parameters (nothing is deleted or changed).
        ValueError: negative counts or seed, or ``size < 32``.
    """
    root = Path(root)
    if min(n_train, n_val, n_test, seed) < 0 or size < 32:
        raise ValueError(f"need n_train, n_val, n_test, seed >= 0 and size >= 32; got {n_train}, {n_val}, "
                         f"{n_test}, {seed}, {size}")
    params = {"generator": "seglib.data.synthetic.streets", "version": GENERATOR_VERSION, "n_train": int(n_train),
              "n_val": int(n_val), "n_test": int(n_test), "size": int(size), "seed": int(seed)}

    def write(tmp: Path) -> None:
        ds = tmp / "DataSet"
        for (split, code), n in zip(SPLITS, (n_train, n_val, n_test)):
            (ds / "Img" / split).mkdir(parents=True)
            if split != "Test":
                (ds / "Mask" / split).mkdir(parents=True)
            for i in range(n):
                img, mask = render_street(np.random.default_rng([seed, code, i]), size)
                Image.fromarray(img).save(ds / "Img" / split / f"Img_{i:05d}.jpg", quality=92)
                if split != "Test":
                    Image.fromarray(mask).save(ds / "Mask" / split / f"Mask_{i:05d}.png")

    return build_once(root, params, write, marker="DataSet/.complete.json")


if __name__ == "__main__":  # timing (one thread) and a preview: python -m seglib.data.synthetic.streets [out.png]
    import sys
    import time

    from seglib.data.classes import JETCAR_CLASSES, colorize, palette

    cv2.setNumThreads(1)
    render_street(np.random.default_rng(0))  # the first call builds the noise banks
    t0 = time.perf_counter()
    samples = [render_street(np.random.default_rng([0, 0, i])) for i in range(100)]
    print(f"render_street: {(time.perf_counter() - t0) * 10:.2f} ms/sample at 224 px")
    out = sys.argv[1] if len(sys.argv) > 1 else "streets_preview.png"
    pal = palette(22, JETCAR_CLASSES)
    Image.fromarray(np.concatenate([np.concatenate([im, colorize(m, pal)], 1) for im, m in samples[:4]])).save(out)
    print(f"preview (image | colourised mask) written to {out}")
