"""The PROTOCOL.md degradation and the classical fills (linear, cubic) on one whole volume, in file voxel order.

Shared by ``inpaint.evaluate`` and ``inpaint.predict``: a reference volume is reduced to its acquired
slices (``k % interval == offset`` along the S/I voxel axis, counted in the file's own order) and the
rest is filled back. ``linear`` is the null model and also the network's input; ``cubic`` is the
not-a-knot interpolating spline. Both copy the nearest acquired slice beyond the first/last one and
return the acquired slices exactly.

Example:
    >>> import numpy as np, torch
    >>> ref = torch.arange(12.0).view(1, 1, 12).expand(4, 4, 12)
    >>> sparse = degrade(ref, np.eye(4), interval=5)
    >>> sparse.kept.tolist(), classical_fill(sparse, "linear")[0, 0].tolist()[:6]
    ([0, 5, 10], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
"""

from __future__ import annotations

import torch

from inpaint.data.degrade import Degraded, degrade, find_slice_axis  # noqa: F401  (re-exported)
from inpaint.data.io import InputError
from inpaint.data.transforms import brain_mask  # noqa: F401  (re-exported)
from inpaint.interpolate import METHODS, fill_missing

CLASSICAL = METHODS  # ("linear", "cubic")


def classical_fill(degraded: Degraded, method: str, source: str = "volume") -> torch.Tensor:
    """Fill the missing slices of ``degraded`` from its acquired slices only.

    Args:
        degraded: from :func:`degrade`.
        method: ``"linear"`` or ``"cubic"``.
        source: file name for error messages.

    Returns:
        ``(X, Y, Z)`` float32 volume, acquired slices exact.

    Raises:
        InputError: an unknown method, or cubic with fewer than 4 acquired slices.
    """
    if method not in CLASSICAL:
        raise InputError(f"unknown classical method {method!r}; choose one of {', '.join(CLASSICAL)}")
    if method == "linear":
        return degraded.input.clone()
    try:
        return fill_missing(degraded.input, degraded.axis, degraded.kept, method)
    except ValueError as error:
        raise InputError(f"{source}: {error}") from None
