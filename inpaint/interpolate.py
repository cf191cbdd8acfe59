"""Interpolation along the slice axis (PROTOCOL.md: linear, cubic); the slice geometry is ``inpaint.geometry``.

Pure functions on torch tensors, shared by the degradation transform, the classical fills of
``inpaint.restore`` and ``inpaint.predict``.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.interpolate import make_interp_spline

from inpaint.geometry import kept_indices

METHODS = ("linear", "cubic")


def _check_axis(axis: int, ndim: int) -> int:
    """``axis`` as a non-negative index into an ``ndim``-D tensor."""
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for a {ndim}-D volume")
    return axis % ndim


def fill_missing(volume: torch.Tensor, axis: int, kept: torch.Tensor, method: str = "linear") -> torch.Tensor:
    """Replace the slices not in ``kept`` by interpolating the kept ones along ``axis``.

    ``linear`` interpolates between neighbouring kept slices; ``cubic`` is the interpolating
    not-a-knot cubic spline through all kept slices (``scipy.interpolate.make_interp_spline(k=3)``,
    computed with numpy in float64). Slices before the first / after the last kept slice copy the
    nearest kept slice; kept slices are returned unchanged.

    Args:
        volume: ``(..., X, Y, Z)`` or any shape; floating dtypes are kept, others become float32.
        axis: the slice axis of ``volume`` (negative values count from the end).
        kept: ``(K,)`` strictly increasing indices along ``axis`` (e.g. from :func:`kept_indices`).
        method: ``"linear"`` (vectorised torch, any device) or ``"cubic"`` (needs ``K >= 4``).

    Returns:
        Tensor of the same shape, dtype and device as ``volume`` (float32 for integer input).
    """
    if method not in METHODS:
        raise ValueError(f"unknown interpolation method {method!r}; choose one of {METHODS}")
    if not volume.is_floating_point():
        volume = volume.float()
    axis = _check_axis(axis, volume.ndim)
    n = volume.shape[axis]
    kept = torch.as_tensor(kept, dtype=torch.long).flatten()
    if kept.numel() < 2 or (kept.diff() <= 0).any() or kept[0] < 0 or kept[-1] >= n:
        raise ValueError(f"kept must hold >= 2 strictly increasing indices in [0, {n}), got {kept.tolist()}")
    if method == "cubic":
        return _fill_cubic(volume, axis, kept)
    kept = kept.to(volume.device)
    z = torch.arange(n, device=volume.device)
    left = (torch.searchsorted(kept, z, right=True) - 1).clamp(0, kept.numel() - 2)
    k0, k1 = kept[left], kept[left + 1]
    weight = ((z - k0).to(volume.dtype) / (k1 - k0).to(volume.dtype)).clamp(0, 1)
    shape = [1] * volume.ndim
    shape[axis] = n
    below, above = volume.index_select(axis, k0), volume.index_select(axis, k1)
    out = torch.lerp(below, above, weight.view(shape))
    return out.index_copy_(axis, kept, volume.index_select(axis, kept))


def _fill_cubic(volume: torch.Tensor, axis: int, kept: torch.Tensor) -> torch.Tensor:
    """Not-a-knot cubic spline through the kept slices with edge copy (see :func:`fill_missing`)."""
    if kept.numel() < 4:
        raise ValueError(
            f"cubic interpolation needs at least 4 acquired slices, got {kept.numel()}; "
            "use method='linear' or a smaller interval"
        )
    array = volume.detach().cpu().numpy().astype(np.float64, copy=False)
    knots = kept.cpu().numpy()
    spline = make_interp_spline(knots, np.take(array, knots, axis=axis), k=3, axis=axis)
    z = np.clip(np.arange(volume.shape[axis]), knots[0], knots[-1])
    out = torch.from_numpy(spline(z)).to(device=volume.device, dtype=volume.dtype)
    kept = kept.to(volume.device)
    return out.index_copy_(axis, kept, volume.index_select(axis, kept))


def sparse_to_dense(sparse: torch.Tensor, axis: int, interval: int, method: str = "linear") -> torch.Tensor:
    """Put ``n`` acquired slices on the dense grid at ``0, interval, 2 * interval, ...`` and fill the rest.

    Args:
        sparse: ``(..., X, Y, Z)`` tensor holding only the acquired slices along ``axis`` (``n >= 2``).
        axis: the slice axis of ``sparse``.
        interval: spacing of the acquired slices on the dense grid (``>= 1``).
        method: ``"linear"`` or ``"cubic"`` (see :func:`fill_missing`).

    Returns:
        Tensor with ``(n - 1) * interval + 1`` slices along ``axis``; the other dims are unchanged.

    Example:
        >>> sparse_to_dense(torch.tensor([0.0, 10.0]), axis=0, interval=5).tolist()
        [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    """
    if not sparse.is_floating_point():
        sparse = sparse.float()
    axis = _check_axis(axis, sparse.ndim)
    n = sparse.shape[axis]
    if interval < 1:
        raise ValueError(f"interval must be >= 1, got {interval}")
    if n < 2:
        raise ValueError(f"need at least 2 acquired slices along axis {axis}, got {n}")
    shape = list(sparse.shape)
    shape[axis] = (n - 1) * interval + 1
    kept = kept_indices(shape[axis], interval).to(sparse.device)
    dense = sparse.new_zeros(shape).index_copy_(axis, kept, sparse)
    return fill_missing(dense, axis, kept, method)
