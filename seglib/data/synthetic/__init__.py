"""Datasets seglib generates itself, registered in :data:`seglib.data.sources.SYNTHETIC`."""

from __future__ import annotations

from ..sources import SYNTHETIC


@SYNTHETIC.register("streets")
def _streets(root, **kwargs):
    """JetCar-layout street scenes with the 22 JetCar classes (:func:`.streets.generate_streets`)."""
    from .streets import generate_streets

    return generate_streets(root, **kwargs)
