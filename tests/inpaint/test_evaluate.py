"""python -m inpaint.evaluate: rows, resume/overwrite, summary, figures, checkpoints, saved predictions, golden values."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from inpaint.data.degrade import degrade
from inpaint.data.io import read_volume
from inpaint.evaluate import main
from inpaint.metrics import volume_metrics
from inpaint.predict import main as predict_main
from inpaint.restore import Restorer
from tests.conftest import phantom, write_nifti
from tests.inpaint.test_predict import tiny_checkpoint_path

GOLDEN = {  # PROTOCOL.md: (PSNR, SSIM, HFEN, missing-slice PSNR), interval 5, offset 0
    ("sub-02", "linear"): (30.823, 0.8576, 0.5559, 29.854), ("sub-03", "linear"): (30.438, 0.8547, 0.5641, 29.467),
    ("sub-04", "linear"): (25.852, 0.8269, 0.5596, 24.883), ("sub-02", "cubic"): (30.763, 0.8587, 0.5630, 29.793),
    ("sub-03", "cubic"): (30.345, 0.8565, 0.5722, 29.375), ("sub-04", "cubic"): (25.755, 0.8278, 0.5689, 24.786),
}


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_root, tmp_path_factory) -> Path:
    return tiny_checkpoint_path(tiny_root, tmp_path_factory)


def rows(out: Path) -> list[dict[str, str]]:
    with (out / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def evaluate(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_rows_summary_and_figures(tiny_root, tmp_path, capsys):
    out = tmp_path / "eval"
    code, stdout, _ = evaluate(capsys, "--data", tiny_root, "--methods", "cubic", "--out", out)
    assert code == 0 and "| **cubic** | 6 |" in stdout
    table = rows(out)
    assert list(table[0]) == ["subject", "method", "psnr", "ssim", "hfen", "psnr_missing", "seam", "seconds"]
    assert [(r["subject"], r["method"]) for r in table[:2]] == [("sub-00", "linear"), ("sub-00", "cubic")]
    assert len(table) == 12
    data, affine = read_volume(tiny_root / "sub-03" / "anat" / "sub-03_T1w.nii.gz")
    degraded = degrade(data[0], affine)
    expected = volume_metrics(Restorer("cubic")(degraded), data[0], data[0] > 0, degraded.known)
    row = next(r for r in table if r["subject"] == "sub-03" and r["method"] == "cubic")
    for key, value in expected.items():
        assert float(row[key]) == pytest.approx(value, rel=1e-6)
    summary = (out / "summary.md").read_text()
    assert "PSNR gain over linear (dB)" in summary and "Wilcoxon" in summary and "not meaningful" not in summary
    assert "--methods cubic" in summary and "interval 5" in summary and "torch" in summary
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == ["boxplots.png", "panel_sub-00.png", "psnr_gain.png"]


def test_existing_output_resume_and_overwrite(tiny_root, tmp_path, capsys):
    out = tmp_path / "eval"
    base = ["--data", tiny_root, "--subjects", "sub-01,sub-02", "--out", out, "--no-figures"]
    assert evaluate(capsys, *base)[0] == 0
    code, _, err = evaluate(capsys, *base)
    assert code == 2 and "metrics.csv exists; pass --resume" in err
    lines = (out / "metrics.csv").read_text().splitlines()
    (out / "metrics.csv").write_text("\n".join(lines[:-1]) + "\n")  # as if the run died before the last row
    assert evaluate(capsys, *base, "--resume")[0] == 0
    assert [line.rsplit(",", 1)[0] for line in (out / "metrics.csv").read_text().splitlines()] == [
        line.rsplit(",", 1)[0] for line in lines]  # the same rows, bar the timing column
    code, _, err = evaluate(capsys, *base, "--resume", "--interval", "4")
    assert code == 2 and "interval=4" in err
    assert evaluate(capsys, *base, "--overwrite", "--methods", "linear")[0] == 0
    assert len(rows(out)) == 2
    assert "not meaningful" in (out / "summary.md").read_text() or "cubic" not in (out / "summary.md").read_text()


def test_resume_shows_progress_while_it_recomputes_the_panel(tiny_root, tmp_path, capsys):
    base = ["--data", tiny_root, "--subjects", "sub-01", "--out", tmp_path / "eval", "--methods", "linear,cubic"]
    assert evaluate(capsys, *base)[0] == 0
    code, _, err = evaluate(capsys, *base, "--resume")  # every row is there: only the panel's 2 fills are redone
    assert code == 0 and "2/2" in err and (tmp_path / "eval" / "figures" / "panel_sub-01.png").is_file()


def test_a_failing_subject_keeps_earlier_rows_and_is_named(tmp_path, capsys):
    data = tmp_path / "data"
    write_nifti(data / "sub-01_T1w.nii.gz", phantom(seed=1))
    write_nifti(data / "sub-02_T1w.nii.gz", np.zeros((40, 44, 36), np.float32))  # empty brain mask
    code, _, err = evaluate(capsys, "--data", data, "--out", tmp_path / "eval", "--no-figures")
    assert code == 2 and "sub-02" in err and "mask is empty" in err and "--resume" in err
    assert [r["subject"] for r in rows(tmp_path / "eval")] == ["sub-01", "sub-01"]


def test_mask_file_is_used(tmp_path, capsys):
    data = tmp_path / "data"
    volume = phantom(seed=2)
    mask = np.zeros_like(volume)
    mask[10:30, 10:34, 8:28] = 1
    write_nifti(data / "sub-07_T1w.nii.gz", volume)
    write_nifti(data / "sub-07_T1w_mask.nii.gz", mask)
    assert evaluate(capsys, "--data", data, "--methods", "linear", "--out", tmp_path / "eval", "--no-figures")[0] == 0
    degraded = degrade(torch.from_numpy(volume), np.eye(4))
    expected = volume_metrics(degraded.input, torch.from_numpy(volume), torch.from_numpy(mask) > 0, degraded.known)
    assert float(rows(tmp_path / "eval")[0]["psnr"]) == pytest.approx(expected["psnr"], rel=1e-6)


def test_a_whole_head_without_a_mask_is_warned_about(tmp_path, capsys, caplog):
    volume = phantom(seed=2) + np.random.default_rng(0).uniform(10, 30, (40, 44, 36)).astype(np.float32)
    write_nifti(tmp_path / "data" / "sub-08_T1w.nii.gz", volume)
    with caplog.at_level(logging.WARNING, logger="inpaint"):
        code, _, err = evaluate(capsys, "--data", tmp_path / "data", "--methods", "linear", "--out", tmp_path / "eval",
                                "--no-figures")
    assert code == 0, err
    assert "looks like a whole head" in caplog.text and "sub-08_mask.nii.gz" in caplog.text


def test_checkpoint_and_saved_predictions(tiny_root, tmp_path, capsys, tiny_checkpoint):
    predictions = tmp_path / "pred"
    source = tiny_root / "sub-05" / "anat" / "sub-05_T1w.nii.gz"
    assert predict_main([str(source), "-o", str(predictions / source.name), "--checkpoint", str(tiny_checkpoint),
                         "--simulate"]) == 0
    out = tmp_path / "eval"
    code, _, err = evaluate(capsys, "--data", tiny_root, "--subjects", "sub-05", "--methods", "linear",
                            "--checkpoint", f"tiny={tiny_checkpoint}", "--prediction", f"saved={predictions}",
                            "--out", out, "--allow-seen")  # the tiny model trained on every tiny subject but two
    assert code == 0, err
    table = {r["method"]: r for r in rows(out)}
    assert list(table) == ["linear", "tiny", "saved"]
    for key in ("psnr", "ssim", "hfen", "psnr_missing"):  # evaluate and predict --simulate agree
        assert float(table["tiny"][key]) == pytest.approx(float(table["saved"][key]), rel=1e-5)
    assert float(table["tiny"]["seconds"]) > 0 and table["saved"]["seconds"] == "nan"
    assert "tiny.ckpt" not in (out / "summary.md").read_text() and str(tiny_checkpoint) in (out / "summary.md").read_text()


def test_resume_refuses_a_checkpoint_whose_weights_changed(tiny_root, tmp_path, capsys, tiny_checkpoint):
    weights = tmp_path / "model.ckpt"
    checkpoint = torch.load(tiny_checkpoint, map_location="cpu", weights_only=False)
    torch.save(checkpoint, weights)
    base = ["--data", tiny_root, "--subjects", "sub-05", "--out", tmp_path / "eval", "--no-figures",
            "--checkpoint", f"model={weights}", "--allow-seen"]
    assert evaluate(capsys, *base)[0] == 0
    assert evaluate(capsys, *base, "--resume")[0] == 0  # the same file: nothing to redo
    name = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point())
    checkpoint["state_dict"][name] = checkpoint["state_dict"][name] + 1.0  # retrained, same path
    torch.save(checkpoint, weights)
    code, _, err = evaluate(capsys, *base, "--resume")
    assert code == 2 and "--checkpoint model=" in err and "--redo model" in err and len(err.strip().splitlines()) == 1, err
    before = {r["method"]: r for r in rows(tmp_path / "eval")}
    assert evaluate(capsys, *base, "--resume", "--redo", "model")[0] == 0  # the retrained model's rows only
    after = {r["method"]: r for r in rows(tmp_path / "eval")}
    assert list(after) == ["linear", "cubic", "model"] and after["cubic"] == before["cubic"]
    assert after["model"]["psnr"] != before["model"]["psnr"]
    assert evaluate(capsys, *base, "--resume")[0] == 0  # the new file is now the recorded one
    for argv, needle in ((["--redo", "model"], "--redo model needs --resume"), (["--resume", "--redo", "nope"], "not a method")):
        code, _, err = evaluate(capsys, *base, *argv)
        assert code == 2 and needle in err, err


@pytest.mark.parametrize("argv, needle", [
    (["--checkpoint", "x={tmp}/junk.ckpt"], "junk.ckpt: not a PyTorch checkpoint"),
    (["--checkpoint", "nameless"], "expected NAME=PATH"),
    (["--prediction", "p={tmp}/nowhere"], "no such folder"),
    (["--prediction", "p={tmp}"], "no file named sub-00_T1w"),
    (["--methods", "linear,spline"], "unknown method 'spline'"),
    (["--subjects", "sub-99"], "'sub-99' has no volume"),
    (["--split", "{tmp}/split.tsv", "--split-name", "val"], "no subject in split 'val'"),
])
def test_bad_arguments_are_one_line_errors(tiny_root, tmp_path, capsys, argv, needle):
    (tmp_path / "junk.ckpt").write_bytes(b"junk")
    (tmp_path / "split.tsv").write_text("subject\tsplit\nsub-00\ttest\n")
    argv = [a.format(tmp=tmp_path) for a in argv]
    code, _, err = evaluate(capsys, "--data", tiny_root, "--subjects", "sub-00", *argv, "--out", tmp_path / "e")
    if "--split" in argv:
        code, _, err = evaluate(capsys, "--data", tiny_root, *argv, "--out", tmp_path / "e")
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_split_file_selects_subjects(tiny_root, tmp_path, capsys):
    split = tmp_path / "split.tsv"
    split.write_text("subject\tsplit\nsub-00\ttrain\nsub-04\ttest\nsub-02\ttest\n")
    assert evaluate(capsys, "--data", tiny_root, "--split", split, "--methods", "linear", "--out", tmp_path / "e",
                    "--no-figures")[0] == 0
    assert [r["subject"] for r in rows(tmp_path / "e")] == ["sub-04", "sub-02"]


@pytest.mark.realdata
def test_golden_values(shared_data, tmp_path, capsys):
    code, _, err = evaluate(capsys, "--data", shared_data, "--methods", "linear,cubic", "--subjects",
                            "sub-02,sub-03,sub-04", "--out", tmp_path / "eval", "--no-figures")
    assert code == 0, err
    table = rows(tmp_path / "eval")
    assert len(table) == 6
    for row in table:
        psnr, ssim, hfen, missing = GOLDEN[row["subject"], row["method"]]
        assert float(row["psnr"]) == pytest.approx(psnr, abs=0.05)
        assert float(row["ssim"]) == pytest.approx(ssim, abs=0.003)
        assert float(row["hfen"]) == pytest.approx(hfen, abs=0.005)
        assert float(row["psnr_missing"]) == pytest.approx(missing, abs=0.05)


def test_bad_interval_is_an_error_before_the_output_folder_exists(tiny_root, tmp_path, capsys):
    code, _, err = evaluate(capsys, "--data", tiny_root, "--interval", "0", "--out", tmp_path / "e")
    assert code == 2 and "--interval 0" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "e").exists()


def test_a_checkpoint_is_not_scored_on_subjects_it_trained_or_was_selected_on(tmp_path, capsys):
    write_nifti(tmp_path / "data" / "sub-02_T1w.nii.gz", phantom())  # sub-02: training subject of the committed split
    write_nifti(tmp_path / "data" / "sub-03_T1w.nii.gz", phantom(seed=1))  # sub-03: a val subject
    base = ["--data", tmp_path / "data", "--methods", "linear", "--checkpoint", "net=pretrained", "--no-figures"]
    code, _, err = evaluate(capsys, *base, "--subjects", "sub-02", "--out", tmp_path / "a")
    assert code == 2 and len(err.strip().splitlines()) == 1 and not (tmp_path / "a").exists()
    assert "--checkpoint net: sub-02 is a training subject of it" in err and "--allow-seen" in err
    code, _, err = evaluate(capsys, *base, "--subjects", "sub-03", "--out", tmp_path / "b")
    assert code == 2 and "sub-03 is a validation subject (model selection) of it" in err
    assert evaluate(capsys, *base, "--subjects", "sub-02", "--allow-seen", "--out", tmp_path / "c")[0] == 0
    write_nifti(tmp_path / "shifted" / "sub-03_acq-bias_T1w.nii.gz", phantom(seed=1))  # made from sub-03 (val)
    code, _, err = evaluate(capsys, *base[2:], "--data", tmp_path / "shifted", "--out", tmp_path / "d")
    assert code == 2 and "sub-03 is a validation subject (model selection) of it" in err


def test_subjects_within_a_split(tmp_path, capsys):
    for name in ("sub-02", "sub-11", "sub-12"):  # experiments/splits/ds002748.tsv: sub-02 train, sub-11/12 test
        write_nifti(tmp_path / "data" / f"{name}_T1w.nii.gz", phantom())
    base = ["--data", tmp_path / "data", "--split", "experiments/splits/ds002748.tsv", "--methods", "linear",
            "--no-figures"]
    assert evaluate(capsys, *base, "--subjects", "sub-11", "--out", tmp_path / "a")[0] == 0
    assert [r["subject"] for r in rows(tmp_path / "a")] == ["sub-11"]
    code, _, err = evaluate(capsys, *base, "--subjects", "sub-02", "--out", tmp_path / "b")
    assert code == 2 and "--subjects sub-02: not in split 'test'" in err and "(train)" in err
