"""Models by name: the registry (:mod:`.registry`: :data:`MODELS`, :func:`build_model`), the baseline U-Net
(:mod:`.unet`), DSResNet (:mod:`.dsresnet`) and the segmentation-models-pytorch encoder U-Net with an
offline fallback (here).

``build_model(name, **kwargs)`` looks a model up by name; every model returns logits
(``float N x C x H x W``) for an input ``float N x 3 x H x W`` normalised RGB image.
"""

from __future__ import annotations

import socket
import time
import warnings

from torch import nn

from .. import _torchvision_guard
from . import dsresnet as _dsresnet  # noqa: F401  (registers "dsresnet")
from . import unet as _unet  # noqa: F401  (registers "unet": the baseline U-Net, issue 4)
from .registry import MODELS, build_model

__all__ = ["MODELS", "build_model", "encoder_parameter_names", "hub_reachable", "smp_model"]


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """True if a TCP connection to ``host``:443 opens within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def smp_model(arch: str = "Unet", encoder: str = "mobilenet_v2", classes: int = 1, in_channels: int = 3,
              encoder_weights: str | None = "imagenet", **kwargs) -> nn.Module:
    """A segmentation_models_pytorch model, e.g. ``smp.Unet("mobilenet_v2", classes=22)``.

    Pretrained encoder weights come from the Hugging Face hub. When the hub cannot be reached the hub
    library is put in offline mode for this call, so cached weights still load and missing ones fail
    at once (instead of ~26 s of retries); the model then falls back to random initialisation and says
    so with a ``UserWarning``. The chosen weights are recorded in ``model.encoder_weights_loaded``.

    Args:
        arch: smp architecture class name (``"Unet"``, ``"UnetPlusPlus"``, ``"FPN"``, ...).
        encoder: smp encoder name.
        classes: output channels C.
        in_channels: input channels.
        encoder_weights: ``"imagenet"`` or another smp weight name, or None for random init.

    Raises:
        KeyError/ValueError: unknown architecture or encoder (from smp).
    """
    _torchvision_guard.ensure_torchvision()
    import huggingface_hub.constants as hf_constants
    import segmentation_models_pytorch as smp

    cls = getattr(smp, arch, None)
    if cls is None or not isinstance(cls, type):
        raise KeyError(f"unknown smp architecture {arch!r}; e.g. Unet, UnetPlusPlus, FPN, DeepLabV3Plus")
    if encoder_weights is None:
        model = cls(encoder_name=encoder, encoder_weights=None, classes=classes, in_channels=in_channels, **kwargs)
        model.encoder_weights_loaded = None
        return model
    offline_before = hf_constants.HF_HUB_OFFLINE
    t0 = time.monotonic()
    if not offline_before and not hub_reachable():
        hf_constants.HF_HUB_OFFLINE = True
    try:
        model = cls(encoder_name=encoder, encoder_weights=encoder_weights, classes=classes,
                    in_channels=in_channels, **kwargs)
        model.encoder_weights_loaded = encoder_weights
    except OSError as err:
        warnings.warn(
            f"could not fetch {encoder_weights!r} weights for encoder {encoder!r} "
            f"({type(err).__name__}, {time.monotonic() - t0:.1f} s); using a randomly initialised encoder. "
            "Training works but converges more slowly; connect to the internet to use pretrained weights.",
            UserWarning, stacklevel=2,
        )
        model = cls(encoder_name=encoder, encoder_weights=None, classes=classes, in_channels=in_channels, **kwargs)
        model.encoder_weights_loaded = None
    finally:
        hf_constants.HF_HUB_OFFLINE = offline_before
    return model


@MODELS.register("unet_mobilenet_v2")
def unet_mobilenet_v2(classes: int, encoder_weights: str | None = "imagenet", in_channels: int = 3) -> nn.Module:
    """JetCar's model: ``smp.Unet(encoder_name="mobilenet_v2", classes=N_CLASSES)`` (6.63 M parameters at 22 classes)."""
    return smp_model("Unet", "mobilenet_v2", classes=classes, in_channels=in_channels, encoder_weights=encoder_weights)


@MODELS.register("smp")
def smp_any(classes: int, arch: str = "Unet", encoder: str = "resnet34", encoder_weights: str | None = "imagenet",
            in_channels: int = 3, **kwargs) -> nn.Module:
    """Any smp architecture/encoder pair (see :func:`smp_model`)."""
    return smp_model(arch, encoder, classes=classes, in_channels=in_channels, encoder_weights=encoder_weights, **kwargs)


def encoder_parameter_names(model: nn.Module) -> set[str]:
    """Names of parameters that belong to the encoder (prefix ``encoder.``; models may override with
    an ``encoder_prefixes`` attribute)."""
    prefixes = tuple(getattr(model, "encoder_prefixes", ("encoder.",)))
    return {n for n, _ in model.named_parameters() if n.startswith(prefixes)}
