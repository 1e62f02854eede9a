"""Datasets seglib generates itself, registered in :data:`seglib.data.sources.SYNTHETIC`."""

from __future__ import annotations

from ..sources import SYNTHETIC


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
