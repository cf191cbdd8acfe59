"""scripts/make_shifted_val.py on small synthetic volumes with ds002748's voxel sizes."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import phantom, write_nifti

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import make_shifted_val as shifted  # noqa: E402

SPACING = (0.868, 0.868, 1.0)  # ds002748: in-plane 0.868 mm, 1 mm axial slices


@pytest.fixture
def val_data(tmp_path) -> tuple[Path, Path]:
    data = tmp_path / "data"
    rows = ["subject\tsplit", "sub-01\ttrain", "sub-02\tval", "sub-03\tval"]
    for i, subject in enumerate(("sub-01", "sub-02", "sub-03")):
        write_nifti(data / f"{subject}_T1w.nii.gz", phantom(seed=i), np.diag([*SPACING, 1.0]))
    (tmp_path / "split.tsv").write_text("\n".join(rows) + "\n")
    return data, tmp_path / "split.tsv"


def test_every_val_subject_gets_every_shift_and_only_val_subjects(val_data, tmp_path, capsys):
    data, split = val_data
    out = tmp_path / "shifted"
    assert shifted.main(["--data", str(data), "--split", str(split), "--out", str(out)]) == 0
    files = sorted(p.name for p in out.glob("*.nii.gz"))
    assert files == sorted(f"{s}_acq-{k}_T1w.nii.gz" for s in ("sub-02", "sub-03") for k in shifted.SHIFTS)
    rows = list(csv.DictReader((out / "shifted.tsv").open(), delimiter="\t"))
    assert len(rows) == len(files) and {r["subject"] for r in rows} == {"sub-02", "sub-03"}

    reference = nib.load(data / "sub-02_T1w.nii.gz").get_fdata()
    brain = reference > 0
    wm = nib.load(out / "sub-02_acq-wm110_T1w.nii.gz")
    assert wm.get_data_dtype() == np.uint8
    assert shifted.white_matter_level(np.asarray(wm.dataobj, dtype=float)) == pytest.approx(110, abs=3)
    field = nib.load(out / "sub-02_acq-bias_T1w.nii.gz").get_fdata()[brain] / reference[brain]
    assert field.min() >= 1 / 1.6 - 1e-3 and field.max() <= 1.6 + 1e-3 and field.max() / field.min() > 1.3
    noisy = nib.load(out / "sub-02_acq-noise_T1w.nii.gz").get_fdata()
    assert (noisy[~brain] == 0).all() and np.std(noisy[brain] - reference[brain]) > 0.02 * shifted.white_matter_level(reference)
    for name, mm in (("res1mm", 1.0), ("res08mm", 0.8)):
        zooms = nib.load(out / f"sub-02_acq-{name}_T1w.nii.gz").header.get_zooms()
        assert zooms == pytest.approx((mm, mm, 1.0), abs=1e-3), name  # in-plane only; the slices keep 1 mm
    again = tmp_path / "again"
    assert shifted.main(["--data", str(data), "--split", str(split), "--out", str(again), "--shifts", "bias,noise"]) == 0
    for name in ("bias", "noise"):  # seeded per subject and shift: the same set on every machine
        np.testing.assert_array_equal(nib.load(again / f"sub-03_acq-{name}_T1w.nii.gz").get_fdata(),
                                      nib.load(out / f"sub-03_acq-{name}_T1w.nii.gz").get_fdata())


def test_existing_files_and_unknown_shifts_are_one_line_errors(val_data, tmp_path, capsys):
    data, split = val_data
    args = ["--data", str(data), "--split", str(split), "--out", str(tmp_path / "s"), "--shifts", "gamma"]
    assert shifted.main(args) == 0
    capsys.readouterr()
    assert shifted.main(args) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert shifted.main([*args, "--overwrite"]) == 0
    assert shifted.main([*args[:-1], "contrast"]) == 2 and "no shift 'contrast'" in capsys.readouterr().err


def test_the_summary_gives_each_method_its_gain_per_shift(tmp_path, capsys):
    rows = ["subject,method,psnr", "sub-02_acq-bias,linear,30", "sub-02_acq-bias,net,32",
            "sub-03_acq-bias,linear,31", "sub-03_acq-bias,net,32", "sub-02_acq-gamma,linear,30", "sub-02_acq-gamma,net,30.5"]
    (tmp_path / "metrics.csv").write_text("\n".join(rows) + "\n")
    assert shifted.main(["--summarise", str(tmp_path / "metrics.csv")]) == 0
    table = capsys.readouterr().out
    assert "| bias | +1.50 (n=2) |" in table and "| gamma | +0.50 (n=1) |" in table and "| all | +1.17 (n=3) |" in table
