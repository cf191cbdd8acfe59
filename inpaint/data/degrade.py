"""The slice degradation (PROTOCOL.md) as a TorchIO transform: adds ``input`` and ``known`` to a subject."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torchio as tio

from inpaint.constants import INPUT, INTERVAL, KNOWN, OFFSET, PATH, SLICE_AXIS, TARGET, THICK
from inpaint.data.io import InputError
from inpaint.geometry import find_slice_axis, kept_indices, known_volume
from inpaint.interpolate import fill_missing


@dataclass
class Degraded:
    """One volume reduced to its acquired slices, on the original grid.

    Attributes:
        input: ``(X, Y, Z)`` float32, acquired slices exact, the rest linearly interpolated (the network input).
        known: ``(X, Y, Z)`` bool, True on the acquired slices.
        axis: the slice (S/I) axis of the file's voxel array.
        kept: ``(K,)`` indices of the acquired slices along ``axis``.
        interval: keep every ``interval``-th slice.
        offset: first kept index.
    """

    input: torch.Tensor
    known: torch.Tensor
    axis: int
    kept: torch.Tensor
    interval: int
    offset: int


def slab_means(volume: torch.Tensor, axis: int, kept: torch.Tensor, thickness: int) -> torch.Tensor:
    """Each kept slice averaged over the slab of ``thickness`` slices centred on it (clipped at the ends).

    The slab of slice ``k`` is ``[k - (thickness - 1) // 2, k + thickness // 2]``: a thick 2D acquisition
    whose slice thickness equals the slice spacing. ``volume`` is ``(X, Y, Z)``; returns ``(K,)`` slices
    stacked along ``axis`` (the shape of ``volume.index_select(axis, kept)``), float32.
    """
    n = volume.shape[axis]
    lo = (kept - (thickness - 1) // 2).clamp(0, n)
    hi = (kept + thickness // 2 + 1).clamp(0, n)
    moved = volume.movedim(axis, 0).double()
    cumulative = torch.cat([torch.zeros_like(moved[:1]), moved.cumsum(0)])
    sums = cumulative[hi] - cumulative[lo]
    counts = (hi - lo).double().view(-1, *[1] * (moved.ndim - 1))
    return (sums / counts).float().movedim(0, axis)


def degrade(reference: torch.Tensor, affine: np.ndarray, interval: int = 5, offset: int = 0,
            source: str = "volume", thick: bool = False) -> Degraded:
    """Keep the acquired slices of ``reference`` (PROTOCOL.md) and linearly fill the others.

    With ``thick`` each acquired slice is the mean of its slab of ``interval`` slices (slice thickness
    = slice spacing, like a clinical 2D scan) instead of the thin slice itself: then no voxel of the
    input equals the reference, and the reference slices stay the target everywhere.

    Args:
        reference: ``(X, Y, Z)`` volume in file voxel order (any dtype; float32 is returned).
        affine: ``(4, 4)`` voxel-to-world affine; it decides the slice axis.
        interval: keep every ``interval``-th axial slice.
        offset: keep indices ``k % interval == offset`` (0-based, file order).
        source: file name for error messages.
        thick: acquired slices are slab means (see :func:`slab_means`).

    Returns:
        The :class:`Degraded` volume.

    Raises:
        InputError: no S/I axis (or oblique), or fewer than 2 acquired slices.
    """
    axis = find_slice_axis(affine, source)
    try:
        kept = kept_indices(reference.shape[axis], interval, offset).to(reference.device)
    except ValueError as error:
        raise InputError(f"{source}: {error}") from None
    acquired = reference.float()
    if thick:
        acquired = acquired.clone()
        acquired.index_copy_(axis, kept, slab_means(reference, axis, kept, interval))
    filled = fill_missing(acquired, axis, kept, "linear")
    known = known_volume(tuple(reference.shape), axis, kept.cpu()).to(reference.device).bool()
    return Degraded(filled, known, axis, kept, interval, offset)


class Degrade(tio.Transform):
    """Keep every ``interval``-th axial slice of ``target`` and fill the rest by linear interpolation.

    The slice axis comes from the affine (S/I), kept indices ``k % interval == offset`` are counted in
    the file's own voxel order, so this must run before any reorientation. Adds ``input`` (ScalarImage,
    the interpolated volume, (1, X, Y, Z)) and ``known`` (LabelMap, 1 on acquired slices) and stores
    the slice axis, interval, offset and thick flag as subject attributes.

    Args:
        interval: default interval.
        offset: default offset, in [0, interval).
        intervals: if given, draw the interval per call from these (training).
        random_offset: draw the offset per call from [0, interval) (training).
        thick: acquired slices are slab means over ``interval`` slices (see :func:`degrade`).
    """

    def __init__(self, interval: int = 5, offset: int = 0, intervals: Sequence[int] = (),
                 random_offset: bool = False, thick: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.interval, self.offset, self.thick = interval, offset, thick
        self.intervals, self.random_offset = list(intervals), random_offset
        self.args_names = ["interval", "offset", "intervals", "random_offset", "thick"]

    def _draw(self) -> tuple[int, int]:
        interval = self.interval
        if self.intervals:
            interval = self.intervals[int(torch.randint(len(self.intervals), ()).item())]
        offset = int(torch.randint(interval, ()).item()) if self.random_offset else self.offset
        return interval, offset

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        target = subject[TARGET]
        interval, offset = self._draw()
        sparse = degrade(target.data[0], target.affine, interval, offset, subject.get(PATH, "subject"), self.thick)
        subject.add_image(tio.ScalarImage(tensor=sparse.input[None], affine=target.affine), INPUT)
        subject.add_image(tio.LabelMap(tensor=sparse.known[None].to(torch.uint8), affine=target.affine), KNOWN)
        subject[SLICE_AXIS], subject[INTERVAL], subject[OFFSET] = sparse.axis, interval, offset
        subject[THICK] = self.thick
        return subject
