"""The device-resident patch path draws the TorchIO queue's patches: same centres, same contents, same counts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torchio as tio

from inpaint.constants import ACQUIRED, GAPS, INPUT, INTERVAL, KNOWN, MASK, NAME, SAMPLING, TARGET, THICK
from inpaint.data.acquired import AcquiredGrid
from inpaint.data.degrade import Degrade
from inpaint.data.normalise import Normalise
from inpaint.data.resident import Draws, ResidentPatches, Visit, load_resident
from inpaint.data.subjects import VolumeFile, make_subject
from inpaint.data.transforms import PatchCentres, PrepareVolume, SliceAxisLast
from tests.conftest import phantom, write_nifti

# The S/I axis first in the file (an LPS-like, permuted affine): the resident path must turn it last as SliceAxisLast does.
SI_FIRST = np.array([[0, 0, -1.0, 0], [0, -1.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 0, 1]])


def draws(acquired: bool, thick: bool, interval: int = 3, offset: int = 1) -> Draws:
    return Draws(interval, offset, (), False, thick, patch_size=16, patch_slices=4, stride=4,
                 acquired_grid=acquired, slots=8)


@pytest.fixture(scope="module")
def volume(tmp_path_factory) -> VolumeFile:
    path = write_nifti(tmp_path_factory.mktemp("resident") / "sub-01_T1w.nii.gz",
                       phantom((50, 40, 44), seed=3) + np.random.default_rng(0).random((50, 40, 44), np.float32),
                       SI_FIRST)
    return VolumeFile("sub-01", Path(path))


def torchio_subject(volume: VolumeFile, d: Draws) -> tio.Subject:
    """The TorchIO path's transforms (``InpaintDataModule``) at one fixed interval and offset."""
    grid = [AcquiredGrid(d.slots)] if d.acquired_grid else []
    stride = (d.stride, d.stride, None) if d.acquired_grid else d.stride
    transforms = [PrepareVolume(), Degrade(d.interval, d.offset, thick=d.thick), Normalise(), SliceAxisLast(),
                  *grid, PatchCentres(d.patch_shape(), stride)]
    return tio.Compose(transforms)(make_subject(volume))


@pytest.mark.parametrize("thick", [False, True])
@pytest.mark.parametrize("acquired", [False, True])
def test_centres_and_patches_equal_the_torchio_path(volume, acquired, thick):
    d = draws(acquired, thick)
    subject = torchio_subject(volume, d)
    visit = Visit(load_resident(volume, 8, torch.device("cpu")), d.interval, d.offset, d)
    assert torch.equal(visit.centres, torch.nonzero(subject[SAMPLING].data[0]))
    sampler = tio.LabelSampler(d.patch_shape(), label_name=SAMPLING)
    torch.manual_seed(0)
    for patch in sampler(subject, 12):  # TorchIO's own cut, at TorchIO's own centres
        centre = torch.as_tensor(patch[tio.LOCATION][:3]) + torch.tensor(d.patch_shape()) // 2
        ours = visit.cut(centre[None])
        keys = (ACQUIRED, GAPS) if acquired else (INPUT, KNOWN, TARGET, MASK)
        assert set(ours) == set(keys)
        for key in keys:
            torch.testing.assert_close(ours[key][0].float(), patch[key].data.float(), rtol=0, atol=1e-6, msg=key)


def test_degradations_are_drawn_like_degrade():
    d = Draws(5, 0, (2, 5, 8), True, False, 16, 4, 4, True, 8)
    generator = torch.Generator().manual_seed(0)
    ours = Counter(d.degradation(generator) for _ in range(6000))
    transform = Degrade(5, 0, (2, 5, 8), random_offset=True)
    torch.manual_seed(1)
    theirs = Counter(transform._draw() for _ in range(6000))
    expected = {(i, o): 6000 / 3 / i for i in (2, 5, 8) for o in range(i)}
    assert set(ours) == set(theirs) == set(expected)
    for key, n in expected.items():  # both within 5 sigma of the uniform draw
        assert abs(ours[key] - n) < 5 * n**0.5 and abs(theirs[key] - n) < 5 * n**0.5, key


def test_patch_centres_are_uniform_over_the_allowed_ones(volume):
    d = draws(True, False)
    visit = Visit(load_resident(volume, 8, torch.device("cpu")), d.interval, d.offset, d)
    generator = torch.Generator().manual_seed(0)
    picks = torch.randint(len(visit.centres), (20 * len(visit.centres),), generator=generator)
    counts = torch.bincount(picks, minlength=len(visit.centres)).float()
    assert counts.min() > 0 and abs(float(counts.std()) - 20**0.5) < 0.2 * 20**0.5  # Poisson spread


@pytest.mark.parametrize("acquired", [False, True])
def test_an_epoch_gives_each_subject_its_patches_in_shuffled_batches(volume, acquired):
    d = Draws(3, 0, (2, 3, 4), True, False, 16, 4, 4, acquired, 4)
    resident = load_resident(volume, 23, torch.device("cpu"))
    other = load_resident(volume, 9, torch.device("cpu"))
    other.name = "sub-02"
    epoch = ResidentPatches([resident, other], [1, 0], d, batch_size=5, queue_length=7, seed=0)
    batches = list(epoch)
    assert len(batches) == len(epoch) == 7 and [len(b[NAME]) for b in batches] == [5] * 6 + [2]
    assert Counter(n for b in batches for n in b[NAME]) == {"sub-01": 23, "sub-02": 9}
    assert all(b[INTERVAL].dtype == torch.long and b[THICK].dtype == torch.bool for b in batches)
    first = batches[0][ACQUIRED if acquired else INPUT][tio.DATA]
    assert first.shape == (5, 1, 16, 16, 4 if acquired else 16)
    again = next(iter(ResidentPatches([resident, other], [1, 0], d, 5, 7, seed=0)))
    assert torch.equal(again[ACQUIRED if acquired else INPUT][tio.DATA], first)  # seeded: a resumed epoch repeats
    cut = list(ResidentPatches([resident, other], [1, 0], d, 5, 7, seed=0, length=11))  # a DDP share's length
    assert [len(b[NAME]) for b in cut] == [5, 5, 1] and epoch.drawn == {"sub-01", "sub-02"}
