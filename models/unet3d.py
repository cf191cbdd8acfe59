"""UNet3D: the original U-Net (Ronneberger et al. 2015) with 3D convolutions, the paper's baseline."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models import GENERATORS
from models.layers import ConvNormAct, LayerSpec, check_spatial_size


class _DoubleConv(nn.Sequential):
    """Two padded 3x3x3 convs, each followed by optional norm and the activation.

    ``(B, in_channels, X, Y, Z) -> (B, out_channels, X, Y, Z)``.
    """

    def __init__(self, in_channels: int, out_channels: int, norm: LayerSpec, act: LayerSpec) -> None:
        super().__init__()
        self.add_module("conv1", ConvNormAct(in_channels, out_channels, 3, norm=norm, act=act))
        self.add_module("conv2", ConvNormAct(out_channels, out_channels, 3, norm=norm, act=act))


@GENERATORS.register("unet3d")
class UNet3D(nn.Module):
    """The original U-Net in 3D: the baseline of Kang et al. (2021).

    ``len(features) - 1`` levels of (two 3x3x3 convs, 2x2x2 max-pool) down to a bottleneck of two 3x3x3
    convs, then per level a 2x2x2 stride-2 transposed conv (halving the channels, Ronneberger's
    "up-convolution"), concatenation with the encoder features of equal size, and two 3x3x3 convs; a
    1x1x1 conv maps to ``out_channels``. Convs are zero-padded so the output has the input's size
    (32^3 in, 32^3 out; the 2015 U-Net used unpadded convs and cropping). With the default
    ``features=(64, 128, 256, 512, 1024)`` it has 4 poolings (~90 M parameters).

    Args:
        in_channels: input channels (1: interpolated volume; 2: plus the acquired-slice mask).
        out_channels: output channels (1).
        features: channels per level, finest first; its length sets the depth.
        act: activation after every 3x3x3 conv, e.g. ``"relu"`` or ``("leakyrelu", {"negative_slope": 0.1})``.
        norm: ``None`` (the original) or a norm after each 3x3x3 conv such as ``"batch"``.
        dropout: dropout probability at the end of the contracting path (Ronneberger used 0.5).

    Example:
        >>> net = UNet3D(features=(4, 8, 16, 32, 64))
        >>> net(torch.zeros(1, 1, 32, 32, 32)).shape
        torch.Size([1, 1, 32, 32, 32])
    """

    size_multiple = 16  # 2 ** 4 for the default 5 levels; instances set 2 ** (len(features) - 1)

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        features: Sequence[int] = (64, 128, 256, 512, 1024),
        act: LayerSpec = "relu",
        norm: LayerSpec = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        features = tuple(features)
        if len(features) < 2 or min(features) < 1:
            raise ValueError(
                f"UNet3D needs at least 2 positive feature counts (one per level), got {features}"
            )
        self.in_channels = in_channels
        self.size_multiple = 2 ** (len(features) - 1)
        self.encoder = nn.ModuleDict()
        channels = in_channels
        for level, width in enumerate(features, start=1):
            self.encoder[f"level{level}"] = _DoubleConv(channels, width, norm, act)
            channels = width
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.decoder = nn.ModuleDict()
        for level in range(len(features) - 1, 0, -1):
            width = features[level - 1]
            self.decoder[f"up{level}"] = nn.ConvTranspose3d(channels, width, 2, stride=2)
            self.decoder[f"level{level}"] = _DoubleConv(2 * width, width, norm, act)
            channels = width
        self.head = nn.Conv3d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Inpaint a batch of patches.

        Args:
            x: ``(B, in_channels, X, Y, Z)``, every spatial size a multiple of ``size_multiple``.

        Returns:
            ``(B, out_channels, X, Y, Z)``.
        """
        check_spatial_size(x, self.size_multiple, type(self).__name__, self.in_channels)
        depth = len(self.encoder)
        skips = []
        for level in range(1, depth + 1):
            if level > 1:
                x = F.max_pool3d(x, 2)
            x = self.encoder[f"level{level}"](x)
            skips.append(x)
        x = self.dropout(skips.pop())
        for level in range(depth - 1, 0, -1):
            x = self.decoder[f"up{level}"](x)
            x = self.decoder[f"level{level}"](torch.cat([skips.pop(), x], dim=1))
        return self.head(x)
