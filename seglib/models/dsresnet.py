"""DSResNet: seed 000's two-input depth + segmentation network, with a width option and a one-input mode.

Source: shan18/Depth-Estimation-Segmentation, ``tensornet/model/dsresnet.py`` and ``docs/architecture.md``
(MIT, (c) 2020 Shantanu Acharya). Layer for layer the same network at ``width=16`` (10,343,490
parameters, the count the original reports). The original also creates a 1x1 ``enc_skip_conv`` in the
first three decoder blocks that its forward pass never uses (172,480 parameters per decoder, left out of
its torchsummary count); here only the blocks that use it have it.

Structure (channels at ``width=w``; the original is ``w = 16``)::

    bg    -> ResEnc(3, w) -> ResEnc(w, 2w) --\\
                                             cat -> 1x1 conv (4w -> 2w) -> enc1..enc4 (4w, 8w, 16w, 32w)
    bg_fg -> ResEnc(3, w) -> ResEnc(w, 2w) --/
    two decoders (mask, depth): 32w -> 16w -> 8w -> 4w -> 2w -> w -> 1x1 conv -> 1 channel

Each pooling halves the side five times, so input sides must be multiples of 32 (96, 160 and 224 are).
In ``inputs="rgb"`` mode there is one preparation branch (no merge conv) and the last two decoder blocks
use that branch's skips directly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.depth_layouts import INPUT_MODES
from .registry import MODELS


class DoubleConvBlock(nn.Module):
    """(3x3 conv -> ReLU -> BatchNorm) x 2, padding 1: ``N x in x H x W`` -> ``N x out x H x W``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(),
                                   nn.BatchNorm2d(out_channels))
        self.conv2 = nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1), nn.ReLU(),
                                   nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class ResEncoderBlock(nn.Module):
    """``out = DoubleConv(x) + conv1x1(x)``; returns ``(maxpool2(out), out)`` (``N x out x H/2 x W/2``, ``N x out x H x W``)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.double_conv = DoubleConvBlock(in_channels, out_channels)
        self.skip_conv = nn.Conv2d(in_channels, out_channels, 1)
        self.down = nn.MaxPool2d(2)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output before pooling (all the last encoder block's output is used for)."""
        return self.double_conv(x) + self.skip_conv(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.features(x)
        return self.down(out), out


class ResDecoderBlock(nn.Module):
    """1x1 transition (in -> out), bilinear x2 upsampling, concat with the encoder skip, then
    ``DoubleConv + conv1x1`` residual: ``N x in x H x W`` -> ``N x out x 2H x 2W``.

    The encoder skip has ``out`` channels. With ``merge_skips=True`` the block takes a second skip
    ``skip_input`` (also ``out`` channels) and uses ``conv1x1(cat(encoder_input, skip_input))``: the two
    preparation branches of the two-input model.
    """

    def __init__(self, in_channels: int, out_channels: int, merge_skips: bool = False):
        super().__init__()
        self.transition_conv = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1))
        self.enc_skip_conv = nn.Conv2d(in_channels, out_channels, 1) if merge_skips else None
        self.skip_conv = nn.Conv2d(in_channels, out_channels, 1)
        self.double_conv = DoubleConvBlock(in_channels, out_channels)

    def forward(self, x: torch.Tensor, encoder_input: torch.Tensor, skip_input: torch.Tensor | None = None):
        x = F.interpolate(self.transition_conv(x), scale_factor=2, mode="bilinear", align_corners=False)
        if self.enc_skip_conv is not None:
            encoder_input = self.enc_skip_conv(torch.cat([encoder_input, skip_input], dim=1))
        x = torch.cat([x, encoder_input], dim=1)
        return self.double_conv(x) + self.skip_conv(x)


class DSResNet(nn.Module):
    """Depth + mask network of seed 000 (see the module docstring).

    Args:
        inputs: ``"bg+bg_fg"`` (the original: a background and the same background with a foreground
            pasted on it) or ``"rgb"`` (one RGB image, e.g. RGB-D data).
        width: channels of the first block (16 in the original; 8 has about 1/4 of the parameters).

    Input:
        ``"bg+bg_fg"``: a dict ``{"bg": float32 N x 3 x H x W, "bg_fg": float32 N x 3 x H x W}``;
        ``"rgb"``: a tensor ``float32 N x 3 x H x W`` (or a dict with key ``"image"``). Normalised RGB;
        ``H`` and ``W`` multiples of 32.

    Returns:
        ``(depth_logits, mask_logits)``, each ``float32 N x 1 x H x W``; apply ``sigmoid`` to get depth in
        [0, 1] (1 = near) and the foreground probability.

    Raises:
        ValueError: unknown ``inputs``, ``width < 1``, a missing input key, or a side that is not a
            multiple of 32.
    """

    def __init__(self, inputs: str = "bg+bg_fg", width: int = 16):
        super().__init__()
        if inputs not in INPUT_MODES:
            raise ValueError(f"inputs must be one of {INPUT_MODES}, got {inputs!r}")
        if int(width) < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        w = int(width)
        self.inputs, self.width = inputs, w
        self.b1, self.b2 = ResEncoderBlock(3, w), ResEncoderBlock(w, 2 * w)
        if inputs == "bg+bg_fg":
            self.bf1, self.bf2 = ResEncoderBlock(3, w), ResEncoderBlock(w, 2 * w)
            self.merge = nn.Conv2d(4 * w, 2 * w, 1)
        self.enc1 = ResEncoderBlock(2 * w, 4 * w)
        self.enc2 = ResEncoderBlock(4 * w, 8 * w)
        self.enc3 = ResEncoderBlock(8 * w, 16 * w)
        self.enc4 = ResEncoderBlock(16 * w, 32 * w)
        for p in ("M", "D"):
            setattr(self, f"{p}dec3", ResDecoderBlock(32 * w, 16 * w))
            setattr(self, f"{p}dec2", ResDecoderBlock(16 * w, 8 * w))
            setattr(self, f"{p}dec1", ResDecoderBlock(8 * w, 4 * w))
            two = inputs == "bg+bg_fg"
            setattr(self, f"{p}2", ResDecoderBlock(4 * w, 2 * w, merge_skips=two))
            setattr(self, f"{p}1", ResDecoderBlock(2 * w, w, merge_skips=two))
            setattr(self, f"{p}0", nn.Conv2d(w, 1, 1))

    def _decode(self, p: str, enc4, enc3, enc2, enc1, skips2, skips1) -> torch.Tensor:
        x = getattr(self, f"{p}dec3")(enc4, enc3)
        x = getattr(self, f"{p}dec2")(x, enc2)
        x = getattr(self, f"{p}dec1")(x, enc1)
        x = getattr(self, f"{p}2")(x, *skips2)
        x = getattr(self, f"{p}1")(x, *skips1)
        return getattr(self, f"{p}0")(x)

    def forward(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        if self.inputs == "bg+bg_fg":
            if not isinstance(x, dict) or "bg" not in x or "bg_fg" not in x:
                raise ValueError("DSResNet(inputs='bg+bg_fg') takes a dict {'bg': tensor, 'bg_fg': tensor}")
            bg, bgfg = x["bg"], x["bg_fg"]
        else:
            bg, bgfg = (x["image"] if isinstance(x, dict) else x), None
        h, w = bg.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"DSResNet needs input sides that are multiples of 32, got {h}x{w}; "
                             "use sizes such as 96, 160, 224")
        b1_down, b1 = self.b1(bg)
        b2_down, b2 = self.b2(b1_down)
        if bgfg is not None:
            bf1_down, bf1 = self.bf1(bgfg)
            bf2_down, bf2 = self.bf2(bf1_down)
            merged = self.merge(torch.cat([b2_down, bf2_down], dim=1))
            skips2, skips1 = (b2, bf2), (b1, bf1)
        else:
            merged, skips2, skips1 = b2_down, (b2,), (b1,)
        enc1_down, enc1 = self.enc1(merged)
        enc2_down, enc2 = self.enc2(enc1_down)
        enc3_down, enc3 = self.enc3(enc2_down)
        enc4 = self.enc4.features(enc3_down)  # the original discards enc4's pooled output
        mask = self._decode("M", enc4, enc3, enc2, enc1, skips2, skips1)
        depth = self._decode("D", enc4, enc3, enc2, enc1, skips2, skips1)
        return depth, mask


@MODELS.register("dsresnet")
def dsresnet(classes: int = 1, inputs: str = "bg+bg_fg", width: int = 16) -> DSResNet:
    """Registry factory for :class:`DSResNet` (``TrainConfig(model="dsresnet", n_classes=1,
    model_kwargs={"inputs": ..., "width": ...})``).

    Raises:
        ValueError: ``classes != 1`` (one foreground mask channel and one depth channel), or see DSResNet.
    """
    if int(classes) != 1:
        raise ValueError(f"dsresnet predicts one mask channel and one depth channel; set N_CLASSES=1, got {classes}")
    return DSResNet(inputs=inputs, width=width)
