"""Site shifts for training: acquired-grid patches as another site and scanner would give them (issue 25).

Each patch (with probability ``augment.p``) gets its own draw of an in-plane blur, a contrast curve (gamma), a smooth
multiplicative bias field and noise. The acquired slices and the missing slices of a patch are shifted alike: the
blur, gamma and bias field are functions of position, and the bias field is evaluated at each voxel's true slice
position (acquired slice ``j`` lies at ``j * interval``, slot ``m`` of its gap at ``j * interval + m``), so the shifted
patch is the patch of a shifted volume (for thin slices; a thick slice's slab mean is shifted as one value). Noise is independent per voxel, acquired or not. Works in normalised units
(``inpaint.data.normalise``: about -1 at the brain's darkest acquired voxel, 1 at its 99.5th percentile), on
``u = (x + 1) / 2``; the background (u < ``BRAIN_LEVEL``) stays as it is, as skull stripping leaves it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

BRAIN_LEVEL = 1e-3  # u above this is brain; skull-stripped background maps to u <= 0


@dataclass(frozen=True)
class ShiftDraws:
    """One patch's draws, each (B,): blur sigma (in-plane voxels), gamma, bias log-offset, bias log-gradient (3
    components, (B, 3), per patch extent), noise std (in u), and whether the patch is shifted at all."""

    blur: torch.Tensor
    gamma: torch.Tensor
    bias_offset: torch.Tensor
    bias_gradient: torch.Tensor
    noise: torch.Tensor
    on: torch.Tensor


class SiteShift:
    """Draws and applies site shifts to acquired-grid training patches.

    Args: p: the chance a patch is shifted; gamma: |log gamma| at most; bias: |log| of the bias field's patch-wide
    factor at most (0.45: x0.64 to x1.57); bias_gradient: |log| change of the field across a patch at most per axis;
    noise: noise std at most (fraction of the brain's acquired range: its 99.5th percentile less its minimum); blur: in-plane Gaussian sigma at most (voxels).
    """

    def __init__(self, p: float, gamma: float, bias: float, bias_gradient: float, noise: float, blur: float) -> None:
        self.p, self.gamma, self.bias, self.bias_gradient, self.noise, self.blur = p, gamma, bias, bias_gradient, noise, blur

    def draw(self, batch: int, device: torch.device, generator: torch.Generator | None = None) -> ShiftDraws:
        def uniform(*shape: int, span: float, centred: bool = True) -> torch.Tensor:
            u = torch.rand(*shape, generator=generator, device=device)
            return (2 * u - 1) * span if centred else u * span

        return ShiftDraws(blur=uniform(batch, span=self.blur, centred=False),
                          gamma=uniform(batch, span=self.gamma).exp(),
                          bias_offset=uniform(batch, span=self.bias),
                          bias_gradient=uniform(batch, 3, span=self.bias_gradient),
                          noise=uniform(batch, span=self.noise, centred=False),
                          on=torch.rand(batch, generator=generator, device=device) < self.p)

    def __call__(self, slices: torch.Tensor, gaps: torch.Tensor, interval: torch.Tensor, draws: ShiftDraws | None = None,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Shifted copies of acquired slices (B, 1, P, P, K) and gap slots (B, S, P, P, K) (slot m of slice j at
        ``j * interval + m``); ``interval`` (B,); ``draws``: else drawn here."""
        with torch.autocast(slices.device.type, enabled=False):  # fp32 targets, whatever the training precision
            return self._shift(slices.float(), gaps.float(), interval, draws, generator)

    def _shift(self, slices: torch.Tensor, gaps: torch.Tensor, interval: torch.Tensor, draws: ShiftDraws | None,
               generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        draws = self.draw(slices.shape[0], slices.device, generator) if draws is None else draws
        acquired_z = torch.arange(slices.shape[-1], device=slices.device) * interval.float().view(-1, 1, 1)  # (B, 1, K)
        slot_z = torch.arange(gaps.shape[1], device=gaps.device).view(1, -1, 1)  # (1, S, 1)
        extent = (slices.shape[-1] * interval.float()).view(-1, 1, 1)  # each patch's depth, in slices
        return (self.apply(slices, acquired_z, extent, draws, generator),
                self.apply(gaps, acquired_z + slot_z, extent, draws, generator))

    def apply(self, values: torch.Tensor, z: torch.Tensor, extent: torch.Tensor, draws: ShiftDraws,
              generator: torch.Generator | None = None) -> torch.Tensor:
        """``values`` (B, C, X, Y, N) in normalised units, at slice positions ``z`` (B, C, N), of a patch ``extent``
        (B, 1, 1) slices deep: blur, gamma, bias, noise; patches whose draw is off come back unchanged."""
        x = values.float()
        u = (x + 1) / 2
        brain = u > BRAIN_LEVEL
        u = torch.where(brain, blur_in_plane(u, draws.blur), u)
        b = draws.gamma.view(-1, 1, 1, 1, 1)
        u = torch.where(brain, u.clamp(min=0) ** b, u)
        size_x, size_y = u.shape[2], u.shape[3]
        cx = torch.linspace(-0.5, 0.5, size_x, device=u.device).view(1, 1, -1, 1, 1)
        cy = torch.linspace(-0.5, 0.5, size_y, device=u.device).view(1, 1, 1, -1, 1)
        cz = (z / extent - 0.5)[:, :, None, None, :]
        g = draws.bias_gradient
        log_field = (draws.bias_offset.view(-1, 1, 1, 1, 1) + g[:, 0].view(-1, 1, 1, 1, 1) * cx
                     + g[:, 1].view(-1, 1, 1, 1, 1) * cy + g[:, 2].view(-1, 1, 1, 1, 1) * cz)
        u = torch.where(brain, u * log_field.exp(), u)
        noise = torch.randn(u.shape, generator=generator, device=u.device) * draws.noise.view(-1, 1, 1, 1, 1)
        u = torch.where(brain, u + noise, u)
        shifted = 2 * u - 1
        return torch.where(draws.on.view(-1, 1, 1, 1, 1), shifted, x).to(values.dtype)


def blur_in_plane(u: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A Gaussian blur of (B, C, X, Y, N) along X and Y, sigma (B,) voxels per patch (0: unchanged); reflect padding."""
    if not bool((sigma > 0).any()):
        return u
    radius = max(1, int(torch.ceil(3 * sigma.max()).item()))
    offsets = torch.arange(-radius, radius + 1, device=u.device, dtype=torch.float32)
    weights = torch.exp(-0.5 * (offsets[None] / sigma.clamp(min=1e-3)[:, None]) ** 2)
    weights = torch.where(sigma[:, None] > 0, weights, (offsets[None] == 0).float())
    weights = weights / weights.sum(1, keepdim=True)  # (B, 2R+1)
    b, c, nx, ny, n = u.shape
    out = u
    for axis in (2, 3):  # each patch its own kernel: a grouped 1D convolution over B groups
        moved = out.movedim(axis, -1)  # (B, C, ., N, L)
        shape = moved.shape
        flat = moved.reshape(1, b, -1, shape[-1]).transpose(1, 2).reshape(-1, b, shape[-1])  # (C*.*N, B, L)
        flat = F.pad(flat, (radius, radius), mode="reflect")
        blurred = F.conv1d(flat, weights[:, None, :], groups=b)  # (C*.*N, B, L)
        out = blurred.reshape(-1, b, shape[-1]).transpose(0, 1).reshape(shape).movedim(-1, axis)
    return out
