"""inpaint.morphometry_report: regional agreement, the summary section and the voxel-wise maps (no ANTs needed)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from inpaint.figures import _pyplot
from inpaint.morphometry import REFERENCE_COLUMNS, REGION_NAMES, REGIONS
from inpaint.morphometry_report import (
    morphometry_figures,
    morphometry_markdown,
    regional_agreement,
    voxelwise_figure,
    voxelwise_maps,
)

SUBJECTS = [f"sub-{i:02d}" for i in range(5)]


def tables() -> tuple[list[dict], list[dict]]:
    """References with per-subject values; 'plus' = reference + 1 everywhere, 'noise' = uncorrelated."""
    rng = np.random.default_rng(0)
    references, rows = [], []
    for subject in SUBJECTS:
        values = {f"{n}_{q}": float(rng.uniform(2, 10)) for n in REGION_NAMES for q in ("gm_ml", "thickness_mm")}
        volumes = {f"prior_vol_{t}": float(rng.uniform(300, 600)) for t in ("gm", "wm", "csf")}
        references.append({"subject": subject, **values, **volumes,
                           **{k: 0.9 for k in REFERENCE_COLUMNS if "ceiling" in k}})
        for method, dice, shift in (("plus", 0.8, 1), ("noise", 0.7, 0)):
            tissues = {**{f"prior_dice_{t}": dice for t in ("gm", "wm", "csf")},
                       **{k: v + 10 * shift for k, v in volumes.items()}}
            regional = {k: v + 1 for k, v in values.items()} if shift else {k: float(rng.uniform(2, 10)) for k in values}
            rows.append({"subject": subject, "method": method, **regional, **tissues})
    return rows, references


def test_a_shifted_method_has_r_1_and_its_shift_as_bias():
    rows, references = tables()
    table = regional_agreement(rows, references, ["plus", "noise"])
    assert len(table) == 2 * len(REGIONS) * 2
    for row in (t for t in table if t["method"] == "plus"):
        assert row["n"] == 2 * len(SUBJECTS) and row["r"] == pytest.approx(1.0) and row["bias"] == pytest.approx(1.0)
    assert all(abs(t["r"]) < 0.95 for t in table if t["method"] == "noise")
    lines = morphometry_markdown(table, rows, references, ["plus", "noise"])
    assert any(line.startswith("| hippocampus | 1.000 / +1.000") for line in lines)
    # the tissue table with every subject: ceiling, Dice, volume bias and r per method
    assert f"{len(SUBJECTS)} subjects." in lines
    assert any(line.startswith("| reference segmented twice (ceiling) | 0.9000") for line in lines)
    plus = next(line for line in lines if line.startswith("| plus | 0.8000"))
    assert "+10.0" in plus and plus.rstrip(" |").endswith("1.000")


def test_voxelwise_maps_are_the_mean_paired_difference_and_its_t(tmp_path):
    folder = tmp_path / "morphometry"
    (folder / "gm_mni").mkdir(parents=True)
    rng = np.random.default_rng(1)
    shifts = [0.1, 0.2, 0.3]
    for subject, shift in zip(SUBJECTS, shifts, strict=False):
        reference = rng.uniform(0, 1, (6, 7, 8)).astype(np.float32)
        for name, data in (("reference", reference), ("m", reference + shift)):
            nib.save(nib.Nifti1Image(data, np.eye(4)), str(folder / "gm_mni" / f"{subject}_{name}.nii.gz"))
    mean, t, affine = voxelwise_maps(folder, SUBJECTS[:3], "m")
    np.testing.assert_allclose(mean, 0.2, atol=1e-5)
    np.testing.assert_allclose(t, 0.2 / (0.1 / np.sqrt(3)), rtol=1e-3)
    np.testing.assert_allclose(affine, np.eye(4))


def write_gm_maps(folder):
    """Random GM maps in MNI for SUBJECTS x (reference, plus, noise) under folder/morphometry/gm_mni."""
    (folder / "morphometry" / "gm_mni").mkdir(parents=True)
    for subject in SUBJECTS:
        for name in ("reference", "plus", "noise"):
            data = np.random.default_rng(len(name)).uniform(0, 1, (10, 12, 9)).astype(np.float32)
            nib.save(nib.Nifti1Image(data, np.eye(4)), str(folder / "morphometry" / "gm_mni" / f"{subject}_{name}.nii.gz"))


def test_figures_are_written(tmp_path):
    rows, references = tables()
    write_gm_maps(tmp_path)
    table = regional_agreement(rows, references, ["plus", "noise"])
    written = morphometry_figures(table, rows, references, ["plus", "noise"], tmp_path)
    assert [p.name for p in written] == ["morphometry_gm_ml.png", "morphometry_thickness_mm.png",
                                         "morphometry_voxelwise.png"]
    assert all(p.stat().st_size > 10_000 for p in written)
    assert (tmp_path / "morphometry" / "voxelwise_plus.nii.gz").is_file()


def test_voxelwise_colour_bar_labels_stay_beside_their_bars(tmp_path):
    """Each colour bar's unit label lies inside the figure and over no map (a long one ran into the t maps)."""
    write_gm_maps(tmp_path)
    fig = voxelwise_figure(tmp_path, SUBJECTS, ["plus", "noise"])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    maps = [ax.get_window_extent(renderer) for ax in fig.axes if ax.images and ax.get_title()]
    labels = [ax.yaxis.label for ax in fig.axes if ax.yaxis.label.get_text()]
    boxes = [(label.get_text(), label.get_window_extent(renderer)) for label in labels]
    figure_box = fig.bbox
    _pyplot().close(fig)
    assert len(maps) == 12 and len(labels) == 4
    for text, box in boxes:
        assert figure_box.y0 <= box.y0 and box.y1 <= figure_box.y1, text
        assert not any(box.overlaps(m) for m in maps), text
