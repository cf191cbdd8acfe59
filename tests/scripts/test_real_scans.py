"""scripts/real_scans.py: clinical-style acquisitions from a reference, restored by predict, scored on its grid."""

from __future__ import annotations

import importlib.util
import math
import sys

import nibabel as nib
import numpy as np
import pytest
import torch

from inpaint.geometry import kept_indices
from inpaint.interpolate import fill_missing
from inpaint.metrics import volume_metrics
from tests.conftest import REPO, phantom, write_nifti

AFFINE = np.array([[-1.0, 0, 0, 70.0], [0, 1.0, 0, -90.0], [0, 0, 1.0, -50.0], [0, 0, 0, 1]])  # LAS, 1 mm: predict's grid


@pytest.fixture(scope="module")
def real_scans():
    spec = importlib.util.spec_from_file_location("real_scans", REPO / "scripts" / "real_scans.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["real_scans"] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("orientation", "suffix"), [("LAS", ".nii.gz"), ("LIA", ".mgz"), ("RPS", ".nii")])
def test_a_thin_acquisition_scores_as_the_protocol_linear_fill_in_any_orientation(tmp_path, real_scans, orientation,
                                                                                   suffix):
    reference = phantom().astype(np.float64)
    acq = real_scans.Acquisition("thin", 5.0, orientation=orientation, suffix=suffix)
    data, affine = real_scans.acquire(reference, AFFINE, acq)
    np.testing.assert_allclose(data, reference[:, :, ::5], atol=1e-3)  # thin slices: the reference's own
    source = tmp_path / f"thin{suffix}"
    real_scans.write_acquisition(source, data, affine, acq)
    assert "".join(nib.aff2axcodes(nib.load(source).affine)) == orientation
    real_scans.restore(source, tmp_path / "out.nii.gz", "linear")
    scores = real_scans.score(tmp_path / "out.nii.gz", reference, AFFINE)
    covered = (reference.shape[2] - 1) // 5 * 5 + 1  # the field of view ends at the last acquired slice
    fill = fill_missing(torch.from_numpy(reference[:, :, :covered]), 2, kept_indices(covered, 5)).numpy()
    restored = reference.copy()
    restored[:, :, :covered] = fill
    inside = np.zeros(reference.shape, bool)
    inside[3:-3, 3:-3, 3:covered - 3] = True
    expected = volume_metrics(torch.from_numpy(restored), torch.from_numpy(reference),
                              torch.from_numpy(inside & (reference > 0)), torch.zeros(reference.shape, dtype=torch.bool))
    for key in real_scans.METRICS:
        assert scores[key] == pytest.approx(expected[key], rel=1e-6)


def test_thick_tilted_and_resampled_acquisitions_have_their_geometry(real_scans):
    reference = phantom().astype(np.float64)
    acq = real_scans.Acquisition("tilted", 4.4, 4.0, inplane=0.5, tilt=20.0)
    data, affine = real_scans.acquire(reference, AFFINE, acq)
    zooms = np.linalg.norm(affine[:3, :3], axis=0)
    np.testing.assert_allclose(zooms, [0.5, 0.5, 4.4])
    assert data.shape == (math.floor(39 / 0.5) + 1, math.floor(43 / 0.5) + 1, math.floor(35 / 4.4) + 1)
    normal = affine[:3, 2] / 4.4
    assert math.degrees(math.acos(abs(normal[2]))) == pytest.approx(20.0)
    untilted, _ = real_scans.acquire(reference, AFFINE, real_scans.Acquisition("slab", 5.0, 5.0))
    slab = reference[:, :, 3:8].mean(axis=2)  # slice 1 (z = 5 mm) averages z in [2.5, 7.5] mm: mostly slices 3..7
    centre = slice(12, 28), slice(12, 32)
    assert np.abs(untilted[:, :, 1][centre] - slab[centre]).mean() < 0.05 * np.abs(slab[centre]).mean()


def test_the_command_restores_scores_and_resumes(tmp_path, capsys, real_scans):
    write_nifti(tmp_path / "refs" / "sub-01_T1w.nii.gz", phantom(seed=4), AFFINE)
    argv = ["--data", str(tmp_path / "refs"), "--subjects", "sub-01", "--out", str(tmp_path / "out"),
            "--method", "linear", "--method", "cubic", "--only", "thick-4mm-gap-0.4", "LIA-mgz"]
    assert real_scans.main(argv) == 0
    table = (tmp_path / "out" / "scores.md").read_text()
    assert "| sub-01 | thick-4mm-gap-0.4 |" in table and "| sub-01 | LIA-mgz |" in table
    rows = (tmp_path / "out" / "scores.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 2
    (tmp_path / "out" / "restored" / "cubic" / "sub-01_LIA-mgz.nii.gz").unlink()
    assert real_scans.main(argv) == 0  # every score is kept: nothing is restored again
    assert not (tmp_path / "out" / "restored" / "cubic" / "sub-01_LIA-mgz.nii.gz").exists()
