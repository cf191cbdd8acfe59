"""inpaint.skull: the signs of a whole head, none on skull-stripped brains."""

from __future__ import annotations

import pytest
import torch

from inpaint.skull import head_signs
from tests.conftest import phantom


def test_a_skull_stripped_brain_shows_no_sign():
    assert head_signs(torch.from_numpy(phantom()), [0.87, 0.87, 1.0]) == []


def test_a_noisy_background_is_a_sign():
    volume = torch.from_numpy(phantom()) + torch.rand(40, 44, 36) * 5  # air noise: no voxel is 0
    assert [s for s in head_signs(volume, [1.0, 1.0, 1.0]) if "are 0" in s]


@pytest.mark.parametrize(("spacing", "needle"), [([1.0, 1.0, 1.0], "cm²"), ([1.0, 1.0, 5.0], "mL")])
def test_a_head_sized_nonzero_region_is_a_sign(spacing, needle):
    head = torch.zeros(200, 240, 40)
    head[10:190, 20:170, :] = 100.0  # 270 cm² per slice over 40 slices: 1,080 mL at 1 mm, 5,400 mL at 5 mm
    signs = head_signs(head, spacing)
    assert any(needle in s for s in signs), signs
    if spacing[2] == 1.0:
        assert not any("mL" in s for s in signs)  # partial coverage: the volume alone would miss it
