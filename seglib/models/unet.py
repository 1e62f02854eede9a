"""The baseline U-Net (Ronneberger, Fischer and Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015), with every channel count divided by ``width_divisor``.

Seed 004 used the baseline divided by 4 (16-32-64-128-256 instead of 64-128-256-512-1024). Differences
from the paper, as in common re-implementations (e.g. zhixuhao/unet, which also trained on ISBI 2012):
3x3 convolutions are zero-padded, so the output has the input's size and no cropping is needed; the
output is one logit per pixel (binary segmentation) unless ``classes`` says otherwise. Options: BatchNorm
after each convolution (not in the paper), dropout after each double-convolution block (the paper puts
dropout "at the end of the contracting path"; ``dropout_blocks`` chooses).
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import MODELS

BASE_WIDTHS = (64, 128, 256, 512, 1024)
DROPOUT_BLOCKS = ("all", "encoder", "bottleneck")


class DoubleConv(nn.Sequential):
    """``(conv 3x3 -> [BatchNorm] -> ReLU) x 2`` then optional dropout; keeps H x W (padding 1)."""

    def __init__(self, c_in: int, c_out: int, batchnorm: bool, dropout: float):
        layers: list[nn.Module] = []
        for c in (c_in, c_out):
            layers.append(nn.Conv2d(c, c_out, 3, padding=1, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.ReLU(inplace=True))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        super().__init__(*layers)


class UNet(nn.Module):
    """Baseline U-Net: 4 down-sampling steps (max-pool 2x2), 4 up-sampling steps (transposed conv 2x2,
    stride 2) with skip concatenation, a 1x1 output convolution.

    Args:
        classes: output channels (1 = one logit per pixel for binary segmentation).
        in_channels: input channels (3: seglib datasets give normalised RGB, grey images repeated).
        width_divisor: every width of the paper (64-128-256-512-1024) is divided by it, rounded down, at
            least 1 (4 gives 16-32-64-128-256 as in seed 004).
        batchnorm: BatchNorm after each 3x3 convolution.
        dropout: probability of element-wise dropout after each chosen double-conv block (0 = none).
        dropout_blocks: ``"all"`` (every block, seed 004's "dropout for the layers"), ``"encoder"``
            (contracting path and bottleneck) or ``"bottleneck"`` (the paper's placement).

    Shape:
        input ``float N x in_channels x H x W`` with H and W multiples of 16; output ``float N x classes x H x W``
        (logits).

    Raises:
        ValueError: a width divisor < 1 or above 64, a dropout outside [0, 1), an unknown
            ``dropout_blocks``; at call time, H or W not a multiple of 16.
    """

    def __init__(self, classes: int = 1, in_channels: int = 3, width_divisor: int = 4, batchnorm: bool = False,
                 dropout: float = 0.0, dropout_blocks: str = "all"):
        super().__init__()
        if not 1 <= int(width_divisor) <= 64:
            raise ValueError(f"WIDTH_DIVISOR must be in 1..64 (4 gives 16-32-64-128-256), got {width_divisor}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"DROPOUT must be in [0, 1), got {dropout}")
        if dropout_blocks not in DROPOUT_BLOCKS:
            raise ValueError(f"dropout_blocks must be one of {DROPOUT_BLOCKS}, got {dropout_blocks!r}")
        w = [max(1, c // int(width_divisor)) for c in BASE_WIDTHS]
        self.widths = tuple(w)
        enc_p = dropout if dropout_blocks in ("all", "encoder") else 0.0
        dec_p = dropout if dropout_blocks == "all" else 0.0
        self.down = nn.ModuleList()
        c = in_channels
        for width in w[:-1]:
            self.down.append(DoubleConv(c, width, batchnorm, enc_p))
            c = width
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = DoubleConv(w[-2], w[-1], batchnorm, dropout)
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        for i in range(len(w) - 1, 0, -1):
            self.up.append(nn.ConvTranspose2d(w[i], w[i - 1], 2, stride=2))
            self.up_conv.append(DoubleConv(2 * w[i - 1], w[i - 1], batchnorm, dec_p))
        self.head = nn.Conv2d(w[0], classes, 1)
        self.classes = classes
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The paper's initialisation: weights from a Gaussian with standard deviation ``sqrt(2 / N)``, N the
        incoming nodes of a neuron (He et al. 2015; Ronneberger et al. 2015, section 3), biases 0. PyTorch's
        default (uniform, ``a = sqrt(5)``) shrinks the signal in a deep net without BatchNorm: the logits of
        a fresh width-8 U-Net then have a standard deviation of about 0.01 and training starts slowly."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in" if isinstance(m, nn.Conv2d) else "fan_out",
                                        nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``float N x classes x H x W`` for ``x`` ``float N x in_channels x H x W`` (H, W multiples of 16)."""
        h, w = x.shape[-2:]
        if h % 16 or w % 16:
            raise ValueError(f"U-Net input must be a multiple of 16 px in height and width, got {h} x {w}; "
                             "set IMG_SIZE to e.g. 64, 128 or 256")
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, conv, skip in zip(self.up, self.up_conv, reversed(skips)):
            x = conv(torch.cat([skip, up(x)], 1))
        return self.head(x)


@MODELS.register("unet")
def unet(classes: int = 1, in_channels: int = 3, width_divisor: int = 4, batchnorm: bool = False,
         dropout: float = 0.0, dropout_blocks: str = "all") -> UNet:
    """Registry factory of :class:`UNet` (``MODELS["unet"]``)."""
    return UNet(classes, in_channels, width_divisor, batchnorm, dropout, dropout_blocks)

