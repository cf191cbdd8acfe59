from __future__ import annotations

import numpy as np
import pytest
import torch
import torchio as tio

from inpaint.constants import INPUT, KNOWN, SLICE_AXIS, TARGET
from inpaint.data.degrade import Degrade
from inpaint.data.io import InputError
from inpaint.data.transforms import SliceAxisLast
from inpaint.geometry import permute_volume, slice_last_permutation
from tests.inpaint.test_interpolate import numpy_linear

LAS = np.diag([-1.0, 1.0, 1.0, 1.0])
AXIAL_FIRST = np.array([[0, 1.0, 0, 0], [0, 0, 1.0, 0], [1.0, 0, 0, 0], [0, 0, 0, 1]])  # voxel axis 0 is S


def subject(data: np.ndarray, affine: np.ndarray) -> tio.Subject:
    return tio.Subject({TARGET: tio.ScalarImage(tensor=torch.from_numpy(data)[None], affine=affine)})


@pytest.mark.parametrize("affine, axis", [(np.eye(4), 2), (LAS, 2), (AXIAL_FIRST, 0)])
@pytest.mark.parametrize("offset", [0, 3])
def test_kept_slices_exact_and_fill_is_numpy_linear(affine, axis, offset):
    data = np.random.default_rng(0).normal(size=(12, 11, 13)).astype(np.float32)
    out = Degrade(interval=4, offset=offset)(subject(data, affine))
    assert out[SLICE_AXIS] == axis
    kept = np.arange(offset, data.shape[axis], 4)
    filled = out[INPUT].data[0].numpy()
    np.testing.assert_array_equal(np.take(filled, kept, axis), np.take(data, kept, axis))
    np.testing.assert_allclose(filled, numpy_linear(data, axis, kept), atol=1e-5)
    known = out[KNOWN].data[0].numpy()
    assert np.all(np.take(known, kept, axis) == 1) and known.sum() == data.size // data.shape[axis] * len(kept)


def test_random_interval_and_offset_are_drawn_from_the_options():
    data = np.random.default_rng(1).normal(size=(10, 10, 30)).astype(np.float32)
    torch.manual_seed(0)
    seen = set()
    for _ in range(40):
        out = Degrade(intervals=[2, 3], random_offset=True)(subject(data, np.eye(4)))
        seen.add((out["interval"], out["offset"]))
    assert {i for i, _ in seen} == {2, 3} and all(0 <= o < i for i, o in seen) and len(seen) >= 4


def test_interval_larger_than_the_volume_is_a_clear_error():
    data = np.ones((8, 8, 6), np.float32)
    s = subject(data, np.eye(4))
    s["path"] = "thin.nii.gz"
    with pytest.raises(InputError, match="thin.nii.gz"):
        Degrade(interval=7)(s)


def test_slice_axis_last_moves_data_and_affine_together():
    data = np.random.default_rng(2).normal(size=(6, 7, 8)).astype(np.float32)
    out = SliceAxisLast()(Degrade(interval=2)(subject(data, AXIAL_FIRST)))
    assert out[TARGET].shape[1:] == (7, 8, 6)
    # the world position of a voxel is unchanged by the permutation
    moved, affine = permute_volume(torch.from_numpy(data)[None], AXIAL_FIRST, slice_last_permutation(0))
    np.testing.assert_allclose(affine @ [1, 2, 3, 1], AXIAL_FIRST @ [3, 1, 2, 1])
    assert moved[0, 1, 2, 3] == data[3, 1, 2]


@pytest.mark.parametrize("affine, axis", [(np.eye(4), 2), (AXIAL_FIRST, 0)])
@pytest.mark.parametrize("interval", [4, 5])
def test_thick_slices_are_slab_means_and_the_rest_is_their_linear_fill(affine, axis, interval):
    data = np.random.default_rng(2).normal(size=(12, 11, 13)).astype(np.float32)
    out = Degrade(interval=interval, offset=1, thick=True)(subject(data, affine))
    kept = np.arange(1, data.shape[axis], interval)
    moved = np.moveaxis(data, axis, 0)
    slabs = np.stack([moved[max(0, k - (interval - 1) // 2): k + interval // 2 + 1].mean(0) for k in kept])
    acquired = np.moveaxis(data, axis, 0).copy()
    acquired[kept] = slabs
    acquired = np.moveaxis(acquired, 0, axis)
    filled = out[INPUT].data[0].numpy()
    np.testing.assert_allclose(np.take(filled, kept, axis), np.moveaxis(slabs, 0, axis), atol=1e-5)
    np.testing.assert_allclose(filled, numpy_linear(acquired, axis, kept), atol=1e-5)
    assert not np.allclose(np.take(filled, kept, axis), np.take(data, kept, axis))  # thin != thick
    np.testing.assert_array_equal(out[TARGET].data[0].numpy(), data)  # the target stays the thin reference
