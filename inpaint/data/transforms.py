"""Subject transforms around the degradation: checks + brain mask, slice axis last, patch centres, crops."""

from __future__ import annotations

import numpy as np
import torch
import torchio as tio

from inpaint.constants import MASK, MASK_GIVEN, PATH, SAMPLING, SLICE_AXIS, TARGET
from inpaint.data.io import InputError
from inpaint.geometry import permute_volume, slice_last_permutation


def brain_mask(reference: torch.Tensor, mask: torch.Tensor | None = None, source: str = "volume") -> torch.Tensor:
    """PROTOCOL.md's brain mask: ``mask > 0`` if a mask is given, else ``reference > 0``; (X, Y, Z) bool.

    Raises:
        InputError: mask on another grid, or an empty mask.
    """
    if mask is not None and mask.shape != reference.shape:
        raise InputError(f"{source}: mask shape {tuple(mask.shape)} != image shape {tuple(reference.shape)}; "
                         "give the mask on the image's grid")
    brain = (mask if mask is not None else reference) > 0
    if not brain.any():
        raise InputError(f"{source}: the brain mask is empty; give a mask file or a skull-stripped image with brain > 0")
    return brain


class PrepareVolume(tio.Transform):
    """Sets ``mask`` to :func:`brain_mask` (target > 0 when no mask file was given), as uint8, and ``mask_given``."""

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        target = subject[TARGET]
        given = subject[MASK].data[0] if MASK in subject else None
        subject[MASK_GIVEN] = given is not None
        brain = brain_mask(target.data[0], given, subject.get(PATH, "subject"))[None].to(torch.uint8)
        if MASK in subject:
            subject[MASK].set_data(brain)
        else:
            subject.add_image(tio.LabelMap(tensor=brain, affine=target.affine), MASK)
        return subject


class SliceAxisLast(tio.Transform):
    """Transpose every image so the slice (S/I) axis is the last array axis: the network sees one layout."""

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        perm = slice_last_permutation(subject[SLICE_AXIS])
        if perm != [0, 1, 2]:
            for image in subject.get_images(intensity_only=False):
                data, affine = permute_volume(image.data, image.affine, perm)
                image.set_data(data)
                image.affine = affine
        return subject


Size = int | tuple[int, int, int]


def _per_axis(size: Size | None) -> tuple:
    return tuple(size) if isinstance(size, (tuple, list)) else (size,) * 3


def lattice_mask(mask: torch.Tensor, patch_size: Size, stride: Size | None) -> torch.Tensor:
    """(X, Y, Z) bool: brain voxels that can centre a whole patch, on a ``stride`` lattice if given.

    ``patch_size`` and ``stride`` are one value or one per axis (a stride of None or 0 on an axis: any
    position). TorchIO puts a patch of size p at [c - p // 2, c - p // 2 + p), so centres run from
    p // 2 to n - p + p // 2.
    """
    keep = mask > 0
    for axis, (n, size, step) in enumerate(zip(mask.shape, _per_axis(patch_size), _per_axis(stride), strict=True)):
        half = size // 2
        line = torch.zeros(n, dtype=torch.bool, device=mask.device)
        line[half : n - (size - half) + 1] = True
        if step:
            line &= (torch.arange(n, device=mask.device) - half) % step == 0
        view = [1, 1, 1]
        view[axis] = -1
        keep = keep & line.view(view)
    return keep


def check_fits(shape: tuple[int, ...], patch_size: Size, source: str) -> None:
    if any(n < p for n, p in zip(shape, _per_axis(patch_size), strict=True)):
        raise InputError(f"{source}: volume {tuple(shape)} is smaller than the training patch {_per_axis(patch_size)}; "
                         "use a smaller data.patch_size (or data.patch_slices) or pad the volume")


class PatchCentres(tio.Transform):
    """Adds ``sampling``: a LabelMap of allowed patch centres (brain voxels on the stride lattice).

    ``patch_size`` and ``stride``: one value or one per axis (see :func:`lattice_mask`).
    """

    def __init__(self, patch_size: Size = 32, stride: Size | None = 16, **kwargs) -> None:
        super().__init__(**kwargs)
        self.patch_size, self.stride = patch_size, stride
        self.args_names = ["patch_size", "stride"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        mask = subject[MASK]
        check_fits(mask.shape[1:], self.patch_size, subject.get(PATH, "subject"))
        centres = lattice_mask(mask.data[0], self.patch_size, self.stride)
        if not centres.any():  # a tiny brain between lattice points: fall back to any brain voxel
            centres = lattice_mask(mask.data[0], self.patch_size, None)
        subject.add_image(tio.LabelMap(tensor=centres[None].to(torch.uint8), affine=mask.affine), SAMPLING)
        return subject


class CropAroundBrain(tio.Transform):
    """Crop every image to at most ``size`` voxels per axis around the brain's centre (quick validation)."""

    def __init__(self, size: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.size = size
        self.args_names = ["size"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        mask = subject[MASK].data[0]
        centre = torch.nonzero(mask).float().mean(0).round().long().tolist()
        starts, crop = [], []
        for c, n in zip(centre, mask.shape, strict=True):
            size = min(self.size, n)
            start = int(np.clip(c - size // 2, 0, n - size))
            starts.append(start)
            crop.append(slice(start, start + size))
        # by hand: tio.Crop would drop the subject's non-image attributes (scale, slice axis, ...)
        for image in subject.get_images(intensity_only=False):
            affine = image.affine.copy()
            affine[:3, 3] = affine[:3, :3] @ np.array(starts, dtype=float) + affine[:3, 3]
            image.set_data(image.data[(slice(None), *crop)].contiguous())
            image.affine = affine
        return subject
