"""The null model: linear interpolation, i.e. the degraded input itself."""

from __future__ import annotations

import torch
from torch import nn

from models import GENERATORS


@GENERATORS.register("linear")
class LinearInterpolation(nn.Module):
    """Returns channel 0 of its input, which the degradation already filled by linear interpolation.

    It has no parameters: it is evaluated, never trained.
    """

    size_multiple = 1

    def __init__(self, in_channels: int = 1, out_channels: int = 1) -> None:
        super().__init__()
        if out_channels != 1:
            raise ValueError("linear: out_channels must be 1")
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, X, Y, Z) -> (B, 1, X, Y, Z)."""
        return x[:, :1]
