"""inpaint.geometry: the slice axis from the affine, the acquired slices and their mask."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from inpaint.geometry import kept_indices, known_mask, slice_axis, slice_last_permutation


def affine_from(columns: list[list[float]]) -> np.ndarray:
    """4x4 affine whose voxel axes 0, 1, 2 point along the given world (RAS) vectors."""
    affine = np.eye(4)
    affine[:3, :3] = np.array(columns, dtype=np.float64).T
    affine[:3, 3] = [10.0, -20.0, 30.0]
    return affine


def rotation_about_x(degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    rotation = np.eye(4)
    rotation[1:3, 1:3] = [[c, -s], [s, c]]
    return rotation


LAS = affine_from([[-0.87, 0, 0], [0, 0.87, 0], [0, 0, 1.0]])


@pytest.mark.parametrize(
    "affine, axis",
    [
        (LAS, 2),
        (affine_from([[1, 0, 0], [0, 1, 0], [0, 0, 1]]), 2),  # RAS
        (affine_from([[-1, 0, 0], [0, -1, 0], [0, 0, -1]]), 2),  # LPI: I counts too
        (affine_from([[0, 0, 1.2], [1, 0, 0], [0, 1, 0]]), 0),  # axial slices stacked along the first axis
        (affine_from([[0, -1, 0], [0, 0, 1], [1, 0, 0]]), 1),  # PSR
        (rotation_about_x(10) @ LAS, 2),  # slightly oblique: still axial
        (rotation_about_x(-20) @ affine_from([[0, 0, 1], [1, 0, 0], [0, 1, 0]]), 0),
    ],
)
def test_slice_axis_follows_the_affine(affine, axis):
    assert slice_axis(affine) == axis


@pytest.mark.parametrize("degrees", [30, 45])
def test_oblique_slice_axis_is_a_clear_error(degrees):
    with pytest.raises(ValueError, match=rf"scan\.nii\.gz: .*oblique by {degrees} degrees.*reslice"):
        slice_axis(rotation_about_x(degrees) @ LAS, "scan.nii.gz")


@pytest.mark.parametrize("affine", [np.zeros((4, 4)), np.full((4, 4), np.nan), np.eye(3)])
def test_degenerate_affine_is_a_clear_error(affine):
    with pytest.raises(ValueError, match="bad.nii: "):
        slice_axis(affine, "bad.nii")


@pytest.mark.parametrize(
    "n, interval, offset, expected",
    [(12, 5, 0, [0, 5, 10]), (10, 5, 0, [0, 5]), (11, 3, 2, [2, 5, 8]), (4, 1, 0, [0, 1, 2, 3])],
)
def test_kept_indices_and_known_mask(n, interval, offset, expected):
    kept = kept_indices(n, interval, offset)
    assert kept.dtype == torch.long and kept.tolist() == expected
    assert known_mask(n, interval, offset).nonzero().flatten().tolist() == expected


@pytest.mark.parametrize(
    "n, interval, offset, message",
    [
        (10, 0, 0, "interval must be >= 1"),
        (10, 5, 5, r"offset must be in \[0, interval\)"),
        (10, 5, -1, "offset must be in"),
        (
            10,
            10,
            0,
            r"interval 10 with offset 0 leaves fewer than 2 acquired slices .* length 10; use an interval <= 9",
        ),
        (10, 8, 3, "use an interval <= 6"),
        (10, 8, 7, "use offset 0 and an interval <= 9"),
        (1, 1, 0, "at least 2 slices"),
    ],
)
def test_kept_indices_errors(n, interval, offset, message):
    with pytest.raises(ValueError, match=message):
        kept_indices(n, interval, offset)


@pytest.mark.parametrize(("codes", "frame"), [("LAS", (False, (False, False, False))), ("RAS", (False, (True, False, False))),
                                              ("LPS", (False, (False, True, False))), ("LIA", (False, (False, False, True))),
                                              ("ALS", (True, (False, False, False))), ("RPI", (False, (True, True, True)))])
def test_network_frame_turns_any_storage_into_the_learnt_one_and_back(codes, frame):
    from inpaint.geometry import from_network_frame, network_frame, to_network_frame

    ornt = nib.orientations.axcodes2ornt(tuple(codes))
    affine = np.eye(4)
    affine[:3, :3] = 0
    for voxel_axis, (world, sign) in enumerate(ornt):
        affine[int(world), voxel_axis] = sign * 0.9
    axis = slice_axis(affine)
    assert network_frame(affine, axis) == frame
    volume = torch.rand(5, 6, 7)
    assert torch.equal(from_network_frame(to_network_frame(volume, frame), frame), volume)
    assert network_frame(affine, axis, trained="".join(codes[a] for a in slice_last_permutation(axis))) == \
        (False, (False, False, False))  # a model that learnt this storage sees it as it is
