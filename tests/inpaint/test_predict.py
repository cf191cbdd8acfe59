"""python -m inpaint.predict: sparse -> dense geometry, classical and network fills, folder mode, bad inputs."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from inpaint.config import load
from inpaint.geometry import kept_indices
from inpaint.interpolate import fill_missing, sparse_to_dense
from inpaint.predict import main
from tests.conftest import phantom, quick_overrides, write_nifti

LAS = np.array([[-0.9, 0, 0, 80.0], [0, 0.9, 0, -100.0], [0, 0, 1.0, -60.0], [0, 0, 0, 1]])
_CHECKPOINTS: dict[str, Path] = {}


def tiny_checkpoint_path(root: Path, factory: pytest.TempPathFactory) -> Path:
    """One DenseUNet checkpoint per test session (a single debug training step on the tiny folder)."""
    if "tiny" not in _CHECKPOINTS:
        from inpaint.fit import fit

        overrides = [*quick_overrides(root, factory.mktemp("fit")), "trainer.limit_train_batches=1",
                     "data.batch_size=1", "data.samples_per_volume=1", "data.queue_length=1"]
        _CHECKPOINTS["tiny"] = Path(fit(load("debug", overrides))["best_checkpoint"])
    return _CHECKPOINTS["tiny"]


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_root, tmp_path_factory) -> Path:
    return tiny_checkpoint_path(tiny_root, tmp_path_factory)


def make_sparse(path: Path, volume: np.ndarray, affine: np.ndarray, axis: int, interval: int = 5) -> Path:
    """Keep every ``interval``-th slice along ``axis`` and scale that affine column: a real sparse acquisition."""
    sparse_affine = affine.copy()
    sparse_affine[:3, axis] *= interval
    return write_nifti(path, np.take(volume, np.arange(0, volume.shape[axis], interval), axis=axis), sparse_affine)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("method", ["linear", "cubic"])
@pytest.mark.parametrize("axis", [2, 0])
def test_sparse_file_gives_the_protocol_fill_on_the_original_grid(tmp_path, capsys, method, axis):
    volume = phantom()
    affine = LAS if axis == 2 else LAS[:, [2, 1, 0, 3]]  # axis 0 is S/I in the second case
    sparse = make_sparse(tmp_path / "sparse.nii.gz", volume, affine, axis)
    code, out, _ = run(capsys, sparse, "-o", tmp_path / "dense.nii.gz", "--method", method, "--grid", "input",
                       "--target-spacing", "1")  # 5-fold: the protocol's grid (1 mm) even with 0.9 mm in-plane
    assert code == 0 and "wrote" in out
    image = nib.load(tmp_path / "dense.nii.gz")
    dense = np.asanyarray(image.dataobj)
    n = (volume.shape[axis] - 1) // 5 * 5 + 1  # the last acquired slice ends the fine grid
    expected = fill_missing(torch.from_numpy(volume), axis, kept_indices(volume.shape[axis], 5), method).numpy()
    assert dense.dtype == np.float32 and dense.shape == np.take(expected, np.arange(n), axis=axis).shape
    np.testing.assert_allclose(dense, np.take(expected, np.arange(n), axis=axis), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(image.affine, affine, atol=1e-5)
    sparse_image = nib.load(sparse)
    for k in range(sparse_image.shape[axis]):  # acquired slices overlay exactly, in world coordinates
        fine, coarse = [3, 4, 5, 1.0], [3, 4, 5, 1.0]
        fine[axis], coarse[axis] = 5 * k, k
        np.testing.assert_allclose(image.affine @ fine, sparse_image.affine @ coarse, atol=1e-4)
        np.testing.assert_array_equal(np.take(dense, 5 * k, axis), np.take(sparse_image.get_fdata(), k, axis))


def test_target_spacing_and_folder_mode(tmp_path, capsys):
    inputs = tmp_path / "in"
    for i in range(2):
        make_sparse(inputs / f"s{i}.nii.gz", phantom(seed=i), LAS, 2, interval=4)  # 4 mm slices
    write_nifti(inputs / "s0_mask.nii.gz", np.ones((4, 4, 4), np.float32))  # masks are skipped
    code, _, _ = run(capsys, inputs, "-o", tmp_path / "out", "--method", "linear", "--target-spacing", "2",
                     "--grid", "isotropic")
    assert code == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["s0.json", "s0.nii.gz", "s1.json", "s1.nii.gz"]  # each volume with its sidecar
    image = nib.load(tmp_path / "out" / "s0.nii.gz")  # isotropic 2 mm: in-plane 0.9 -> 2 mm, slices 4 mm -> 2-fold fill
    assert image.shape == (18, 20, (9 - 1) * 2 + 1) and np.allclose(image.header.get_zooms(), (2.0, 2.0, 2.0))
    code, _, err = run(capsys, inputs, "-o", tmp_path / "out", "--method", "linear", "--target-spacing", "2",
                       "--grid", "isotropic")
    assert_one_line_error(code, err, "exists", "--overwrite")


def test_any_slice_spacing_gives_the_scans_inplane_grid_with_the_acquired_slices_in_place(tmp_path, capsys, caplog):
    volume = phantom()
    affine = np.diag([-1.0, 1.0, 4.4, 1.0])  # 4.4 mm slices (4 mm + 0.4 mm gap), LAS
    affine[:3, 3] = [80, -100, -60]
    sparse = write_nifti(tmp_path / "sparse.nii.gz", volume[:, :, :8], affine)
    with caplog.at_level(logging.INFO, logger="inpaint"):
        code, _, err = run(capsys, sparse, "-o", tmp_path / "dense.nii.gz", "--method", "linear")
    assert code == 0, err
    assert caplog.records[-1].message.endswith("dense.nii.gz: 40x44x31 voxels of 1x1x1 mm (grid inplane); 8 acquired "
                                               "slices 4.4 mm apart, 3 filled between neighbours (4-fold, 1.1 mm), "
                                               "slice axis then resampled to 1 mm")
    image = nib.load(tmp_path / "dense.nii.gz")
    assert np.allclose(image.header.get_zooms(), 1.0) and image.shape == (40, 44, 31)  # 7 x 4.4 = 30.8 mm
    assert image.header.get_xyzt_units() == ("mm", "sec") and image.header["qform_code"] == 1
    np.testing.assert_allclose(image.header.get_qform(), image.header.get_sform(), atol=1e-5)
    np.testing.assert_allclose(image.affine @ [0, 0, 0, 1], affine @ [0, 0, 0, 1], atol=1e-6)  # voxel 0 kept
    dense, first, second = image.get_fdata(), volume[:, :, 0], volume[:, :, 1]
    np.testing.assert_allclose(dense[:, :, 0], first, atol=1e-3)  # the first acquired slice, exact
    np.testing.assert_allclose(dense[:, :, 3], first + (second - first) * 3 / 4.4, atol=1e-2)  # 3 mm into the gap
    code, _, err = run(capsys, sparse, "-o", tmp_path / "input_grid.nii.gz", "--method", "linear", "--grid", "input")
    assert code == 0, err
    image = nib.load(tmp_path / "input_grid.nii.gz")
    assert image.shape == (40, 44, 29) and np.allclose(image.header.get_zooms(), (1.0, 1.0, 1.1))
    np.testing.assert_allclose(image.get_fdata()[:, :, ::4], volume[:, :, :8], atol=1e-3)


def head(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A phantom brain inside a bright scalp and a noisy background, and its brain mask."""
    brain = phantom(seed=seed)
    volume = brain.copy()
    outside = brain == 0
    volume[outside] = np.random.default_rng(seed).uniform(20, 60, int(outside.sum()))
    volume[2:-2, 2:-2][outside[2:-2, 2:-2]] += 700  # "scalp": bright, all around the brain
    return volume, (brain > 0).astype(np.float32)


def test_mask_lets_the_network_fill_the_brain_and_linear_the_rest(tmp_path, capsys, caplog, tiny_checkpoint):
    volume, brain = head()
    sparse = make_sparse(tmp_path / "head.nii.gz", volume, np.eye(4), 2)
    mask = make_sparse(tmp_path / "head_mask.nii.gz", brain, np.eye(4), 2)
    stripped = make_sparse(tmp_path / "stripped.nii.gz", volume * brain, np.eye(4), 2)
    with caplog.at_level(logging.WARNING, logger="inpaint"):
        code, _, err = run(capsys, sparse, "-o", tmp_path / "out_masked.nii.gz", "--checkpoint", tiny_checkpoint,
                           "--mask", mask)
    assert code == 0, err
    assert "whole head" not in caplog.text  # the mask answers the skull question
    runs = {"network": [stripped, "--checkpoint", tiny_checkpoint], "head": [sparse, "--checkpoint", tiny_checkpoint],
            "linear": [sparse, "--method", "linear"]}
    for name, args in runs.items():
        assert run(capsys, args[0], "-o", tmp_path / f"out_{name}.nii.gz", *args[1:])[0] == 0
    masked, network, unmasked, linear = (nib.load(tmp_path / f"out_{name}.nii.gz").get_fdata()
                                         for name in ("masked", "network", "head", "linear"))
    inside = sparse_to_dense(torch.from_numpy(brain[:, :, ::5]), 2, 5).numpy() > 0.5  # the mask on the fill grid
    np.testing.assert_allclose(masked[~inside], linear[~inside], atol=1e-3)  # linear outside the brain
    core = ndimage.binary_erosion(inside, iterations=3)  # inside: the network, as on the skull-stripped file
    assert np.abs(masked - network)[core].mean() < 0.2 * np.abs(unmasked - network)[core].mean()
    assert np.abs(masked - linear)[core].mean() > 1.0


def test_a_whole_head_is_warned_about(tmp_path, capsys, caplog, tiny_checkpoint):
    sparse = make_sparse(tmp_path / "head.nii.gz", head()[0], np.eye(4), 2)
    with caplog.at_level(logging.WARNING, logger="inpaint"):
        assert run(capsys, sparse, "-o", tmp_path / "out.nii.gz", "--checkpoint", tiny_checkpoint)[0] == 0
    assert "looks like a whole head" in caplog.text and "--mask" in caplog.text


def test_folder_mode_writes_the_good_files_and_reports_the_bad_one(tmp_path, capsys):
    inputs = tmp_path / "in"
    make_sparse(inputs / "good.nii.gz", phantom(), LAS, 2)
    bad = phantom()
    bad[3, 3, 3] = np.nan
    make_sparse(inputs / "bad.nii.gz", bad, LAS, 2, interval=3)
    code, _, err = run(capsys, inputs, "-o", tmp_path / "out", "--method", "linear")
    assert code == 2 and "bad.nii.gz" in err and "NaN" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.json", "good.nii.gz"]


@pytest.mark.parametrize("method", ["linear", "cubic"])
def test_simulate_restores_on_the_input_grid_and_prints_metrics(tmp_path, capsys, caplog, method):
    volume = phantom()
    source = write_nifti(tmp_path / "full.nii.gz", volume, LAS)
    with caplog.at_level(logging.INFO, logger="inpaint"):
        code, out, _ = run(capsys, source, "-o", tmp_path / "restored.nii.gz", "--method", method, "--simulate",
                           "--interval", 4, "--offset", 1)
    assert code == 0 and "PSNR" in out and "missing-slice PSNR" in out
    assert caplog.records[-1].message.endswith("restored.nii.gz: 40x44x36 voxels of 0.9x0.9x1 mm (the input's grid); "
                                               "simulated: 9 slices kept (1 in 4, offset 1), the others filled")
    image = nib.load(tmp_path / "restored.nii.gz")
    expected = fill_missing(torch.from_numpy(volume), 2, kept_indices(36, 4, 1), method).numpy()
    np.testing.assert_allclose(image.get_fdata(), expected, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(image.affine, LAS, atol=1e-6)


def test_checkpoint_prediction_keeps_acquired_slices(tmp_path, capsys, tiny_checkpoint):
    sparse = make_sparse(tmp_path / "sparse.nii.gz", phantom(seed=9), np.eye(4), 2)
    code, out, _ = run(capsys, sparse, "-o", tmp_path / "dense.nii.gz", "--checkpoint", tiny_checkpoint,
                          "--data-consistency", "on")
    assert code == 0, out
    dense = nib.load(tmp_path / "dense.nii.gz").get_fdata()
    acquired = nib.load(sparse).get_fdata()
    assert dense.shape == (40, 44, 36) and np.isfinite(dense).all()
    np.testing.assert_allclose(dense[:, :, ::5], acquired, atol=1e-3)


def test_every_output_says_what_made_it(tmp_path, capsys, tiny_checkpoint):
    import hashlib
    import json

    sparse = make_sparse(tmp_path / "sparse.nii.gz", phantom(seed=9), np.eye(4), 2)
    argv = [sparse, "-o", tmp_path / "dense.nii.gz", "--checkpoint", tiny_checkpoint, "--data-consistency", "on"]
    assert run(capsys, *argv)[0] == 0
    side = json.loads((tmp_path / "dense.json").read_text())
    assert side["input_sha256"] == hashlib.sha256(sparse.read_bytes()).hexdigest()
    assert side["method"]["sha256"] == hashlib.sha256(Path(tiny_checkpoint).read_bytes()).hexdigest()
    assert side["method"]["generator"] == "dense_unet" and side["inpaint_version"]
    assert side["settings"]["data_consistency"] == {"value": True, "source": "command line"}
    assert side["settings"]["overlap"]["source"] == "checkpoint" and side["options"]["grid"]["source"] == "default"
    assert side["output_shape"] == [40, 44, 36] and side["command"][:3] == ["python", "-m", "inpaint.predict"]
    descrip = nib.load(tmp_path / "dense.nii.gz").header["descrip"].item().decode()
    assert descrip.startswith("inpaint ") and "dense_unet" in descrip and "json" in descrip
    (tmp_path / "dense.nii.gz").unlink()  # the sidecar alone still guards the output name
    code, _, err = run(capsys, *argv)
    assert_one_line_error(code, err, "dense.json exists", "--overwrite")
    assert run(capsys, *argv, "--overwrite")[0] == 0


def test_checkpoint_resamples_in_plane_and_warns_about_skull(tmp_path, capsys, caplog, tiny_checkpoint):
    volume = phantom(shape=(24, 26, 36), seed=3)
    volume[volume == 0] = np.random.default_rng(0).uniform(50, 100, int((volume == 0).sum()))  # a noisy head
    sparse = make_sparse(tmp_path / "sparse.nii.gz", volume, np.diag([2.0, 2.0, 1.0, 1.0]), 2)
    with caplog.at_level(logging.INFO, logger="inpaint"):
        code, _, _ = run(capsys, sparse, "-o", tmp_path / "dense.nii.gz", "--checkpoint", tiny_checkpoint,
                         "--data-consistency", "on", "--grid", "input")
    assert code == 0
    assert "resampling [24, 26] -> [48, 52]" in caplog.text and "skull-strip" in caplog.text
    dense = nib.load(tmp_path / "dense.nii.gz").get_fdata()
    assert dense.shape == (24, 26, 36)
    np.testing.assert_allclose(dense[:, :, ::5], nib.load(sparse).get_fdata(), atol=1e-3)
    code, _, err = run(capsys, sparse, "-o", tmp_path / "model_grid.nii.gz", "--checkpoint", tiny_checkpoint,
                       "--grid", "isotropic")
    assert code == 0, err  # the checkpoint's 1 mm: in-plane resampled before the fill
    image = nib.load(tmp_path / "model_grid.nii.gz")
    assert image.shape == (47, 51, 36) and np.allclose(image.header.get_zooms(), 1.0)
    code, _, err = run(capsys, sparse, "-o", tmp_path / "scan_grid.nii.gz", "--checkpoint", tiny_checkpoint,
                       "--data-consistency", "on")
    assert code == 0, err  # the default: the scan's 2 mm voxels; the network fills 5-fold at 1 mm, then 1 -> 2 mm
    image = nib.load(tmp_path / "scan_grid.nii.gz")
    assert image.shape == (24, 26, 18) and np.allclose(image.header.get_zooms(), 2.0)
    acquired = nib.load(sparse)
    np.testing.assert_allclose(image.affine @ [0, 0, 0, 1], acquired.affine @ [0, 0, 0, 1], atol=1e-6)  # voxel 0 kept
    output, sparse_data = image.get_fdata(), acquired.get_fdata()

    def match(shift: int) -> float:  # correlation of output slices 0, 10, 20 mm with acquired slices shifted by one
        return float(np.corrcoef(output[:, :, [0, 5, 10]].ravel(), sparse_data[:, :, [shift, 2 + shift, 4 + shift]].ravel())[0, 1])

    assert match(0) > 0.9 and match(0) > match(1) + 0.1  # the acquired slices in place (smoothed by 1 -> 2 mm only)


def nan_volume(path: Path) -> Path:
    data = phantom()[:, :, ::5]
    data[0, 0, 0] = np.nan
    return write_nifti(path, data, np.diag([1.0, 1.0, 5.0, 1.0]))


def unreadable(path: Path) -> Path:
    path.write_text("not a nifti")
    return path


BAD_INPUTS = {
    "2d": (lambda p: write_nifti(p, phantom()[:, :, 0]), "expected one 3D volume"),
    "4d": (lambda p: write_nifti(p, np.stack([phantom()] * 2, -1)), "expected one 3D volume"),
    "nan": (nan_volume, "NaN"),
    "one slice": (lambda p: write_nifti(p, phantom()[:, :, :1], np.diag([1.0, 1.0, 5.0, 1.0])), "holds a single slice"),
    "spacing": (lambda p: write_nifti(p, phantom()[:, :, ::5], np.diag([1.0, 1.0, 1.4, 1.0])), "--target-spacing"),
    "dense": (lambda p: write_nifti(p, phantom(), np.eye(4)), "nothing to fill"),
    "unreadable": (unreadable, "cannot read"),
    "missing": (lambda p: p, "no such file"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_a_one_line_error_and_writes_nothing(tmp_path, capsys, case):
    make, needle = BAD_INPUTS[case]
    source = make(tmp_path / f"{case}.nii.gz")
    code, _, err = run(capsys, source, "-o", tmp_path / "out.nii.gz", "--method", "linear")
    assert_one_line_error(code, err, needle, source.name)
    assert list(tmp_path.glob("out*")) == [] and list(tmp_path.glob(".out*")) == []


BAD_OPTIONS = {  # each a one-line error before any file is read or any inference runs
    "interval 0": (["--simulate", "--interval", "0"], "--interval 0"),
    "offset": (["--simulate", "--interval", "5", "--offset", "5"], "--offset 5"),
    "target spacing 0": (["--target-spacing", "0"], "--target-spacing 0"),
    "mask of another shape": (["--mask", "{tmp}/small_mask.nii.gz"], "mask shape"),
    "mask on another grid": (["--mask", "{tmp}/shifted_mask.nii.gz"], "its affine differs"),
    "missing mask": (["--mask", "{tmp}/nope_mask.nii.gz"], "no such mask file"),
    "odd overlap": (["--overlap", "7"], "--overlap 7"),
    "output without a NIfTI name": (["-o", "{tmp}/out.png"], "name the output .nii.gz"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_bad_options_are_one_line_errors_before_any_work(tmp_path, capsys, monkeypatch, case):
    sparse = make_sparse(tmp_path / "sparse.nii.gz", phantom(), LAS, 2)
    write_nifti(tmp_path / "small_mask.nii.gz", np.ones((4, 4, 4), np.float32))
    shifted = LAS.copy()
    shifted[:3, 2] *= 5
    shifted[0, 3] += 10
    write_nifti(tmp_path / "shifted_mask.nii.gz", np.ones((40, 44, 8), np.float32), shifted)
    monkeypatch.setattr("inpaint.predict.predict_file", lambda *a: pytest.fail("no work should start"))
    extra, needle = BAD_OPTIONS[case]
    extra = [e.format(tmp=tmp_path) for e in extra]
    output = [] if "-o" in extra else ["-o", str(tmp_path / "out.nii.gz")]
    code, _, err = run(capsys, sparse, *output, *extra, "--method", "linear")
    assert_one_line_error(code, err, needle)


def test_mask_auto_without_bet_is_a_one_line_error_before_any_work(tmp_path, capsys, monkeypatch):
    sparse = make_sparse(tmp_path / "sparse.nii.gz", phantom(), LAS, 2)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "brainextractor" else find_spec(name, *a))
    monkeypatch.setattr("inpaint.predict.predict_file", lambda *a: pytest.fail("no work should start"))
    code, _, err = run(capsys, sparse, "-o", tmp_path / "out.nii.gz", "--method", "linear", "--mask", "auto")
    assert_one_line_error(code, err, "--mask auto needs brainextractor", ".[skull]")


def test_unwritable_output_folder_and_missing_cuda_are_caught_before_any_work(tmp_path, capsys, monkeypatch):
    sparse = make_sparse(tmp_path / "sparse.nii.gz", phantom(), LAS, 2)
    monkeypatch.setattr("inpaint.predict.predict_file", lambda *a: pytest.fail("no work should start"))
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr("inpaint.predict.os.access", lambda path, mode: Path(path) != locked)  # root ignores chmod
    code, _, err = run(capsys, sparse, "-o", locked / "out.nii.gz", "--method", "linear")
    assert_one_line_error(code, err, "cannot write in", "locked")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    code, _, err = run(capsys, sparse, "-o", tmp_path / "out.nii.gz", "--checkpoint", "pretrained", "--device", "cuda")
    assert_one_line_error(code, err, "--device cuda", "--device cpu")


def test_existing_output_needs_overwrite(tmp_path, capsys):
    sparse = make_sparse(tmp_path / "sparse.nii.gz", phantom(), LAS, 2)
    (tmp_path / "dense.nii.gz").write_text("keep me")
    code, _, err = run(capsys, sparse, "-o", tmp_path / "dense.nii.gz", "--method", "linear")
    assert_one_line_error(code, err, "dense.nii.gz exists", "--overwrite")
    assert (tmp_path / "dense.nii.gz").read_text() == "keep me"
    assert run(capsys, sparse, "-o", tmp_path / "dense.nii.gz", "--method", "linear", "--overwrite")[0] == 0


def test_bad_checkpoints_are_one_line_errors(tmp_path, capsys, monkeypatch, tiny_checkpoint):
    sparse = make_sparse(tmp_path / "sparse.nii.gz", phantom(), LAS, 2)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00" * 64)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "epoch": 3}, foreign)
    other = torch.load(tiny_checkpoint, weights_only=False)
    other["hyper_parameters"]["generator"]["features"] = 8  # weights of a 4-feature net, config of an 8-feature one
    mismatched = tmp_path / "other_generator.ckpt"
    torch.save(other, mismatched)
    cases = {garbage: "not a PyTorch checkpoint", foreign: "not an inpaint checkpoint",
             mismatched: "do not build generator 'dense_unet'", tmp_path / "nope.ckpt": "no such checkpoint"}
    for checkpoint, needle in cases.items():
        code, _, err = run(capsys, sparse, "-o", tmp_path / "out.nii.gz", "--checkpoint", checkpoint)
        assert_one_line_error(code, err, needle, checkpoint.name)
    code, _, err = run(capsys, sparse, "-o", tmp_path / "out.nii.gz", "--checkpoint", "pretrained-nope")
    assert_one_line_error(code, err, "no such pretrained model", "pretrained-dense-unet")
    monkeypatch.setattr("inpaint.checkpoint.PRETRAINED", tmp_path / "no_models")  # an install without package data
    code, _, err = run(capsys, sparse, "-o", tmp_path / "out.nii.gz", "--checkpoint", "pretrained")
    assert_one_line_error(code, err, "no pretrained model in", "reinstall inpaint or pass a checkpoint path")
    assert not (tmp_path / "out.nii.gz").exists()


@pytest.mark.realdata
def test_real_sparse_acquisition_matches_the_protocol_linear_fill(shared_data, tmp_path, capsys):
    image = nib.load(shared_data / "sub-02_T1w.nii.gz")
    volume = np.asanyarray(image.dataobj)
    sparse = make_sparse(tmp_path / "sub-02_sparse.nii.gz", volume, image.affine, 2)
    assert nib.load(sparse).header.get_zooms()[2] == pytest.approx(5.0)
    code, _, err = run(capsys, sparse, "-o", tmp_path / "dense.nii.gz", "--method", "linear", "--grid", "input",
                       "--target-spacing", "1")
    assert code == 0, err
    dense = nib.load(tmp_path / "dense.nii.gz")
    expected = fill_missing(torch.from_numpy(volume.astype(np.float32)), 2, kept_indices(volume.shape[2], 5)).numpy()
    n = dense.shape[2]
    assert n == (volume.shape[2] - 1) // 5 * 5 + 1
    np.testing.assert_allclose(dense.get_fdata(), expected[:, :, :n], rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(dense.affine, image.affine, atol=1e-5)


def test_interval_without_simulate_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "x.nii.gz"), "-o", str(tmp_path / "y.nii.gz"), "--method", "linear", "--interval", "4"])
    assert exit_info.value.code == 2 and "only with --simulate" in capsys.readouterr().err


def test_a_folder_with_mgz_files_writes_nifti_outputs(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    sparse = nib.Nifti1Image(phantom()[:, :, ::5], np.diag([1.0, 1.0, 5.0, 1.0]))
    nib.save(nib.MGHImage(sparse.get_fdata().astype(np.float32), sparse.affine), str(folder / "scan.mgz"))
    code, out, err = run(capsys, folder, "-o", tmp_path / "out", "--method", "linear")
    assert code == 0, err
    assert (tmp_path / "out" / "scan.nii.gz").is_file()


def test_a_checkpoint_typo_lists_the_committed_models(tmp_path, capsys):
    sparse = make_sparse(tmp_path / "sparse.nii.gz", phantom(), LAS, 2)
    code, _, err = run(capsys, sparse, "-o", tmp_path / "out.nii.gz", "--checkpoint", "pretraind")
    assert_one_line_error(code, err, "pretraind: no such checkpoint file", "pretrained, pretrained-slice-resnet")


def rotation_about_a(degrees: float) -> np.ndarray:
    """A 1 mm affine turned about the A/P axis: its S/I voxel axis is oblique by ``degrees``."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[c, 0, s, 0.0], [0, 1, 0, 0], [-s, 0, c, 0], [0, 0, 0, 1]])


@pytest.mark.parametrize(("axis", "plane", "code"), [(0, "sagittal", "R"), (1, "coronal", "A"), (2, "axial", "S")])
def test_any_slice_orientation_is_filled_or_refused_for_the_right_reason(tmp_path, capsys, axis, plane, code):
    volume = phantom(seed=4)
    sparse = make_sparse(tmp_path / f"{plane}.nii.gz", volume, np.eye(4), axis)  # 5 mm along the sparse axis
    out = tmp_path / f"{plane}_linear.nii.gz"
    assert run(capsys, sparse, "-o", out, "--method", "linear")[0] == 0  # a classical fill works along any axis
    filled = nib.load(out).get_fdata()
    expected = sparse_to_dense(torch.from_numpy(nib.load(sparse).get_fdata()).float(), axis, 5).numpy()
    np.testing.assert_allclose(filled, expected, atol=1e-3)
    code_, _, err = run(capsys, sparse, "-o", tmp_path / f"{plane}_net.nii.gz", "--checkpoint", "pretrained")
    if plane == "axial":
        assert code_ == 0, err
    else:
        assert_one_line_error(code_, err, f"a {plane} acquisition", f"voxel axis {axis} ({code}, 5 mm apart",
                              "learnt axial", "--method linear")


def test_an_oblique_acquisition_is_filled_by_linear_and_refused_by_a_network(tmp_path, capsys):
    sparse = make_sparse(tmp_path / "oblique.nii.gz", phantom(seed=5), rotation_about_a(40), 2)
    assert run(capsys, sparse, "-o", tmp_path / "linear.nii.gz", "--method", "linear", "--grid", "input")[0] == 0
    code, _, err = run(capsys, sparse, "-o", tmp_path / "net.nii.gz", "--checkpoint", "pretrained")
    assert_one_line_error(code, err, "oblique by 40 degrees", "voxel axis 2", "--method linear")


@pytest.mark.parametrize("grid, extra, zooms", [
    ("inplane", [], (0.9, 0.9, 0.9)),  # the default: the scan's 0.9 mm voxels, 6-fold at 0.833 mm, then 0.9 mm
    ("isotropic", ["--target-spacing", "1"], (1.0, 1.0, 1.0)),  # --target-spacing alone means isotropic
    ("isotropic", ["--grid", "isotropic", "--target-spacing", "0.5"], (0.5, 0.5, 0.5)),
    ("input", ["--grid", "input"], (0.9, 0.9, 5 / 6)),  # N = round(5 / 0.9) = 6, no resampling
])
def test_the_output_grid_follows_the_intent(tmp_path, capsys, caplog, grid, extra, zooms):
    sparse = make_sparse(tmp_path / "sparse.nii.gz", phantom(), LAS, 2)  # 0.9 x 0.9 mm in-plane, 5 mm slices
    with caplog.at_level(logging.INFO, logger="inpaint"):
        code, _, err = run(capsys, sparse, "-o", tmp_path / "dense.nii.gz", "--method", "linear", *extra)
    assert code == 0, err
    image = nib.load(tmp_path / "dense.nii.gz")
    np.testing.assert_allclose(image.header.get_zooms(), zooms, atol=1e-4)
    assert f"(grid {grid}); 8 acquired slices 5 mm apart" in caplog.records[-1].message
    assert "x".join(map(str, image.shape)) in caplog.records[-1].message


def test_inplane_grid_with_a_target_spacing_is_refused(tmp_path, capsys):
    sparse = make_sparse(tmp_path / "sparse.nii.gz", phantom(), LAS, 2)
    with pytest.raises(SystemExit):
        main([str(sparse), "-o", str(tmp_path / "d.nii.gz"), "--method", "linear", "--grid", "inplane",
              "--target-spacing", "1"])
    assert "--grid inplane takes the scan's in-plane spacing" in capsys.readouterr().err


@pytest.mark.parametrize("sidecar, extra, model", [
    (None, [], "pretrained-thick"),  # a sparse scan: 2D slices are thick
    ({"SliceThickness": 4.5}, [], "pretrained-thick"),
    ({"SliceThickness": 1.0}, [], "pretrained"),  # stated thin slices (1 of 5 mm)
    (None, ["--simulate"], "pretrained"),
    (None, ["--simulate", "--thick-slices"], "pretrained-thick"),
])
def test_without_a_model_the_one_for_the_slices_is_chosen_and_recorded(tmp_path, capsys, caplog, sidecar, extra,
                                                                       model):
    if "--simulate" in extra:
        scan = write_nifti(tmp_path / "scan.nii.gz", phantom(shape=(40, 44, 21)), LAS)
    else:
        scan = make_sparse(tmp_path / "scan.nii.gz", phantom(shape=(40, 44, 21)), LAS, 2)
    if sidecar:
        (tmp_path / "scan.json").write_text(json.dumps(sidecar))
    with caplog.at_level(logging.INFO, logger="inpaint"):
        code, _, err = run(capsys, scan, "-o", tmp_path / "out" / "dense.nii.gz", *extra)
    assert code == 0, err
    assert f"model: {model} (" in caplog.text
    assert " suits " not in caplog.text  # the right model: no warning
    recorded = json.loads((tmp_path / "out" / "dense.json").read_text())
    assert recorded["method"]["name"] == model and recorded["options"]["model"]["source"].startswith("default: ")


def test_a_thin_slice_model_on_thick_slices_is_warned_about(tmp_path, capsys, caplog):
    scan = make_sparse(tmp_path / "scan.nii.gz", phantom(shape=(40, 44, 21)), LAS, 2)
    with caplog.at_level(logging.INFO, logger="inpaint"):
        assert run(capsys, scan, "-o", tmp_path / "a.nii.gz", "--checkpoint", "pretrained")[0] == 0
    assert "pretrained learnt thin slices" in caplog.text and "--checkpoint pretrained-thick suits those" in caplog.text
    (tmp_path / "scan.json").write_text(json.dumps({"SliceThickness": 5.0}))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="inpaint"):
        assert run(capsys, scan, "-o", tmp_path / "b.nii.gz", "--checkpoint", "pretrained")[0] == 0
    assert "its sidecar states 5 mm thick slices, but the model learnt thin slices" in caplog.text
    (tmp_path / "scan.json").write_text(json.dumps({"SliceThickness": 1.0}))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="inpaint"):
        assert run(capsys, scan, "-o", tmp_path / "c.nii.gz", "--checkpoint", "pretrained-thick")[0] == 0
    assert "its sidecar states 1 mm thick slices, but the model learnt thick slices; --checkpoint pretrained suits" \
        in caplog.text


def test_save_mask_writes_the_auto_mask_beside_the_output(tmp_path, capsys, monkeypatch):
    volume, brain = head()
    sparse = make_sparse(tmp_path / "sparse.nii.gz", volume, LAS, 2)
    sparse_brain = np.take(brain, np.arange(0, brain.shape[2], 5), axis=2) > 0
    monkeypatch.setattr("inpaint.predict.require_bet", lambda: None)
    monkeypatch.setattr("inpaint.predict.bet_mask", lambda v, a, s: torch.from_numpy(sparse_brain))
    with pytest.raises(SystemExit):  # the mask of a --mask FILE is the user's already
        main([str(sparse), "-o", str(tmp_path / "x.nii.gz"), "--method", "linear", "--save-mask"])
    argv = [sparse, "-o", tmp_path / "dense.nii.gz", "--method", "linear", "--mask", "auto", "--save-mask"]
    assert run(capsys, *argv)[0] == 0
    saved = nib.load(tmp_path / "dense_mask.nii.gz")
    np.testing.assert_array_equal(saved.get_fdata() > 0, sparse_brain)
    np.testing.assert_allclose(saved.affine, nib.load(sparse).affine, atol=1e-5)  # the input's grid: reusable
    (tmp_path / "dense.nii.gz").unlink()
    (tmp_path / "dense.json").unlink()
    code, _, err = run(capsys, *argv)
    assert_one_line_error(code, err, "dense_mask.nii.gz exists", "--overwrite")
