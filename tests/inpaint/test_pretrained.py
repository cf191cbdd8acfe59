"""The committed pretrained models: small, loadable by name, described by their cards, better than linear."""

from __future__ import annotations

import hashlib
import re

import nibabel as nib
import numpy as np
import pytest

from inpaint.checkpoint import PRETRAINED, PRETRAINED_MODELS, load_module, model_card
from inpaint.evaluate import main as evaluate
from inpaint.predict import main as predict
from tests.conftest import phantom
from tests.inpaint.test_predict import make_sparse


def test_every_pretrained_name_has_its_file_and_card():
    for name, file in PRETRAINED_MODELS.items():
        assert (PRETRAINED / file).stat().st_size < 20 * 2**20, name
        assert model_card(name).is_file(), name
    assert set(p.name for p in PRETRAINED.glob("*.ckpt")) == set(PRETRAINED_MODELS.values())  # nothing unnamed


@pytest.mark.parametrize("name", list(PRETRAINED_MODELS))
def test_each_card_matches_its_file(name):
    paper_design = name == "pretrained-dense-unet"
    generator, intervals = ("dense_unet", "interval 5") if paper_design else ("slice_resnet", "intervals 2–8")
    path = PRETRAINED / PRETRAINED_MODELS[name]
    module = load_module(name)
    assert module.checkpoint_path == str(path) and module.hparams.generator["name"] == generator
    card = model_card(name).read_text()
    parameters = sum(p.numel() for p in module.generator.parameters())
    assert f"{parameters:,}" in card, "the card's parameter count is not the model's"
    assert hashlib.sha256(path.read_bytes()).hexdigest() in card, "the card's sha256 is not the file's"
    assert intervals in card
    for key in ("residual", "known_channel", "data_consistency"):
        assert re.search(rf"`model\.{key}={str(module.model_cfg[key]).lower()}`", card), key
    assert "CC0" in card and "ds002748" in card


def test_pretrained_predicts_a_sparse_scan_from_the_cli(tmp_path, capsys):
    sparse = make_sparse(tmp_path / "sparse.nii.gz", phantom(seed=5), np.eye(4), 2)
    assert predict([str(sparse), "-o", str(tmp_path / "dense.nii.gz"), "--checkpoint", "pretrained"]) == 0, \
        capsys.readouterr().err
    dense = nib.load(tmp_path / "dense.nii.gz").get_fdata()
    assert dense.shape == (40, 44, 36) and np.isfinite(dense).all()
    np.testing.assert_allclose(dense[:, :, ::5], nib.load(sparse).get_fdata(), atol=1e-3)  # trained with DC


def test_pretrained_thick_restores_the_acquired_slices_too(tmp_path, capsys):
    volume = phantom(seed=5)
    sparse = make_sparse(tmp_path / "sparse.nii.gz", volume, np.eye(4), 2)
    assert predict([str(sparse), "-o", str(tmp_path / "dense.nii.gz"), "--checkpoint", "pretrained-thick"]) == 0, \
        capsys.readouterr().err
    module = load_module("pretrained-thick")
    assert module.thick_slices and not module.model_cfg["data_consistency"]
    dense = nib.load(tmp_path / "dense.nii.gz").get_fdata()
    assert dense.shape == (40, 44, 36) and np.isfinite(dense).all()
    acquired = nib.load(sparse).get_fdata()
    assert np.abs(dense[:, :, ::5] - acquired).max() > 1.0  # slab means are not copied: the model predicts them


@pytest.mark.parametrize(("name", "acquisition"), [("pretrained", []), ("pretrained-thick", ["--thick-slices"])])
def test_pretrained_beats_linear_on_a_test_subject(shared_data, tmp_path, capsys, name, acquisition):
    out = tmp_path / "eval"
    assert evaluate(["--data", str(shared_data), "--subjects", "sub-11", "--checkpoint", f"model={name}",
                     "--methods", "linear", "--no-figures", "--out", str(out), *acquisition]) == 0
    capsys.readouterr()
    rows = {r.split(",")[1]: [float(v) for v in r.split(",")[2:6]] for r in (out / "metrics.csv").read_text().split()[1:]}
    (psnr, ssim, hfen, _), (psnr0, ssim0, hfen0, _) = rows["model"], rows["linear"]
    assert psnr > psnr0 and ssim > ssim0 and hfen < hfen0
