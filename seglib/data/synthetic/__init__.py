"""Datasets seglib generates itself, in the registry :data:`SYNTHETIC` (``DATA="synthetic:<name>"``, read by
:func:`seglib.data.sources.resolve_data`). Each generator module is imported only when it is used."""

from __future__ import annotations

from ...registry import Registry

SYNTHETIC = Registry("synthetic generator")
"""``name -> generator(root, **kwargs) -> Path`` of the dataset folder written (once) under ``root``."""


@SYNTHETIC.register("streets")
def _streets(root, **kwargs):
    """JetCar-layout street scenes with the 22 JetCar classes (:func:`.streets.generate_streets`)."""
    from .streets import generate_streets

    return generate_streets(root, **kwargs)


@SYNTHETIC.register("blobs")
def _blobs(root, **kwargs):
    """Binary cell-like blobs in the pairs layout (:func:`.blobs.generate_blobs`), for the hyperparameter study."""
    from .blobs import generate_blobs

    return generate_blobs(root, **kwargs)


@SYNTHETIC.register("depth_scenes")
def _depth_scenes(root, **kwargs):
    """MODEST-layout rooms with known depth and pasted people (:func:`.depth_scenes.generate_depth_scenes`)."""
    from .depth_scenes import generate_depth_scenes

    return generate_depth_scenes(root, **kwargs)
