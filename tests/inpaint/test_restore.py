"""One restore path: validation, evaluate and predict give one answer, with the settings a checkpoint carries."""

from __future__ import annotations

import csv
import logging

import nibabel as nib
import numpy as np
import pytest
import torch

from inpaint import config
from inpaint.checkpoint import load_module
from inpaint.data.io import read_volume
from inpaint.evaluate import main as evaluate
from inpaint.fit import fit
from inpaint.predict import main as predict
from inpaint.restore import Restorer
from tests.conftest import quick_overrides

NON_DEFAULT = ["inference.aggregation=hann", "inference.overlap=16"]


@pytest.fixture(scope="module")
def hann_run(tiny_root, tmp_path_factory) -> dict:
    """A debug DenseUNet trained with hann/16 inference, validated on the whole of sub-03."""
    tmp = tmp_path_factory.mktemp("hann")
    cfg = config.load("debug", quick_overrides(tiny_root, tmp) + NON_DEFAULT + [
        "data.val_subjects=[sub-03]", "data.val_crop=null", "trainer.limit_train_batches=2"])
    return fit(cfg)


def test_evaluate_reports_what_validation_logged_with_the_checkpoints_settings(hann_run, tiny_root, tmp_path, capsys):
    out = tmp_path / "eval"
    assert evaluate(["--data", str(tiny_root), "--subjects", "sub-03", "--methods", "linear", "--checkpoint",
                     f"net={hann_run['best_checkpoint']}", "--out", str(out), "--no-figures", "--allow-seen"]) == 0
    capsys.readouterr()
    with (out / "metrics.csv").open(newline="") as handle:
        row = next(r for r in csv.DictReader(handle) if r["method"] == "net")
    logged = hann_run["metrics"]
    assert float(row["psnr"]) == pytest.approx(logged["val/psnr"], abs=0.01)
    assert float(row["psnr_missing"]) == pytest.approx(logged["val/psnr_missing"], abs=0.01)
    assert float(row["ssim"]) == pytest.approx(logged["val/ssim"], abs=2e-4)
    assert float(row["hfen"]) == pytest.approx(logged["val/hfen"], abs=2e-4)
    summary = (out / "summary.md").read_text()
    assert "overlap 16 (checkpoint)" in summary and "aggregation hann (checkpoint)" in summary


def test_predict_restores_with_the_checkpoints_settings_unless_told_otherwise(hann_run, tiny_root, tmp_path, capsys, caplog):
    source = tiny_root / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    module = load_module(hann_run["best_checkpoint"])
    data, affine = read_volume(source)
    trained = Restorer(module)
    degraded = trained.degrade(data[0], affine)
    expected = trained(degraded)
    paper = Restorer(module, {"overlap": 8, "aggregation": "average"})(degraded)
    assert not torch.allclose(expected, paper, atol=1e-4), "hann/16 and average/8 should differ"
    with caplog.at_level(logging.INFO, logger="inpaint"):
        assert predict([str(source), "-o", str(tmp_path / "out.nii.gz"), "--simulate", "--checkpoint",
                        hann_run["best_checkpoint"]]) == 0
    assert "overlap 16 (checkpoint)" in caplog.text and "aggregation hann (checkpoint)" in caplog.text
    written = nib.load(tmp_path / "out.nii.gz").get_fdata(dtype=np.float32)
    np.testing.assert_allclose(written, expected.numpy(), atol=1e-5)
    with caplog.at_level(logging.INFO, logger="inpaint"):
        assert predict([str(source), "-o", str(tmp_path / "paper.nii.gz"), "--simulate", "--checkpoint",
                        hann_run["best_checkpoint"], "--overlap", "8", "--aggregation", "average"]) == 0
    assert "overlap 8 (command line)" in caplog.text
    np.testing.assert_allclose(nib.load(tmp_path / "paper.nii.gz").get_fdata(dtype=np.float32), paper.numpy(), atol=1e-5)


def test_settings_say_where_they_came_from():
    restorer = Restorer("linear", {"interval": 3})
    assert restorer.settings["interval"] == 3 and restorer.sources["interval"] == "command line"
    assert restorer.settings["offset"] == 0 and restorer.sources["offset"] == "default"
    with pytest.raises(ValueError, match="unknown restore setting"):
        Restorer("linear", {"overlapp": 8})


def test_a_volume_smaller_than_the_patch_is_padded_with_background_and_cropped_back(hann_run):
    from inpaint.data.degrade import degrade
    from tests.conftest import phantom

    restorer = Restorer(load_module(hann_run["best_checkpoint"]))
    volume = torch.from_numpy(phantom((20, 40, 36)))
    out = restorer(degrade(volume, np.eye(4)))
    by_hand = restorer(degrade(torch.nn.functional.pad(volume, (0, 0, 0, 0, 6, 6)), np.eye(4)))  # zeros around it
    assert out.shape == (20, 40, 36) and torch.allclose(out, by_hand[6:26], atol=1e-4)
    assert restorer.padding((20, 40, 36)) == (0, 0, 0, 0, 6, 6) and restorer.padding((32, 33, 40)) == (0,) * 6


def test_thin_slices_can_be_asked_for_and_settings_are_checked_before_work(hann_run, tiny_root, tmp_path, capsys):
    source = tiny_root / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    assert predict([str(source), "-o", str(tmp_path / "a.nii.gz"), "--simulate", "--checkpoint", hann_run["best_checkpoint"],
                    "--thick-slices"]) == 0
    assert predict([str(source), "-o", str(tmp_path / "b.nii.gz"), "--simulate", "--checkpoint", hann_run["best_checkpoint"],
                    "--no-thick-slices"]) == 0
    a, b = (nib.load(tmp_path / n).get_fdata() for n in ("a.nii.gz", "b.nii.gz"))
    assert not np.allclose(a, b)
    capsys.readouterr()
    assert evaluate(["--data", str(tiny_root), "--overlap", "7", "--out", str(tmp_path / "e")]) == 2
    assert "--overlap 7" in capsys.readouterr().err and not (tmp_path / "e").exists()


def test_evaluate_without_cuda_says_so(tiny_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert evaluate(["--data", str(tiny_root), "--checkpoint", "net=pretrained", "--device", "cuda",
                     "--out", str(tmp_path / "e")]) == 2
    assert "no CUDA device" in capsys.readouterr().err


@pytest.mark.parametrize("codes", ["RAS", "LPS", "ALS", "RPI"])
def test_a_network_sees_every_file_in_the_orientation_it_learnt(codes):
    from inpaint.data.degrade import degrade
    from tests.conftest import phantom

    restorer = Restorer(load_module("pretrained"))  # learnt LAS (ds002748)
    las = np.diag([-1.0, 1.0, 1.0, 1.0])
    volume = torch.from_numpy(phantom((40, 44, 41)))
    expected = restorer(degrade(volume, las), affine=las)
    ornt = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(("L", "A", "S")),
                                           nib.orientations.axcodes2ornt(tuple(codes)))
    stored = torch.from_numpy(nib.orientations.apply_orientation(volume.numpy(), ornt).copy())
    affine = las @ nib.orientations.inv_ornt_aff(ornt, tuple(volume.shape))  # the same world, stored as `codes`
    assert "".join(nib.aff2axcodes(affine)) == codes
    out = restorer(degrade(stored, affine, offset=0), affine=affine)
    back = nib.orientations.apply_orientation(out.numpy(), nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt(tuple(codes)), nib.orientations.axcodes2ornt(("L", "A", "S"))))
    np.testing.assert_allclose(back, expected.numpy(), atol=1e-3)
    as_stored = restorer(degrade(stored, affine, offset=0))  # without the affine: the file's own voxel order
    assert np.abs(nib.orientations.apply_orientation(as_stored.numpy(), nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt(tuple(codes)), nib.orientations.axcodes2ornt(("L", "A", "S")))) -
        expected.numpy()).max() > 1.0  # the network is not flip-invariant: the frame matters
