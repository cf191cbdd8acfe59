"""SliceResNet: a residual CNN on the acquired slices that emits the slices between them (any interval).

The full-resolution generators (DenseUNet, U-Net) run on an interpolated volume in which most
slices carry no information of their own. This one computes on the acquired slices only and
produces the missing ones at the end, as ESPCN/EDSR do for in-plane super-resolution:

    features = trunk(acquired slices, gap)                    (B, C, X, Y, K), K acquired slices
    value(j, t) = (1 - t) * A[j] + t * A[j + 1] + w(t, gap) . H[j] + b(t, gap),   H[j] = head(F[j], F[j + 1])

for the position ``t`` in [0, 1) between acquired slice ``j`` and the next one, ``gap`` slices of the
output grid apart. The head is tied to no interval: ``t`` and ``gap`` are continuous, so one network
serves intervals 2-8 (and non-integer slice spacings). ``t = 0`` is the acquired slice itself: exact
for thin slices (the restorer copies it), predicted for thick ones (a slab mean is not the slice).
The readout's last layer starts at zero, so an untrained network is linear interpolation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models import GENERATORS

GAP_SCALE = 8.0  # gaps (in output slices) are fed to the network divided by this


class _ResBlock(nn.Module):
    """``x + scale * conv(relu(conv(x)))``, no normalisation (EDSR); ``(B, C, X, Y, K)`` in and out."""

    def __init__(self, features: int, kernel: Sequence[int], scale: float) -> None:
        super().__init__()
        padding = tuple(k // 2 for k in kernel)
        self.conv1 = nn.Conv3d(features, features, tuple(kernel), padding=padding)
        self.conv2 = nn.Conv3d(features, features, tuple(kernel), padding=padding)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale * self.conv2(F.relu(self.conv1(x), inplace=True))


def space_to_depth(x: torch.Tensor, r: int) -> torch.Tensor:
    """In-plane pixel unshuffle: (B, C, X, Y, K) -> (B, C * r * r, X / r, Y / r, K); X and Y multiples of ``r``."""
    b, c, x_size, y_size, k = x.shape
    x = x.view(b, c, x_size // r, r, y_size // r, r, k).permute(0, 1, 3, 5, 2, 4, 6)
    return x.reshape(b, c * r * r, x_size // r, y_size // r, k)


def depth_to_space(x: torch.Tensor, r: int) -> torch.Tensor:
    """The inverse of :func:`space_to_depth`: (B, C * r * r, X, Y, K) -> (B, C, X * r, Y * r, K)."""
    b, c, x_size, y_size, k = x.shape
    x = x.view(b, c // (r * r), r, r, x_size, y_size, k).permute(0, 1, 4, 2, 5, 3, 6)
    return x.reshape(b, c // (r * r), x_size * r, y_size * r, k)


def position_features(t: torch.Tensor, gap: torch.Tensor, frequencies: int) -> torch.Tensor:
    """Encode positions ``t`` (B, S) in their gap of ``gap`` (B,) slices -> (B, S, 2 + 2 * frequencies)."""
    angles = math.pi * t[..., None] * torch.arange(1, frequencies + 1, device=t.device, dtype=t.dtype)
    scaled_gap = (gap / GAP_SCALE)[:, None, None].to(t.dtype).expand(*t.shape, 1)
    return torch.cat([t[..., None], scaled_gap, angles.sin(), angles.cos()], -1)


@GENERATORS.register("slice_resnet")
class SliceResNet(nn.Module):
    """Residual 3D CNN on the acquired-slice grid with a position-conditioned slice head.

    Args:
        in_channels: image channels of the acquired slices (1).
        features: channels of the trunk.
        blocks: residual blocks in the trunk.
        kernel: conv kernel ``(kx, ky, kz)`` of the trunk; ``kz`` runs across acquired slices.
        head_features: hidden channels of the slice head.
        frequencies: sine/cosine frequencies of the position encoding.
        res_scale: residual branch scale of each block (EDSR's 0.1 keeps a norm-free trunk stable).
        unshuffle: in-plane space-to-depth factor r of the trunk: it runs on (X / r, Y / r) with the r x r
            neighbours as channels (r^2 fewer voxels per conv, r x the in-plane reach), and a 1x1x1 conv and
            depth-to-space bring its features back to full resolution for the head. 1: off.

    Shapes: ``forward(slices (B, in_channels, X, Y, K), gap (B,), t (B, S)) -> (B, 1, X, Y, K, S)``,
    the values at ``t[s]`` after each acquired slice ``j``; after the last one (``j = K - 1``) there is
    no next slice, so its values are only meaningful at ``t = 0``.

    Example:
        >>> net = SliceResNet(features=8, blocks=1)
        >>> slices = torch.rand(2, 1, 16, 16, 5)
        >>> out = net(slices, torch.tensor([5.0, 5.0]), torch.tensor([[0.0, 0.2], [0.4, 0.6]]))
        >>> out.shape, bool(torch.allclose(out[0, 0, ..., 0], slices[0, 0]))  # starts as linear interpolation
        (torch.Size([2, 1, 16, 16, 5, 2]), True)
    """

    grid = "acquired"  # computes on the acquired slices (see inpaint.restore)
    size_multiple = 1

    def __init__(self, in_channels: int = 1, features: int = 32, blocks: int = 6, kernel: Sequence[int] = (3, 3, 3),
                 head_features: int = 64, frequencies: int = 4, res_scale: float = 0.1, unshuffle: int = 1) -> None:
        super().__init__()
        if len(kernel) != 3 or any(k < 1 or k % 2 == 0 for k in kernel):
            raise ValueError(f"slice_resnet: kernel must be 3 odd sizes (kx, ky, kz), got {list(kernel)}")
        if unshuffle < 1:
            raise ValueError(f"slice_resnet: unshuffle must be a factor >= 1, got {unshuffle}")
        padding = tuple(k // 2 for k in kernel)
        self.in_channels, self.frequencies, self.unshuffle = in_channels, frequencies, unshuffle
        r2 = unshuffle * unshuffle
        self.stem = nn.Conv3d((in_channels + 1) * r2, features, tuple(kernel), padding=padding)
        self.body = nn.Sequential(*[_ResBlock(features, kernel, res_scale) for _ in range(blocks)])
        self.body_out = nn.Conv3d(features, features, tuple(kernel), padding=padding)
        self.up = nn.Conv3d(features, features * r2, 1) if unshuffle > 1 else None
        convs = 2 + 2 * blocks  # stem, body_out and two per block, each reaching kernel // 2 trunk voxels in-plane
        reach = convs * (max(kernel[:2]) // 2) * unshuffle + unshuffle - 1  # + the rest of the r x r cell of a voxel
        self.receptive_radius = -(-reach // unshuffle) * unshuffle  # a multiple of r: tiles keep the cell grid
        self.from_this = nn.Conv3d(features, head_features, 1)
        self.from_next = nn.Conv3d(features, head_features, 1, bias=False)
        self.hidden = nn.Conv3d(head_features, head_features, 1)
        self.readout = nn.Sequential(nn.Linear(2 + 2 * frequencies, head_features), nn.ReLU(inplace=True),
                                     nn.Linear(head_features, head_features + 1))
        nn.init.zeros_(self.readout[-1].weight)
        nn.init.zeros_(self.readout[-1].bias)

    def trunk(self, slices: torch.Tensor, gap: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, X, Y, K) acquired slices, (B,) gaps -> (B, features, X, Y, K)."""
        gap_channel = (gap.to(slices.dtype) / GAP_SCALE).view(-1, 1, 1, 1, 1).expand(-1, 1, *slices.shape[2:])
        x = torch.cat([slices, gap_channel], 1)
        r = self.unshuffle
        if r == 1:
            x = self.stem(x)
            return x + self.body_out(self.body(x))
        size = x.shape[2:4]
        x = F.pad(x, (0, 0, 0, -size[1] % r, 0, -size[0] % r), mode="replicate")  # X, Y up to multiples of r
        x = self.stem(space_to_depth(x, r))
        x = depth_to_space(self.up(x + self.body_out(self.body(x))), r)
        return x[:, :, :size[0], :size[1]]

    def head_features(self, features: torch.Tensor) -> torch.Tensor:
        """(B, features, X, Y, K) trunk output -> (B, head_features, X, Y, K): each gap's features, from the
        acquired slice before it and the one after it (the last slice repeats itself)."""
        following = self.from_next(features)
        following = torch.cat([following[..., 1:], following[..., -1:]], -1)
        return F.relu(self.hidden(F.relu(self.from_this(features) + following, inplace=True)), inplace=True)

    def emit(self, head: torch.Tensor, slices: torch.Tensor, gap: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Values at one position per sample: ``t`` (B,) -> (B, 1, X, Y, K).

        The correction is a linear readout of the gap's features whose weights and bias depend on the
        position and the gap (an MLP of ``t`` and ``gap``): a separate readout per position, continuous in it.
        """
        readout = self.readout(position_features(t[:, None].to(head.dtype), gap.to(head.dtype), self.frequencies))[:, 0]
        correction = torch.einsum("bcxyk,bc->bxyk", head, readout[:, :-1]) + readout[:, -1].view(-1, 1, 1, 1)
        nxt = torch.cat([slices[..., 1:], slices[..., -1:]], -1)[:, :1]
        weight = t.to(slices.dtype).view(-1, 1, 1, 1, 1)
        return (1 - weight) * slices[:, :1] + weight * nxt + correction[:, None].to(slices.dtype)

    def forward(self, slices: torch.Tensor, gap: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(B, C, X, Y, K), (B,), (B, S) -> (B, 1, X, Y, K, S): values at ``j + t[:, s]`` (in gaps)."""
        head = self.head_features(self.trunk(slices, gap))
        return torch.stack([self.emit(head, slices, gap, t[:, s]) for s in range(t.shape[1])], -1)
