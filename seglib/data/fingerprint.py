"""What data a run trained on: an id from relative file names and sizes, the same wherever the folder lives.

:func:`data_id` (8 hex digits) hashes, per split and sample, the sample's name and every file it lists,
as a path relative to the data folder with its size in bytes (``os.stat``; no pixel is read), so a moved
or re-downloaded copy has the same id and a renamed, added, removed or resized file changes it. The study
uses it in every spec hash (:mod:`seglib.tune`); every checkpoint records a :func:`data_fingerprint`
(:mod:`seglib.train.state`), so a run never resumes on other data than it started with.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path


def _sample_entry(sample, root) -> list:
    """``[name, file entries...]``: each path field as ``[relative path, size in bytes]``, None kept, other
    fields (e.g. a depth sample's ``near``) as they are."""

    def entry(value):
        if isinstance(value, Path):
            return [os.path.relpath(value, root).replace(os.sep, "/"), os.stat(value).st_size]
        return value

    fields = [f.name for f in dataclasses.fields(sample)] if dataclasses.is_dataclass(sample) else ["image", "mask"]
    return [sample.name, *(entry(getattr(sample, f)) for f in fields if f != "name")]


def data_root(splits: dict) -> str:
    """The deepest folder holding every file of ``splits`` (used when a run has no data folder of its own,
    such as a study trial given the study's splits). Raises ValueError for splits without files."""
    paths = [str(v) for samples in splits.values() for s in samples
             for v in (getattr(s, f.name) for f in dataclasses.fields(s)) if isinstance(v, Path)]
    if not paths:
        raise ValueError("the splits list no files; call prepare() first")
    return os.path.commonpath([os.path.dirname(p) for p in paths])


def data_id(root, splits: dict) -> str:
    """8-hex-digit id of ``splits`` (``{split name: [Sample or DepthSample, ...]}``) under the folder ``root``.

    Hashes the split names and, per sample, its name and its files as paths relative to ``root`` with
    their sizes in bytes. For image + mask samples this is the id studies have always used.

    Raises:
        FileNotFoundError: a listed file is missing.
    """
    ident = {k: [_sample_entry(s, root) for s in v] for k, v in splits.items()}
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:8]


def data_fingerprint(source: str, layout: str, root, splits: dict) -> dict:
    """The data fingerprint a checkpoint records.

    Args:
        source: the ``DATA`` value as given (a folder, zip, Drive id, ``"synthetic"``); shown, not compared.
        layout: the resolved layout name; root: the data folder (None: :func:`data_root` of ``splits``).
        splits: ``{split: [samples]}`` as the run trains on them (after any smoke subset).

    Returns:
        ``{"source", "layout", "id" (8 hex digits, :func:`data_id`), "counts" ({split: samples})}``, plain
        strings and ints (loadable with ``torch.load(weights_only=True)``).
    """
    root = data_root(splits) if root is None else root
    return {"source": str(source), "layout": str(layout), "id": data_id(root, splits),
            "counts": {k: len(v) for k, v in splits.items()}}


def same_data(a: dict, b: dict) -> bool:
    """True when fingerprints ``a`` and ``b`` name the same files and sizes in the same splits (the ``id``;
    the source may differ: a moved copy is the same data)."""
    return a.get("id") == b.get("id")


def describe_fingerprint(fp: dict | None) -> str:
    """``"1a2b3c4d (DATA 'x', jetcar layout, train 80 / val 20)"``, or ``"none recorded"``."""
    if not fp:
        return "none recorded"
    counts = " / ".join(f"{k} {n}" for k, n in fp.get("counts", {}).items())
    return f"{fp.get('id')} (DATA {fp.get('source')!r}, {fp.get('layout')} layout, {counts})"
