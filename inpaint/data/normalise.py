"""Per-subject intensity scaling to about [-1, 1] with a factor from the acquired slices only.

``x_norm = 2 (x - low) / (high - low) - 1`` with ``low`` the minimum and ``high`` the 99.5th
percentile of acquired brain voxels. Nothing is clipped (PROTOCOL.md, "intensities"), so the
mapping is exactly invertible and outputs return to the reference's units.
"""

from __future__ import annotations

import numpy as np
import torch
import torchio as tio

from inpaint.constants import INPUT, KNOWN, MASK, PATH, SCALE, TARGET
from inpaint.data.io import InputError

HIGH_PERCENTILE = 99.5


def acquired_scale(volume: torch.Tensor, known: torch.Tensor, mask: torch.Tensor, source: str = "") -> tuple[float, float]:
    """(low, high) from voxels on acquired slices (``known``) inside the brain ``mask``; all (X, Y, Z)."""
    values = volume[(known > 0) & (mask > 0)]
    if values.numel() == 0:
        raise InputError(f"{source}: no brain voxels on the acquired slices; check the mask and the slice axis")
    values = values.double().cpu().numpy()
    low, high = float(values.min()), float(np.percentile(values, HIGH_PERCENTILE))
    if high <= low:
        raise InputError(f"{source}: the acquired slices are constant inside the brain ({low}); is this an image?")
    return low, high


def normalise(x: torch.Tensor, scale: tuple[float, float]) -> torch.Tensor:
    low, high = scale
    return (x - low) * (2.0 / (high - low)) - 1.0


def denormalise(y: torch.Tensor, scale: tuple[float, float]) -> torch.Tensor:
    low, high = scale
    return (y + 1.0) * ((high - low) / 2.0) + low


class Normalise(tio.Transform):
    """Scale ``input`` and ``target`` with the acquired-slice factor; store it as ``subject['scale']``."""

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        scale = acquired_scale(subject[INPUT].data[0], subject[KNOWN].data[0], subject[MASK].data[0],
                               subject.get(PATH, "subject"))
        for key in (INPUT, TARGET):
            subject[key].set_data(normalise(subject[key].data.float(), scale))
        subject[SCALE] = scale
        return subject
