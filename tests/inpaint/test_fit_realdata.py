"""inpaint.fit on the real ds002748 volumes (skipped when ../shared/data is absent)."""

from __future__ import annotations

import numpy as np
import pytest

from inpaint.config import load
from inpaint.data.io import read_volume
from inpaint.fit import fit
from inpaint.geometry import kept_indices, slice_axis
from inpaint.interpolate import fill_missing
from inpaint.metrics import volume_metrics

pytestmark = pytest.mark.realdata


def protocol_linear(path) -> dict[str, float]:
    """PROTOCOL.md straight from the file: no normalisation, no reorientation, no patches."""
    data, affine = read_volume(path)
    reference = data[0].double()
    axis = slice_axis(affine)
    kept = kept_indices(reference.shape[axis], 5, 0)
    known = np.zeros(reference.shape[axis], bool)
    known[kept.numpy()] = True
    shape = [1, 1, 1]
    shape[axis] = -1
    import torch

    known_volume = torch.from_numpy(known).view(shape).expand(reference.shape)
    return volume_metrics(fill_missing(reference, axis, kept), reference, reference > 0, known_volume)


def test_linear_experiment_reports_the_protocol_mean(shared_data, tmp_path):
    cfg = load("linear", [f"data.root={shared_data}", f"output_dir={tmp_path}", "data.max_val_subjects=2",
                          "logger=none", "trainer.enable_progress_bar=false", "data.num_workers=0"])
    result = fit(cfg)
    rows = [protocol_linear(shared_data / f"{name}_T1w.nii.gz") for name in result["val_subjects"]]
    for key, tol in (("psnr", 0.01), ("ssim", 1e-4), ("hfen", 1e-4), ("psnr_missing", 0.01)):
        assert result["metrics"][f"val/{key}"] == pytest.approx(np.mean([r[key] for r in rows]), abs=tol), key
