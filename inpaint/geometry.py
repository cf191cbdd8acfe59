"""Slice geometry (PROTOCOL.md): the slice axis, the acquired slices, their mask, the slice-last layout, spacing.

Pure functions on affines and tensors. Slices are counted in the file's own voxel order, 0-based,
before any reorientation; the networks see volumes with the slice axis last.
"""

from __future__ import annotations

from collections.abc import Sequence

import nibabel as nib
import numpy as np
import torch

from inpaint.data.io import InputError

# Smallest |cos| between the S/I voxel axis and the world's S/I direction: about 25.8 degrees of obliqueness.
MIN_COSINE = 0.9


def slice_axis(affine: np.ndarray, source: str = "") -> int:
    """Return the voxel axis whose direction in ``affine`` is S or I (the axial slice axis).

    Args:
        affine: ``(4, 4)`` voxel-to-world affine (RAS+ world, as nibabel reads it).
        source: name of the file, used in error messages.

    Returns:
        The axis (0, 1 or 2) of the voxel array along which the axial slices are stacked.

    Raises:
        ValueError: if no voxel axis maps to S/I, or that axis is oblique by more than ~25 degrees.

    Example:
        >>> slice_axis(np.diag([-1.0, 1.0, 1.0, 1.0]))  # LAS
        2
    """
    where = f"{source}: " if source else ""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise ValueError(
            f"{where}expected a finite 4x4 affine, got shape {affine.shape}; check the NIfTI header"
        )
    codes = nib.aff2axcodes(affine)
    axes = [i for i, code in enumerate(codes) if code in ("S", "I")]
    if len(axes) != 1:
        raise ValueError(
            f"{where}no voxel axis points S/I (axis codes {codes}); fix the header's qform/sform or "
            "reslice the image to an axial grid before degrading it"
        )
    axis = axes[0]
    column = affine[:3, axis]
    cosine = abs(column[2]) / np.linalg.norm(column)
    if cosine < MIN_COSINE:
        degrees = np.degrees(np.arccos(min(cosine, 1.0)))
        raise ValueError(
            f"{where}the S/I voxel axis {axis} is oblique by {degrees:.0f} degrees (more than "
            f"{np.degrees(np.arccos(MIN_COSINE)):.0f}), so its slices are not axial; reslice the image to an "
            "axial grid first"
        )
    return axis


PLANES = {"L": "sagittal", "R": "sagittal", "A": "coronal", "P": "coronal", "S": "axial", "I": "axial"}
SPARSE_RATIO = 1.5  # an axis whose spacing is this many times the others' holds the acquired slices


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """(3,) voxel sizes in mm along the voxel axes: the lengths of the affine's first three columns."""
    return np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)


def sparse_axis(affine: np.ndarray) -> int | None:
    """The voxel axis of a 2D acquisition's slices: the one whose spacing is >= 1.5x both others' (None: no such axis).

    Example:
        >>> sparse_axis(np.diag([5.0, 1.0, 1.0, 1.0]))  # 5 mm along L/R: a sagittal acquisition
        0
    """
    zooms = voxel_sizes(affine)
    axis = int(np.argmax(zooms))
    others = np.delete(zooms, axis)
    return axis if zooms[axis] >= SPARSE_RATIO * others.max() else None


def acquisition_plane(affine: np.ndarray, axis: int) -> str:
    """``"sagittal"``, ``"coronal"`` or ``"axial"``: the plane of slices stacked along voxel ``axis``."""
    return PLANES[nib.aff2axcodes(affine)[axis]]


def find_slice_axis(affine: np.ndarray, source: str) -> int:
    """:func:`inpaint.interpolate.slice_axis` with an :class:`InputError` naming ``source``."""
    try:
        return slice_axis(affine, source)
    except ValueError as error:
        raise InputError(str(error)) from None


def kept_indices(n: int, interval: int, offset: int = 0) -> torch.Tensor:
    """Indices ``k`` of the acquired slices: ``k % interval == offset``, ``0 <= k < n``.

    Args:
        n: number of slices along the slice axis.
        interval: keep every ``interval``-th slice (``>= 1``).
        offset: index of the first kept slice, in ``[0, interval)``.

    Returns:
        ``(K,)`` int64 tensor of increasing indices, ``K >= 2``.

    Raises:
        ValueError: for a bad interval or offset, or fewer than 2 kept slices.

    Example:
        >>> kept_indices(12, 5).tolist()
        [0, 5, 10]
    """
    if interval < 1:
        raise ValueError(f"interval must be >= 1, got {interval}")
    if not 0 <= offset < interval:
        raise ValueError(f"offset must be in [0, interval) = [0, {interval}), got {offset}")
    kept = torch.arange(offset, n, interval, dtype=torch.long)
    if kept.numel() < 2:
        if n < 2:
            fix = "a volume with at least 2 slices along this axis"
        elif n - 1 - offset > offset:
            fix = f"an interval <= {n - 1 - offset}"
        else:
            fix = f"offset 0 and an interval <= {n - 1}"
        raise ValueError(
            f"interval {interval} with offset {offset} leaves fewer than 2 acquired slices along an axis of "
            f"length {n}; use {fix}"
        )
    return kept


def known_mask(n: int, interval: int, offset: int = 0) -> torch.Tensor:
    """``(n,)`` bool tensor, True on the acquired slices of :func:`kept_indices`."""
    known = torch.zeros(n, dtype=torch.bool)
    known[kept_indices(n, interval, offset)] = True
    return known


def known_volume(shape: Sequence[int], axis: int, kept: torch.Tensor) -> torch.Tensor:
    """A (X, Y, Z) uint8 volume that is 1 on the acquired slices ``kept`` along ``axis``."""
    line = torch.zeros(shape[axis], dtype=torch.uint8)
    line[kept] = 1
    view = [1, 1, 1]
    view[axis] = -1
    return line.view(view).expand(*shape).contiguous()


def slice_last_permutation(axis: int) -> list[int]:
    """Spatial permutation that moves ``axis`` to the end, keeping the other two in order."""
    return [a for a in range(3) if a != axis] + [axis]


def permute_volume(data: torch.Tensor, affine: np.ndarray, perm: list[int]) -> tuple[torch.Tensor, np.ndarray]:
    """Permute the spatial axes of (C, X, Y, Z) data and the matching affine columns (world coordinates kept)."""
    return data.permute(0, *[p + 1 for p in perm]).contiguous(), affine[:, [*perm, 3]]


def spacing_slice_last(affine: np.ndarray, axis: int) -> list[float]:
    zooms = voxel_sizes(affine)
    return [float(zooms[a]) for a in slice_last_permutation(axis)]


def acquired_slices(known: torch.Tensor, source: str = "volume") -> tuple[torch.Tensor, int]:
    """Indices of the acquired slices along the last axis of a ``(..., Z)`` mask, and their spacing.

    Raises:
        InputError: fewer than 2 acquired slices, or not evenly spaced.
    """
    line = known.reshape(-1, known.shape[-1]).amax(0) > 0
    kept = torch.nonzero(line)[:, 0]
    if kept.numel() < 2:
        raise InputError(f"{source}: fewer than 2 acquired slices; nothing to interpolate between")
    steps = kept.diff()
    if bool((steps != steps[0]).any()):
        raise InputError(f"{source}: acquired slices are not evenly spaced (steps {sorted(set(steps.tolist()))}); "
                         "resample the acquisition to an even slice spacing first")
    return kept, int(steps[0])




TRAINED_ORIENTATION = "LAS"  # voxel orientation the committed models learnt (ds002748 is stored LAS)


def network_frame(affine: np.ndarray, axis: int, trained: str = TRAINED_ORIENTATION) -> tuple[bool, tuple[bool, ...]]:
    """How to turn a slice-last (X, Y, Z) volume with ``affine`` into the voxel orientation a network learnt.

    Returns:
        (transpose the in-plane axes, then flip each axis): exact, undone by :func:`from_network_frame`.
        Networks are not flip-invariant: an LPS or LIA file seen as stored loses part of the gain.
    """
    columns = np.asarray(affine, dtype=np.float64)[:3, :3][:, slice_last_permutation(axis)]
    target = nib.orientations.axcodes2ornt(tuple(trained))  # per voxel axis: world axis (RAS), direction (+-1)
    transpose = int(np.abs(columns[:, 0]).argmax()) != int(target[0, 0])
    if transpose:
        columns = columns[:, [1, 0, 2]]
    signs = [np.sign(columns[int(world), k]) for k, world in enumerate(target[:, 0])]
    return transpose, tuple(bool(s != t) for s, t in zip(signs, target[:, 1], strict=True))


def to_network_frame(volume: torch.Tensor, frame: tuple[bool, tuple[bool, ...]]) -> torch.Tensor:
    """(X, Y, Z) slice-last -> the network's voxel orientation (``network_frame``)."""
    transpose, flips = frame
    volume = volume.transpose(0, 1) if transpose else volume
    dims = [d for d, flip in enumerate(flips) if flip]
    return volume.flip(dims) if dims else volume


def from_network_frame(volume: torch.Tensor, frame: tuple[bool, tuple[bool, ...]]) -> torch.Tensor:
    """Undo :func:`to_network_frame`."""
    transpose, flips = frame
    dims = [d for d, flip in enumerate(flips) if flip]
    volume = volume.flip(dims) if dims else volume
    return volume.transpose(0, 1) if transpose else volume
