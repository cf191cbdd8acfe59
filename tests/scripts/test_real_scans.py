"""scripts/real_scans.py: clinical-style acquisitions from a reference, restored by predict, scored on its grid."""

from __future__ import annotations

import importlib.util
import logging
import math
import re
import shutil
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

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
    scores = real_scans.score(tmp_path / "out.nii.gz", reference, AFFINE, reference > 0)
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
    oblique = AFFINE.copy()  # a reference already 10 degrees oblique: the tilt is still 20 from the world's axial
    c, s = math.cos(math.radians(10)), math.sin(math.radians(10))
    oblique[:3, :3] = np.array([[1, 0, 0], [0, c, -s], [0, s, c]]) @ AFFINE[:3, :3]
    normal = real_scans.acquire(reference, oblique, acq)[1][:3, 2] / 4.4
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
    assert "- cubic: better than linear on " in table and " of 2 files (PSNR/SSIM/HFEN)" in table
    rows = (tmp_path / "out" / "scores.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 2
    (tmp_path / "out" / "restored" / "cubic" / "sub-01_LIA-mgz.nii.gz").unlink()
    assert real_scans.main(argv) == 0  # every score is kept: nothing is restored again
    assert not (tmp_path / "out" / "restored" / "cubic" / "sub-01_LIA-mgz.nii.gz").exists()


def test_a_changed_checkpoint_is_refused_until_redo_scores_it_again(tmp_path, real_scans):
    from inpaint.checkpoint import pretrained_path

    write_nifti(tmp_path / "refs" / "sub-01_T1w.nii.gz", phantom(seed=4), AFFINE)
    model = tmp_path / "model.ckpt"
    shutil.copy(pretrained_path("pretrained"), model)
    argv = ["--data", str(tmp_path / "refs"), "--subjects", "sub-01", "--out", str(tmp_path / "out"),
            "--method", "linear", "--checkpoint", str(model), "--method", "cubic", "--only", "thin-5mm"]
    assert real_scans.main(argv) == 0
    first = real_scans.read_scores(tmp_path / "out" / "scores.csv")
    linear_file = tmp_path / "out" / "restored" / "linear" / "sub-01_thin-5mm.nii.gz"
    linear_time = linear_file.stat().st_mtime_ns
    checkpoint = torch.load(model, weights_only=False)
    head = next(k for k in checkpoint["state_dict"] if k.endswith("bias"))
    checkpoint["state_dict"][head] += 0.05  # a retrained file under the same name
    torch.save(checkpoint, model)
    with pytest.raises(SystemExit, match=f"add --redo {re.escape(str(model))}"):
        real_scans.main(argv)
    wrong_data = [*argv, "--redo", str(model)]
    wrong_data[1] = str(tmp_path / "nowhere")
    with pytest.raises(SystemExit, match="no sub-01_"):
        real_scans.main(wrong_data)
    assert real_scans.read_scores(tmp_path / "out" / "scores.csv") == first  # inputs checked before --redo drops
    assert real_scans.main([*argv, "--redo", str(model)]) == 0
    second = real_scans.read_scores(tmp_path / "out" / "scores.csv")
    assert second[("sub-01", "thin-5mm", "linear")] == first[("sub-01", "thin-5mm", "linear")]
    assert linear_file.stat().st_mtime_ns == linear_time  # the other methods are kept, not redone
    key = ("sub-01", "thin-5mm", str(model))
    assert second[key]["psnr"] != pytest.approx(first[key]["psnr"], abs=1e-9)  # the new file restored and scored
    header = (tmp_path / "out" / "scores.md").read_text().splitlines()[0]
    assert header.index(f"| {model} PSNR") < header.index("| cubic PSNR")  # columns in the command's order
    assert real_scans.main(argv) == 0  # and it resumes with the new file
    (tmp_path / "out" / "weights.json").unlink()  # scores whose file was never recorded are not trusted
    with pytest.raises(SystemExit, match="is not recorded as"):
        real_scans.main(argv)
    with pytest.raises(SystemExit, match="--redo cubic: not a checkpoint of this run"):
        real_scans.main([*argv, "--redo", "cubic"])
    with pytest.raises(SystemExit, match="--checkpoint nothing.ckpt: no such file"):
        real_scans.main([*argv, "--checkpoint", "nothing.ckpt"])


def test_a_synthetic_head_keeps_its_brain_inside_skull_and_scalp(real_scans):
    brain = phantom(shape=(72, 80, 64)).astype(np.float64)  # ~14 x 16 x 13 cm at 2 mm: brain-sized
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    head, mask, padded = real_scans.whole_head(brain, affine)
    pad = (head.shape[0] - brain.shape[0]) // 2
    assert pad == 10 and head.shape == tuple(n + 2 * pad for n in brain.shape)
    np.testing.assert_allclose(padded[:3, 3], -2.0 * pad)  # voxel 0 moved out by the padding
    inner = head[pad:-pad, pad:-pad, pad:-pad]
    np.testing.assert_array_equal(inner[brain > 0], brain[brain > 0].astype(np.float32))  # the brain untouched
    assert mask.sum() == (brain > 0).sum()
    shell = ndimage.binary_dilation(mask, iterations=7) & ~mask  # up to 14 mm out: CSF, skull, diploe, muscle
    assert head[shell].mean() > 0.2 * brain[brain > 0].mean() and (head[~mask] == 0).mean() > 0.2  # then air


@pytest.mark.skipif(importlib.util.find_spec("brainextractor") is None, reason="needs the skull extra (brainextractor)")
def test_predict_mask_auto_finds_the_brain_of_a_sparse_head_with_bet(tmp_path, capsys, caplog, monkeypatch, real_scans):
    from inpaint import predict, skull

    brain = phantom(shape=(72, 80, 64)).astype(np.float64)
    brain[brain > 0] = 700 + 0.2 * (brain[brain > 0] - 600)  # a brain's contrast: +-20 %, not the phantom's +-100 %
    head, mask, affine = real_scans.whole_head(brain, np.diag([2.0, 2.0, 2.0, 1.0]))
    acq = real_scans.Acquisition("head", 6.0, 6.0, head=True)
    sparse, sparse_affine = real_scans.acquire(head.astype(np.float64), affine, acq)
    truth = real_scans.acquire(mask.astype(np.float64), affine, acq)[0] > 0.5
    write_nifti(tmp_path / "head.nii.gz", sparse, sparse_affine)
    found = []
    monkeypatch.setattr(predict, "bet_mask", lambda *a: found.append(skull.bet_mask(*a)) or found[-1])
    with caplog.at_level(logging.INFO, logger="inpaint"):
        assert predict.main([str(tmp_path / "head.nii.gz"), "-o", str(tmp_path / "out.nii.gz"), "--method", "linear",
                             "--mask", "auto"]) == 0, capsys.readouterr().err
    assert "BET" in caplog.text and "whole head" not in caplog.text
    bet = found[0].numpy()
    assert bet.shape == truth.shape
    assert (bet & truth).sum() > 0.98 * truth.sum()  # the brain is inside (the network will fill all of it)
    assert bet.sum() < 1.3 * truth.sum()  # and not much more: BET keeps some CSF, not the scalp


def test_a_head_file_gets_its_mask_and_each_network_is_run_plain_with_the_mask_and_with_bet(tmp_path, real_scans):
    mask = tmp_path / "sub-01_head_mask.nii.gz"
    variants = real_scans.head_variants(["linear", "pretrained"], mask)
    bet = ["pretrained --mask auto"] if importlib.util.find_spec("brainextractor") else []
    assert variants == ["linear", "pretrained", f"pretrained --mask {mask}", *bet]
    assert [real_scans.method_label(v) for v in variants[2:]] == ["pretrained --mask FILE", *bet]
    brain = phantom(shape=(72, 80, 64), seed=2)
    write_nifti(tmp_path / "refs" / "sub-01_T1w.nii.gz", brain, np.diag([2.0, 2.0, 2.0, 1.0]))
    out = tmp_path / "out"
    assert real_scans.main(["--data", str(tmp_path / "refs"), "--subjects", "sub-01", "--out", str(out),
                            "--method", "linear", "--only", "head-thick-5mm"]) == 0
    written = nib.load(out / "set" / "sub-01_head-thick-5mm_mask.nii.gz").get_fdata()
    assert set(np.unique(written)) == {0.0, 1.0} and 0.1 < written.mean() < 0.6
    assert "| sub-01 | head-thick-5mm |" in (out / "scores.md").read_text()
