"""The acquired-slice grid: gap targets line up with the positions the generator emits."""

from __future__ import annotations

import pytest
import torch
import torchio as tio

from inpaint.constants import ACQUIRED, GAPS, INTERVAL, MASK, TARGET
from inpaint.data.acquired import AcquiredGrid, gap_mask, gap_targets
from inpaint.data.degrade import Degrade
from inpaint.data.io import InputError
from inpaint.data.normalise import Normalise
from inpaint.data.transforms import PrepareVolume, SliceAxisLast
from inpaint.geometry import acquired_slices
from models.slice_resnet import SliceResNet


def prepared(volume: torch.Tensor, interval: int, offset: int, thick: bool = False) -> tio.Subject:
    subject = tio.Subject(target=tio.ScalarImage(tensor=volume[None]), path="phantom")
    for transform in (PrepareVolume(), Degrade(interval, offset, thick=thick), Normalise(), SliceAxisLast()):
        subject = transform(subject)
    return subject


@pytest.mark.parametrize(("interval", "offset"), [(5, 0), (3, 2), (8, 1)])
def test_gap_channels_are_the_reference_slices_after_each_acquired_one(interval, offset):
    volume = torch.rand(12, 10, 41) + 1
    subject = prepared(volume, interval, offset)
    target = subject[TARGET].data[0].clone()
    grid = AcquiredGrid(slots=8)(subject)
    kept = torch.arange(offset, 41, interval)
    assert grid[ACQUIRED].data.shape == (1, 12, 10, len(kept))
    assert torch.equal(grid[ACQUIRED].data[0], target[..., kept])  # thin: acquired slices are the reference
    for m in range(8):
        for j, k in enumerate(kept.tolist()):
            expected = target[..., k + m] if k + m < 41 else torch.zeros(12, 10)
            assert torch.equal(grid[GAPS].data[m, ..., j], expected)
    assert grid[INTERVAL] == interval and TARGET not in grid and grid[MASK].data.shape[-1] == len(kept)


def test_untrained_generator_emits_the_linear_interpolation_at_every_gap_slot():
    volume = torch.rand(16, 16, 36) + 1
    subject = prepared(volume, 5, 0)
    linear = subject["input"].data[0].clone()
    grid = AcquiredGrid(slots=8)(subject)
    net = SliceResNet(features=4, blocks=1)
    slots = torch.arange(1, 5)
    out = net(grid[ACQUIRED].data[None], torch.tensor([5.0]), slots[None] / 5.0)[0, 0]  # (X, Y, K, S)
    kept = torch.arange(0, 36, 5)
    for s, m in enumerate(slots.tolist()):
        for j in range(len(kept) - 1):
            torch.testing.assert_close(out[..., j, s], linear[..., kept[j] + m])


def test_gap_mask_covers_the_slab_up_to_the_next_acquired_slice():
    mask = torch.zeros(2, 2, 11, dtype=torch.bool)
    mask[..., 7] = True
    assert gap_mask(mask, torch.tensor([0, 5, 10]), 5)[0, 0].tolist() == [False, True, False]
    assert gap_targets(torch.arange(11.0).expand(1, 1, 11), torch.tensor([0, 5, 10]), 2)[:, 0, 0].tolist() == \
        [[0.0, 5.0, 10.0], [1.0, 6.0, 0.0]]


def test_uneven_acquired_slices_are_a_clear_error():
    known = torch.zeros(20)
    known[[0, 5, 11]] = 1
    with pytest.raises(InputError, match="not evenly spaced"):
        acquired_slices(known, "scan.nii.gz")
