"""The slice degradation (PROTOCOL.md) as a TorchIO transform: adds ``input`` and ``known`` to a subject."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchio as tio

from inpaint.constants import INPUT, INTERVAL, KNOWN, OFFSET, PATH, SLICE_AXIS, TARGET
from inpaint.data.io import InputError
from inpaint.interpolate import fill_missing, kept_indices, slice_axis


def known_volume(shape: Sequence[int], axis: int, kept: torch.Tensor) -> torch.Tensor:
    """A (X, Y, Z) uint8 volume that is 1 on the acquired slices ``kept`` along ``axis``."""
    line = torch.zeros(shape[axis], dtype=torch.uint8)
    line[kept] = 1
    view = [1, 1, 1]
    view[axis] = -1
    return line.view(view).expand(*shape).contiguous()


class Degrade(tio.Transform):
    """Keep every ``interval``-th axial slice of ``target`` and fill the rest by linear interpolation.

    The slice axis comes from the affine (S/I), kept indices ``k % interval == offset`` are counted in
    the file's own voxel order, so this must run before any reorientation. Adds ``input`` (ScalarImage,
    the interpolated volume, (1, X, Y, Z)) and ``known`` (LabelMap, 1 on acquired slices) and stores
    the slice axis, interval and offset as subject attributes.

    Args:
        interval: default interval.
        offset: default offset, in [0, interval).
        intervals: if given, draw the interval per call from these (training).
        random_offset: draw the offset per call from [0, interval) (training).
    """

    def __init__(self, interval: int = 5, offset: int = 0, intervals: Sequence[int] = (),
                 random_offset: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.interval, self.offset = interval, offset
        self.intervals, self.random_offset = list(intervals), random_offset
        self.args_names = ["interval", "offset", "intervals", "random_offset"]

    def _draw(self) -> tuple[int, int]:
        interval = self.interval
        if self.intervals:
            interval = self.intervals[int(torch.randint(len(self.intervals), ()).item())]
        offset = int(torch.randint(interval, ()).item()) if self.random_offset else self.offset
        return interval, offset

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        source = subject.get(PATH, "subject")
        target = subject[TARGET]
        try:
            axis = slice_axis(target.affine, source)
        except ValueError as error:
            raise InputError(str(error)) from None
        interval, offset = self._draw()
        n = target.shape[1 + axis]
        try:
            kept = kept_indices(n, interval, offset)
        except ValueError as error:
            raise InputError(f"{source}: {error}") from None
        filled = fill_missing(target.data[0].float(), axis, kept, "linear")
        subject.add_image(tio.ScalarImage(tensor=filled[None], affine=target.affine), INPUT)
        known = known_volume(filled.shape, axis, kept)
        subject.add_image(tio.LabelMap(tensor=known[None], affine=target.affine), KNOWN)
        subject[SLICE_AXIS], subject[INTERVAL], subject[OFFSET] = axis, interval, offset
        return subject
