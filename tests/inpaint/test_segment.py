"""inpaint.segment through evaluate --segment: Atropos tissue Dice and volumes (antspyx, its own venv)."""

from __future__ import annotations

import pytest

from tests.inpaint.test_evaluate import evaluate, rows


def test_segment_without_antspy_says_how_to_install(tiny_root, tmp_path, capsys):
    try:
        import ants  # noqa: F401

        pytest.skip("antspyx is installed here")
    except ImportError:
        pass
    code, _, err = evaluate(capsys, "--data", tiny_root, "--segment", "--out", tmp_path / "e")
    assert code == 2 and "pip install -e .[segment]" in err and not (tmp_path / "e" / "metrics.csv").exists()


@pytest.mark.slow
def test_segment_scores_tissues_against_a_reference_segmented_twice(tiny_root, tmp_path, capsys):
    pytest.importorskip("ants", reason="needs antspyx: pip install -e .[segment] in its own venv")
    out = tmp_path / "eval"
    code, _, err = evaluate(capsys, "--data", tiny_root, "--subjects", "sub-01,sub-02,sub-03", "--segment",
                            "--out", out, "--no-figures")
    assert code == 0, err
    for row in rows(out):
        assert all(0.3 < float(row[f"dice_{t}"]) <= 1 and float(row[f"vol_{t}"]) > 0 for t in ("gm", "wm", "csf"))
    reference = (out / "segment_reference.csv").read_text().splitlines()
    assert reference[0].startswith("subject,vol_gm") and len(reference) == 4
    assert all(float(v) > 0.95 for line in reference[1:] for v in line.split(",")[4:])  # the ceiling
    summary = (out / "summary.md").read_text()
    assert "reference segmented twice (ceiling)" in summary and "GM volume bias (mL)" in summary
