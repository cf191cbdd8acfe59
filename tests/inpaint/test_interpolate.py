"""inpaint.interpolate: linear and cubic fills along the slice axis, and sparse_to_dense."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.interpolate import make_interp_spline

from inpaint.geometry import kept_indices
from inpaint.interpolate import fill_missing, sparse_to_dense


def numpy_linear(volume: np.ndarray, axis: int, kept: np.ndarray) -> np.ndarray:
    """``np.interp`` along ``axis``, one voxel column at a time (edges copy the nearest kept slice)."""
    moved = np.moveaxis(volume, axis, -1)
    out = np.empty_like(moved)
    for index in np.ndindex(moved.shape[:-1]):
        out[index] = np.interp(np.arange(moved.shape[-1]), kept, moved[index][kept])
    return np.moveaxis(out, -1, axis)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
@pytest.mark.parametrize("interval, offset", [(5, 0), (3, 2), (4, 1)])
def test_linear_fill_is_numpy_interp_per_voxel_column(axis, interval, offset):
    volume = np.random.default_rng(axis % 3 + 10 * offset).normal(size=(13, 11, 12))
    kept = kept_indices(volume.shape[axis], interval, offset)
    filled = fill_missing(torch.from_numpy(volume), axis, kept)
    assert filled.shape == volume.shape and filled.dtype == torch.float64
    np.testing.assert_array_equal(np.take(filled.numpy(), kept, axis), np.take(volume, kept, axis))
    np.testing.assert_allclose(
        filled.numpy(), numpy_linear(volume, axis % 3, kept.numpy()), rtol=0, atol=1e-12
    )


def test_linear_edges_copy_the_nearest_kept_slice():
    volume = torch.arange(10.0).view(1, 1, 10).expand(2, 3, 10)
    filled = fill_missing(volume, 2, torch.tensor([3, 5, 7]))
    assert filled[0, 0].tolist() == [3, 3, 3, 3, 4, 5, 6, 7, 7, 7]


def test_linear_works_on_batched_tensors_and_keeps_float32():
    volume = torch.randn(2, 3, 9, 8, 11)
    kept = kept_indices(11, 4, 1)
    filled = fill_missing(volume, -1, kept)
    assert filled.dtype == torch.float32 and filled.shape == volume.shape
    for b in range(2):
        for c in range(3):
            torch.testing.assert_close(filled[b, c], fill_missing(volume[b, c], 2, kept))
    assert fill_missing(torch.ones(4, 4, 6, dtype=torch.int16), 2, kept_indices(6, 5)).dtype == torch.float32


def test_cubic_is_scipy_not_a_knot_spline_with_edge_copy():
    rng = np.random.default_rng(3)
    volume = rng.normal(size=(4, 5, 23))
    kept = kept_indices(23, 5, 2)  # 2, 7, 12, 17, 22
    filled = fill_missing(torch.from_numpy(volume), 2, kept, "cubic").numpy()
    spline = make_interp_spline(kept.numpy(), volume[..., kept.numpy()], k=3, axis=2)
    np.testing.assert_allclose(filled[..., 2:23], spline(np.arange(2, 23)), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(filled[..., :2], volume[..., [2, 2]])
    np.testing.assert_array_equal(filled[..., kept.numpy()], volume[..., kept.numpy()])
    # a cubic polynomial along the axis is reproduced exactly (a linear fill would not)
    z = np.arange(23.0)
    cubic = np.broadcast_to(0.01 * (z - 12) ** 3 - 0.2 * z**2 + z, (3, 2, 23))
    recovered = fill_missing(torch.from_numpy(cubic.copy()), 2, kept, "cubic").numpy()
    np.testing.assert_allclose(recovered[..., 2:], cubic[..., 2:], atol=1e-10)
    assert (
        np.abs(fill_missing(torch.from_numpy(cubic.copy()), 2, kept).numpy()[..., 2:] - cubic[..., 2:]).max()
        > 0.5
    )


def test_cubic_needs_four_kept_slices_and_bad_arguments_fail():
    volume = torch.randn(3, 3, 12)
    with pytest.raises(ValueError, match="at least 4 acquired slices, got 3; use method='linear'"):
        fill_missing(volume, 2, kept_indices(12, 5), "cubic")
    with pytest.raises(ValueError, match="unknown interpolation method 'spline'"):
        fill_missing(volume, 2, kept_indices(12, 5), "spline")
    with pytest.raises(ValueError, match="strictly increasing"):
        fill_missing(volume, 2, torch.tensor([5, 0]))
    with pytest.raises(ValueError, match=r"in \[0, 12\)"):
        fill_missing(volume, 2, torch.tensor([0, 12]))
    with pytest.raises(ValueError, match="axis 3 is out of range"):
        fill_missing(volume, 3, torch.tensor([0, 2]))


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("method", ["linear", "cubic"])
def test_sparse_to_dense_places_acquired_slices_at_multiples_of_the_interval(axis, method):
    dense_shape = [6, 7, 8]
    dense_shape[axis] = 4 * 5 + 1
    dense = torch.randn(dense_shape, dtype=torch.float64)
    kept = kept_indices(dense_shape[axis], 5)
    sparse = dense.index_select(axis, kept)
    out = sparse_to_dense(sparse, axis, 5, method)
    assert out.shape == dense.shape
    torch.testing.assert_close(out.index_select(axis, kept), sparse, rtol=0, atol=0)
    torch.testing.assert_close(out, fill_missing(dense, axis, kept, method))


def test_sparse_to_dense_small_cases():
    assert sparse_to_dense(torch.tensor([0.0, 10.0]), 0, 5).tolist() == [0, 2, 4, 6, 8, 10]
    torch.testing.assert_close(
        sparse_to_dense(torch.arange(6.0).view(2, 3), 1, 1), torch.arange(6.0).view(2, 3)
    )
    with pytest.raises(ValueError, match="at least 2 acquired slices"):
        sparse_to_dense(torch.ones(3, 3, 1), 2, 5)
