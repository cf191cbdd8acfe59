"""python -m inpaint.compare: rows from several evaluate folders, each scored against its own linear."""

from __future__ import annotations

import numpy as np

from inpaint.compare import main as compare
from tests.inpaint.test_evaluate import evaluate, rows


def test_compare_rows_from_two_folders_each_against_its_own_linear(tiny_root, tmp_path, capsys):
    for interval in (4, 5):
        assert evaluate(capsys, "--data", tiny_root, "--methods", "cubic", "--interval", interval, "--no-figures",
                        "--out", tmp_path / f"i{interval}")[0] == 0
    capsys.readouterr()
    assert compare([f"cubic 4={tmp_path / 'i4'}:cubic", f"linear 5={tmp_path / 'i5'}:linear",
                    f"cubic 5={tmp_path / 'i5'}:cubic", "--out", str(tmp_path / "t.md")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and (tmp_path / "t.md").read_text().splitlines() == lines
    cubic4, linear5, cubic5 = (line.split(" | ") for line in lines[2:])
    assert "interval 4" in cubic4[-1] and "interval 5" in cubic5[-1]
    assert linear5[7] == "—" and cubic5[7] != "—"
    psnr = {(r["subject"], r["method"]): float(r["psnr"]) for r in rows(tmp_path / "i5")}
    gain = np.mean([psnr[s, "cubic"] - psnr[s, "linear"] for s, m in psnr if m == "linear"])
    assert cubic5[7].startswith(f"{gain:+.3f}")
    seconds = np.mean([float(r["seconds"]) for r in rows(tmp_path / "i5") if r["method"] == "cubic"])
    assert lines[0].split(" | ")[-2] == "fill s / volume" and cubic5[-2] == f"{seconds:.2f}"  # the time of each row
    assert compare([f"x={tmp_path / 'i5'}:dense_unet"]) == 2 and "has no method 'dense_unet'" in capsys.readouterr().err
    assert compare(["nonsense"]) == 2 and "LABEL=FOLDER:METHOD" in capsys.readouterr().err
