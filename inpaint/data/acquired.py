"""The acquired-slice grid: training subjects for generators that compute on the acquired slices only.

After degradation, normalisation and ``SliceAxisLast`` a subject holds full-resolution ``input``,
``known``, ``target`` and ``mask``. ``AcquiredGrid`` replaces them by images on the grid of the K
acquired slices, so that TorchIO's sampler and queue cut patches aligned to acquired slices:

- ``acquired`` (1, X, Y, K): the acquired slices (thin, or slab means for thick slices);
- ``gaps`` (S, X, Y, K): channel m is the reference slice m slices after acquired slice j (m = 0 is the
  acquired position itself), zero where no such slice exists; the loss uses the channels m < interval
  (``InpaintingModule.acquired_step``);
- ``mask`` (1, X, Y, K): brain anywhere from acquired slice j to the next one.

The subject keeps ``interval`` and ``thick``, which say which channels of ``gaps`` are targets.
"""

from __future__ import annotations

import torch
import torchio as tio

from inpaint.constants import ACQUIRED, GAPS, INPUT, INTERVAL, KNOWN, MASK, PATH, TARGET
from inpaint.data.io import InputError
from inpaint.geometry import acquired_slices


def gap_targets(target: torch.Tensor, kept: torch.Tensor, slots: int) -> torch.Tensor:
    """(X, Y, Z) reference -> (slots, X, Y, K): channel m holds slice ``kept + m`` (0 beyond the volume)."""
    index = kept[None, :] + torch.arange(slots)[:, None]  # (slots, K)
    inside = index < target.shape[-1]
    values = target[..., index.clamp(max=target.shape[-1] - 1)]  # (X, Y, slots, K)
    return (values * inside.to(values.dtype)).permute(2, 0, 1, 3).contiguous()


def gap_mask(mask: torch.Tensor, kept: torch.Tensor, interval: int, axis: int = -1) -> torch.Tensor:
    """Brain mask -> bool, with ``axis`` (the slice axis, last by default: (X, Y, Z) -> (X, Y, K)) cut to the K
    acquired slices: brain in any slice from acquired slice j to the next one. One slice gather per offset, so a
    slice-major (Z, X, Y) mask with ``axis=0`` (``inpaint.data.resident``) gathers whole slices as blocks."""
    last = mask.shape[axis] - 1
    allowed = mask.index_select(axis, kept) > 0
    for m in range(1, interval + 1):
        allowed |= mask.index_select(axis, (kept + m).clamp(max=last)) > 0
    return allowed


class AcquiredGrid(tio.Transform):
    """Move a prepared subject (slice axis last, normalised) onto its acquired-slice grid (module docstring).

    Args:
        slots: channels of ``gaps``: the largest interval trained on.
    """

    def __init__(self, slots: int = 8, **kwargs) -> None:
        super().__init__(**kwargs)
        self.slots = slots
        self.args_names = ["slots"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        source = subject.get(PATH, "subject")
        kept, spacing = acquired_slices(subject[KNOWN].data[0], source)
        if spacing != subject[INTERVAL]:
            raise InputError(f"{source}: acquired slices are {spacing} apart, not interval {subject[INTERVAL]}")
        if spacing > self.slots:
            raise InputError(f"{source}: interval {spacing} is larger than the {self.slots} gap slots; raise the slots")
        affine = subject[TARGET].affine.copy()
        affine[:3, 3] += affine[:3, 2] * float(kept[0])
        affine[:3, 2] *= spacing
        acquired = subject[INPUT].data[..., kept]
        gaps = gap_targets(subject[TARGET].data[0], kept, self.slots)
        brain = gap_mask(subject[MASK].data[0], kept, spacing)
        for key in (INPUT, KNOWN, TARGET, MASK):
            subject.remove_image(key)
        subject.add_image(tio.ScalarImage(tensor=acquired.contiguous(), affine=affine), ACQUIRED)
        subject.add_image(tio.ScalarImage(tensor=gaps, affine=affine), GAPS)
        subject.add_image(tio.LabelMap(tensor=brain[None].to(torch.uint8), affine=affine), MASK)
        return subject
