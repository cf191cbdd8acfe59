"""inpaint.morphometry.distance_thickness on shells of known width (numpy and scipy only; no ANTs)."""

from __future__ import annotations

import numpy as np
import pytest

from inpaint.morphometry import MAX_THICKNESS_MM, distance_thickness
from inpaint.segment import TISSUES


def shell(spacing: tuple[float, float, float], inner: float, outer: float, size_mm: float = 48.0) -> np.ndarray:
    """Labels of a WM ball (radius ``inner`` mm) in a GM shell up to ``outer`` mm, CSF beyond, in a box."""
    axes = [np.arange(0, size_mm, s) + s / 2 - size_mm / 2 for s in spacing]
    radius = np.linalg.norm(np.stack(np.meshgrid(*axes, indexing="ij"), -1), axis=-1)
    return np.where(radius < inner, TISSUES["wm"], np.where(radius < outer, TISSUES["gm"], TISSUES["csf"])).astype(np.uint8)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.868, 0.868, 1.0)])
@pytest.mark.parametrize("width", [2.0, 3.0, 4.5])
def test_the_thickness_of_a_shell_is_its_width(spacing, width):
    labels = shell(spacing, 12.0, 12.0 + width)
    thickness = distance_thickness(labels, spacing)
    # the nearest voxel of a voxelised surface lies a little closer than the surface: ~7 % short at 4.5 mm
    assert np.median(thickness[labels == TISSUES["gm"]]) == pytest.approx(width, rel=0.1)
    assert (thickness[labels != TISSUES["gm"]] == 0).all()


def test_grey_matter_far_from_any_white_matter_is_capped():
    labels = shell((1.0, 1.0, 1.0), 0.0, 20.0)  # a GM ball, no WM
    assert distance_thickness(labels, (1.0, 1.0, 1.0)).max() == MAX_THICKNESS_MM
