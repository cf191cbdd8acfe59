"""inpaint.reporting: one row builder for summary.md and compare, paired statistics, the tissue table."""

from __future__ import annotations

import numpy as np
import pytest

from inpaint.reporting import method_cells, paired, segment_markdown, subjects_better


def test_method_cells_pair_each_subject_with_linear():
    rows = [{"subject": s, "method": m, "psnr": p, "ssim": 0.8 + d, "hfen": 0.5 - d, "psnr_missing": p - 1,
             "seam": 1.0, "seconds": 2.0}
            for s, base in (("a", 30.0), ("b", 25.0), ("c", 28.0))
            for m, p, d in (("linear", base, 0.0), ("net", base + (1.0 if s != "c" else -0.5), 0.01))]
    np.testing.assert_allclose(paired(rows, "net", "psnr"), [1.0, 1.0, -0.5])
    assert subjects_better(rows, "net") == "2/3/3"
    cells = method_cells(rows, "net")
    assert cells["n"] == "3" and cells["psnr_gain"] == "+0.500 ± 0.866" and cells["better"] == "2/3/3 of 3"
    assert method_cells(rows, "linear")["psnr_gain"] == "—" and method_cells(rows, "linear")["psnr"] == "27.67 ± 2.52"
    assert cells["seconds"] == "2.00"
    with pytest.raises(KeyError):
        cells["unknown"]


def test_tissue_table_leaves_out_subjects_whose_reference_segmentation_failed():
    def ref(subject, wm):
        return {"subject": subject, "vol_gm": 500.0, "vol_wm": wm, "vol_csf": 300.0,
                **{f"ceiling_dice_{t}": 0.99 for t in ("gm", "wm", "csf")}}

    def row(subject, dice):
        return {"subject": subject, "method": "linear", **{f"dice_{t}": dice for t in ("gm", "wm", "csf")},
                **{f"vol_{t}": 400.0 for t in ("gm", "wm", "csf")}}

    lines = segment_markdown([row("a", 0.9), row("b", 0.01)], ["linear"], [ref("a", 400.0), ref("b", 1.7)])
    linear = next(line for line in lines if line.startswith("| linear |"))
    assert linear.split(" | ")[1] == "0.9000"  # b's failed reference does not drag the mean down
    assert any("Excluded" in line and "b (GM 500.0 mL, WM 1.7 mL, CSF 300.0 mL)" in line for line in lines)
