"""scripts/learning_curve.py: resumed logs merged by step, work columns, marks, the printed table."""

from __future__ import annotations

import importlib.util

from tests.conftest import REPO


def load_script():
    spec = importlib.util.spec_from_file_location("learning_curve", REPO / "scripts" / "learning_curve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_resumed_logs_are_merged_and_plotted(tmp_path, capsys):
    run = tmp_path / "run"
    header = "epoch,step,val/psnr_gain,work/cpu_hours,work/patches_seen\n"
    for folder, lines in (("logs", ["0,9,0.5,,", ",9,,0.2,120"]), ("logs/resumed-1", ["1,19,0.9,,", ",19,,0.4,240"])):
        (run / folder).mkdir(parents=True)
        (run / folder / "metrics.csv").write_text(header + "\n".join(lines) + "\n")
    out = tmp_path / "curve.png"
    assert load_script().main([f"net={run}", "--points", "other=100:0.1,200:0.3", "--mark", "lr / 3=240:0.4",
                               "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| 120 | 0.20 | +0.500 |" in printed and "| 240 | 0.40 | +0.900 |" in printed
    assert "| 200 | nan | +0.300 |" in printed and out.read_bytes()[:4] == b"\x89PNG"


def test_a_shifted_val_set_gets_its_own_column_and_curve(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    (run / "logs" / "metrics.csv").write_text(
        "epoch,step,val/psnr_gain,val_shifted/psnr_gain,work/cpu_hours,work/patches_seen\n"
        "0,9,3.2,2.6,,\n,9,,,0.2,120\n1,19,3.1,2.7,,\n,19,,,0.4,240\n")
    out = tmp_path / "curve.png"
    assert load_script().main([f"net={run}", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| val PSNR gain (dB) | shifted val gain (dB) |" in printed
    assert "| 120 | 0.20 | +3.200 | +2.600 |" in printed and "| 240 | 0.40 | +3.100 | +2.700 |" in printed


def test_runs_compare_at_equal_cpu_hours(tmp_path, capsys):
    """--at: each run's gains interpolated between its validations, blank outside its span."""
    header = "epoch,step,val/psnr_gain,val_shifted/psnr_gain,work/cpu_hours,work/patches_seen\n"
    for name, rows in (("slow", "0,9,1.0,0.5,,\n,9,,,0.5,120\n1,19,2.0,1.5,,\n,19,,,1.5,240\n"),
                       ("fast", "0,9,1.0,,,\n,9,,,0.2,120\n1,19,1.4,,,\n,19,,,0.6,240\n")):
        (tmp_path / name / "logs").mkdir(parents=True)
        (tmp_path / name / "logs" / "metrics.csv").write_text(header + rows)
    assert load_script().main([f"slow={tmp_path / 'slow'}", f"fast={tmp_path / 'fast'}", "--at", "0.5,1",
                               "--out", str(tmp_path / "curve.png")]) == 0
    printed = capsys.readouterr().out
    assert ("| CPU-hours | slow: val gain (dB) | slow: shifted val gain (dB) | fast: val gain (dB) |" in printed)
    assert "| 0.50 | +1.00 | +0.50 | +1.30 |" in printed and "| 1.00 | +1.50 | +1.00 |  |" in printed


def test_until_hours_leaves_out_what_came_later(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    (run / "logs" / "metrics.csv").write_text("epoch,step,val/psnr_gain,work/cpu_hours,work/patches_seen\n"
                                              "0,9,1.0,,\n,9,,0.5,120\n1,19,2.0,,\n,19,,1.5,240\n")
    assert load_script().main([f"net={run}", "--until-hours", "1", "--out", str(tmp_path / "curve.png")]) == 0
    printed = capsys.readouterr().out
    assert "| 120 | 0.50 | +1.000 |" in printed and "+2.000" not in printed
