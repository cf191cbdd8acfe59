"""Output grids for sparse acquisitions of any slice and in-plane spacing (``inpaint.predict``).

A sparse scan has in-plane spacing (a, b) and slice spacing s (slice thickness + gap). A generator
fills ``N - 1`` slices per gap, ``N = round(s / t)`` for the fill spacing t, so the filled volume has
slice spacing ``s / N`` and the acquired slices at indices ``0, N, 2N, ...`` (the network resamples
in-plane to the spacing it was trained at and back, ``inpaint.restore``). The output grid says what the
user wants (``GRIDS``):

- ``inplane`` (default): the scan's own in-plane voxels, and slices at its finest in-plane spacing
  ``d = min(a, b)``: a 0.88 mm scan gives 0.88 mm voxels. A network fills at the slice spacing it learnt
  (t = 1 mm for the committed models: the interval it was trained at), then the slice axis alone is
  resampled ``s / N -> d``; a classical fill fills at ``t = d`` (resampled only when ``s / d`` is more
  than 2 % away from N);
- ``isotropic``: every axis resampled to t after the fill (``--target-spacing``, else the checkpoint's,
  else 1 mm; the slice axis only when ``s / t`` is more than 2 % away from N, e.g. 4.4 mm slices:
  4-fold fill at 1.1 mm, then 1.1 -> 1 mm; in-plane axes only when more than 2 % away from t): the grid
  of tools that want 1 mm isotropic volumes;
- ``input``: the input's in-plane spacing and slice spacing ``s / N`` (t: ``--target-spacing``, else a
  network's own, a classical fill's the in-plane spacing): no resampling of the output;
  acquired slices are output slices, copied exactly when data consistency is on (not for
  ``pretrained-thick`` or ``--data-consistency off``, whose network predicts them).

Resampling keeps voxel 0 where it is in world coordinates (the first acquired slice stays slice 0), the
axis directions, and the field of view from the first to the last voxel centre; it is linear, after a
Gaussian anti-aliasing filter where an axis is coarsened.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

GRIDS = ("inplane", "isotropic", "input")  # the first is the default
RATIO_TOLERANCE = 0.02  # a spacing ratio this close (relative) to an integer counts as that integer


def fill_factor(slice_spacing: float, target: float) -> int:
    """``N = round(s / t)``, the fill factor along the slice axis; ValueError if ``N < 2``."""
    ratio = slice_spacing / target
    n = math.floor(ratio + 0.5)
    if n < 2:
        raise ValueError(f"slice spacing {slice_spacing:.4g} mm is within 1.5x the output spacing {target:.4g} mm; "
                         "nothing to fill (use --simulate to degrade and restore a full volume, or a smaller "
                         "--target-spacing)")
    return n


def inplane_spacing(affine: np.ndarray, axis: int) -> float:
    """The finest in-plane spacing (mm) of a grid whose slices lie along voxel ``axis``."""
    return float(min(np.delete(np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0), axis)))


def output_spacings(grid: str, affine: np.ndarray, axis: int, target: float) -> dict[int, float]:
    """``{voxel axis: spacing in mm}`` that :func:`to_spacing` brings a filled volume to on ``grid``.

    Args:
        grid: one of ``GRIDS``.
        affine: the sparse scan's (4, 4) affine (its in-plane spacing).
        axis: the slice axis.
        target: the fill spacing t (``isotropic``: every axis' spacing).
    """
    if grid == "isotropic":
        return dict.fromkeys(range(3), target)
    if grid == "inplane":
        return {axis: inplane_spacing(affine, axis)}
    return {}


def is_close(spacing: float, target: float) -> bool:
    return abs(spacing / target - 1) <= RATIO_TOLERANCE


def resampled_length(n: int, spacing: float, new: float) -> int:
    """Voxels along an axis of ``n`` voxels at ``spacing`` resampled to ``new`` (first to last centre kept)."""
    return int(math.floor((n - 1) * spacing / new + 1e-6)) + 1


def _smooth(volume: torch.Tensor, axis: int, sigma: float) -> torch.Tensor:
    """Gaussian filter of ``sigma`` voxels along ``axis`` (edges replicated)."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(volume.dtype)
    lines = volume.movedim(axis, -1)
    shape = lines.shape
    flat = F.pad(lines.reshape(-1, 1, shape[-1]), (radius, radius), mode="replicate")
    return F.conv1d(flat, kernel.view(1, 1, -1)).reshape(shape).movedim(-1, axis)


def resample_axis(volume: torch.Tensor, axis: int, spacing: float, new: float) -> torch.Tensor:
    """Linear resampling of a (X, Y, Z) float volume along ``axis`` from ``spacing`` to ``new`` mm.

    Output voxel ``j`` lies at input position ``j * new / spacing`` (voxel 0 kept); the output has
    :func:`resampled_length` voxels along ``axis``. Coarsening first applies a Gaussian of FWHM
    ``sqrt(r^2 - 1)`` input voxels, ``r = new / spacing``.
    """
    ratio = new / spacing
    if ratio > 1:
        volume = _smooth(volume, axis, math.sqrt(ratio**2 - 1) / (2 * math.sqrt(2 * math.log(2))))
    n = volume.shape[axis]
    position = torch.arange(resampled_length(n, spacing, new), dtype=torch.float64) * ratio
    low = position.floor().long().clamp(max=n - 1)
    high = (low + 1).clamp(max=n - 1)
    view = [1] * volume.ndim
    view[axis] = -1
    weight = (position - low).to(volume.dtype).view(view)
    return volume.index_select(axis, low) * (1 - weight) + volume.index_select(axis, high) * weight


def to_spacing(volume: torch.Tensor, affine: np.ndarray, spacings: dict[int, float]) -> tuple[torch.Tensor, np.ndarray]:
    """Resample axes of a (X, Y, Z) volume to ``{axis: spacing in mm}`` (axes within 2 % are kept as they are).

    Returns:
        The volume and its (4, 4) affine: the axes' columns rescaled, voxel 0 where it was.
    """
    affine = np.array(affine, dtype=np.float64)
    for axis, spacing in spacings.items():
        current = float(np.linalg.norm(affine[:3, axis]))
        if is_close(current, spacing):
            continue
        volume = resample_axis(volume, axis, current, spacing)
        affine[:3, axis] *= spacing / current
    return volume, affine

