"""DenseUNet: the proposed generator of Kang et al. (Sci Rep 2021), dense blocks in a U-Net."""

from __future__ import annotations

import torch
from torch import nn

from models import GENERATORS
from models.layers import ConvNormAct, LayerSpec, check_spatial_size


class _DenseLayer(nn.Sequential):
    """1x1x1 bottleneck conv then 3x3x3 conv (each with norm and act); output = input ++ new features.

    ``(B, in_channels, X, Y, Z) -> (B, in_channels + growth, X, Y, Z)``.
    """

    def __init__(
        self, in_channels: int, growth: int, bn_size: int, norm: LayerSpec, act: LayerSpec, dropout: float
    ) -> None:
        super().__init__()
        self.add_module("bottleneck", ConvNormAct(in_channels, bn_size * growth, 1, norm=norm, act=act))
        self.add_module("conv", ConvNormAct(bn_size * growth, growth, 3, norm=norm, act=act, dropout=dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, super().forward(x)], dim=1)


class _DenseBlock(nn.Sequential):
    """``layers`` dense layers; layer i (0-based) sees ``in_channels + i * growth`` channels (Eq. 1).

    ``(B, in_channels, X, Y, Z) -> (B, out_channels, X, Y, Z)`` with ``out_channels = in_channels +
    layers * growth`` (``keep_input=True``, DenseNet) or ``layers * growth`` (only the new features).
    """

    def __init__(
        self,
        layers: int,
        in_channels: int,
        growth: int,
        bn_size: int,
        norm: LayerSpec,
        act: LayerSpec,
        dropout: float,
        keep_input: bool = True,
    ) -> None:
        super().__init__()
        for i in range(layers):
            self.add_module(
                f"layer{i + 1}", _DenseLayer(in_channels + i * growth, growth, bn_size, norm, act, dropout)
            )
        self.in_channels, self.keep_input = in_channels, keep_input
        self.out_channels = in_channels * keep_input + layers * growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out if self.keep_input else out[:, self.in_channels :]


class _Transition(ConvNormAct):
    """2x2x2 stride-2 conv then norm and act: ``up=False`` halves each spatial size, ``up=True``
    (transposed conv) doubles it. ``(B, in_channels, X, Y, Z) -> (B, out_channels, X', Y', Z')``."""

    def __init__(
        self, in_channels: int, out_channels: int, up: bool, norm: LayerSpec, act: LayerSpec
    ) -> None:
        super().__init__(in_channels, out_channels, 2, 2, norm=norm, act=act, transposed=up)
        self.out_channels = out_channels


@GENERATORS.register("dense_unet")
class DenseUNet(nn.Module):
    """DenseUNet of Kang et al. (2021): 9 dense blocks in a U-Net, 4 down- and 4 up-samplings.

    Layout (sizes for a 32^3 patch)::

        stem 3^3 conv -> block1 (32) -> down1 -> block2 (16) -> down2 -> block3 (8) -> down3 -> block4 (4)
        -> down4 -> block5 (2, no transition) -> up6 -> [++ block4] block6 (4) -> up7 -> [++ block3]
        block7 (8) -> up8 -> [++ block2] block8 (16) -> up9 -> [++ block1] block9 (32) -> 1^3 head

    where ``++`` concatenates the encoder block's output at equal resolution (the U-Net skip). Every
    dense layer is a 1x1x1 then a 3x3x3 conv, each followed by ``norm`` (batch renormalisation) and
    ``act`` (ELU), and sees all earlier outputs of its block (Eq. 1 of the paper).

    Choices where the paper is silent (all constructor arguments):
        - ``features`` (16) is the growth rate of block 1 and the width of a 3x3x3 stem conv, so
          block 1 starts from 16 channels rather than the 1-2 raw input channels.
        - ``growth_scale`` (1.0): the growth rate at level l is ``features * growth_scale**l``; constant
          growth (DenseNet's choice) keeps the model within the paper's size, as channels already
          grow by concatenation; doubling per level gives ~95 M parameters (40 M in block 5 alone).
        - ``bn_size`` (4): the 1x1x1 bottleneck has ``bn_size * growth`` channels, as DenseNet-BC.
        - ``compression`` (0.5): each down transition halves the channels, as DenseNet-BC.
        - ``upsample_new_only`` (True): blocks 5-8 hand only their new ``layers * growth`` features to
          the next transposed conv, which keeps that channel count, as FC-DenseNet (Jegou et al.
          2017, the standard dense U-Net): the skip features then reach block 9 once instead of
          being carried through every up-conv (False: 12 M parameters, 92 GFLOP at 32^3). Encoder
          blocks and block 9 output their input plus their new features (DenseNet).
        - Transitions are convs followed by norm and act, like every conv of the paper.
        - Head: a 1x1x1 conv with bias and no activation, so the output is not bounded to the
          [-1, 1] scaling; no residual connection (the system adds residual/data consistency).
        These give 2.19 M parameters and 27.95 GFLOP per 32^3 patch (``python -m models.summary``).

    Args:
        in_channels: input channels (1: interpolated volume; 2: plus the acquired-slice mask).
        out_channels: output channels (1).
        features: growth rate of the first block and width of the stem.
        layers_per_block: dense layers per block (5 in the paper).
        growth_scale: growth-rate multiplier per resolution level.
        bn_size: bottleneck width as a multiple of the growth rate.
        compression: channel factor of each down transition, in (0, 1].
        upsample_new_only: up-sample only the new features of blocks 5-8 (FC-DenseNet).
        act: activation, e.g. ``"elu"`` or ``("leakyrelu", {"negative_slope": 0.1})``.
        norm: normalisation, e.g. ``"batchrenorm"``, ``("batchrenorm", {"warmup_steps": 1000})``, ``"batch"``.
        dropout: dropout probability after each 3x3x3 conv of the dense layers.

    Example:
        >>> net = DenseUNet(features=4, layers_per_block=2)
        >>> net(torch.zeros(1, 1, 32, 32, 32)).shape
        torch.Size([1, 1, 32, 32, 32])
    """

    size_multiple = 16

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        features: int = 16,
        layers_per_block: int = 5,
        growth_scale: float = 1.0,
        bn_size: int = 4,
        compression: float = 0.5,
        upsample_new_only: bool = True,
        act: LayerSpec = "elu",
        norm: LayerSpec = "batchrenorm",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if features < 1 or layers_per_block < 1 or bn_size < 1:
            raise ValueError(
                f"DenseUNet needs features, layers_per_block, bn_size >= 1, got {features}, {layers_per_block}, {bn_size}"
            )
        if not 0 < compression <= 1 or growth_scale <= 0:
            raise ValueError(
                f"DenseUNet needs 0 < compression <= 1 and growth_scale > 0, got {compression}, {growth_scale}"
            )
        self.in_channels = in_channels
        common = {"bn_size": bn_size, "norm": norm, "act": act, "dropout": dropout}
        self.stem = ConvNormAct(in_channels, features, 3, norm=norm, act=act)
        self.features = nn.ModuleDict()
        channels, skips = features, []
        for i in range(1, 10):
            level = i - 1 if i <= 5 else 9 - i
            growth = max(1, round(features * growth_scale**level))
            if i >= 6:
                self.features[f"up{i}"] = _Transition(channels, channels, True, norm, act)
                channels += skips.pop()
            keep = not (upsample_new_only and 5 <= i <= 8)
            block = _DenseBlock(layers_per_block, channels, growth, keep_input=keep, **common)
            self.features[f"block{i}"] = block
            channels = block.out_channels
            if i <= 4:
                skips.append(channels)
                down = _Transition(channels, max(1, int(channels * compression)), False, norm, act)
                self.features[f"down{i}"] = down
                channels = down.out_channels
        self.head = nn.Conv3d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Inpaint a batch of patches.

        Args:
            x: ``(B, in_channels, X, Y, Z)``, every spatial size a multiple of 16.

        Returns:
            ``(B, out_channels, X, Y, Z)``.
        """
        check_spatial_size(x, self.size_multiple, type(self).__name__, self.in_channels)
        h, skips = self.stem(x), []
        for i in range(1, 5):
            h = self.features[f"block{i}"](h)
            skips.append(h)
            h = self.features[f"down{i}"](h)
        h = self.features["block5"](h)
        for i in range(6, 10):
            h = self.features[f"up{i}"](h)
            h = self.features[f"block{i}"](torch.cat([h, skips.pop()], dim=1))
        return self.head(h)
