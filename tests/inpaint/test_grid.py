"""inpaint.grid: fill factors, axis resampling (voxel 0 kept, linear, anti-aliased) and affines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inpaint.grid import fill_factor, resample_axis, resampled_length, to_spacing


@pytest.mark.parametrize(("spacing", "factor"), [(5.0, 5), (4.4, 4), (5.5, 6), (6.0, 6), (3.0, 3), (1.6, 2)])
def test_fill_factor_is_the_nearest_integer_ratio(spacing, factor):
    assert fill_factor(spacing, 1.0) == factor


def test_fill_factor_refuses_slices_at_the_output_spacing():
    with pytest.raises(ValueError, match="nothing to fill"):
        fill_factor(1.4, 1.0)


@pytest.mark.parametrize(("spacing", "new"), [(1.1, 1.0), (0.5, 1.0), (1.0, 0.9)])
def test_resampling_keeps_voxel_0_and_a_linear_ramp(spacing, new):
    n = 41
    ramp = torch.arange(n, dtype=torch.float64) * spacing  # world position in mm along axis 1
    volume = ramp.view(1, -1, 1).expand(3, n, 2).contiguous()
    out = resample_axis(volume, 1, spacing, new)
    m = resampled_length(n, spacing, new)
    assert out.shape == (3, m, 2) and (m - 1) * new <= (n - 1) * spacing < m * new
    inner = slice(3, m - 3)  # the anti-aliasing filter replicates the edges
    expected = torch.arange(m, dtype=torch.float64) * new
    torch.testing.assert_close(out[0, inner, 0], expected[inner])
    assert float(out[0, 0, 0]) == pytest.approx(0.0, abs=0.3 * spacing)


def test_coarsening_is_anti_aliased():
    stripes = torch.tensor([0.0, 1.0] * 50).view(1, 1, -1)  # the finest pattern at 0.5 mm
    plain = stripes[..., ::2]  # what sampling every 1 mm without a filter sees: all zeros
    filtered = resample_axis(stripes, 2, 0.5, 1.0)
    assert float(plain.std()) == 0 and abs(float(filtered[..., 5:-5].mean()) - 0.5) < 0.1  # alias 0.5 -> 0.07


def test_to_spacing_rescales_the_affine_columns_and_keeps_close_axes():
    affine = np.array([[0, 0, 2.0, 10], [0.95, 0, 0, -5], [0, 1.005, 0, 3], [0, 0, 0, 1]])
    volume = torch.rand(20, 30, 10)
    out, new = to_spacing(volume, affine, {0: 1.0, 1: 1.0, 2: 1.0})
    assert out.shape == (resampled_length(20, 0.95, 1.0), 30, 19)  # 1.005 mm is within 2 %: kept
    np.testing.assert_allclose(np.linalg.norm(new[:3, :3], axis=0), [1.0, 1.005, 1.0])
    np.testing.assert_allclose(new[:, 3], affine[:, 3])
    np.testing.assert_allclose(new[:3, :3] / np.linalg.norm(new[:3, :3], axis=0),
                               affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0))
