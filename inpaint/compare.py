"""One table from several ``inpaint.evaluate`` folders: each row a method of one folder, scored against that folder's linear.

    python -m inpaint.compare "paper=eval/repro:dense_unet_paper" "ours=eval/repro:dense_unet" \\
        "hann, overlap 16=eval/hann:dense_unet" --out docs/ablation.md

Each ``LABEL=FOLDER:METHOD`` names a row. Its gains (PSNR, SSIM; HFEN change, lower is better) are
paired per subject with the ``linear`` rows of the same folder, so rows evaluated under different
settings (interval, thick slices, aggregation) are each compared with the right baseline. The
settings column comes from the folder's settings.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from inpaint.data.io import InputError, atomic_write
from inpaint.figures import METRICS, format_p, mean_std, paired, subjects_better, wilcoxon_p

HEADER = ["row", "n", "PSNR (dB)", "SSIM", "HFEN", "missing-slice PSNR (dB)", "seam ratio", "PSNR gain (dB)",
          "SSIM gain", "HFEN change", "better than linear (PSNR/SSIM/HFEN)", "Wilcoxon p (PSNR)", "settings"]


def parse_row(spec: str) -> tuple[str, Path, str]:
    """``LABEL=FOLDER:METHOD`` -> (label, folder, method), with one-line errors."""
    label, sep, rest = spec.partition("=")
    folder, colon, method = rest.rpartition(":")
    if not sep or not colon or not label or not folder or not method:
        raise InputError(f"{spec!r}: expected LABEL=FOLDER:METHOD, e.g. ours=eval/test:dense_unet")
    if not (Path(folder) / "metrics.csv").is_file():
        raise InputError(f"{spec!r}: {folder}/metrics.csv not found; run python -m inpaint.evaluate --out {folder} first")
    return label, Path(folder), method


def settings_text(folder: Path) -> str:
    saved = folder / "settings.json"
    s = json.loads(saved.read_text()) if saved.exists() else {}
    parts = [f"interval {s.get('interval', '?')}", f"{s.get('aggregation', '?')} / overlap {s.get('overlap', '?')}",
             f"DC {s.get('data_consistency', '?')}"]
    if s.get("thick_slices"):
        parts.insert(1, "thick slices")
    return ", ".join(parts)


def table_row(label: str, folder: Path, method: str) -> list[str]:
    """One Markdown row of ``method`` in ``folder`` against that folder's linear."""
    from inpaint.evaluate import read_rows

    rows = read_rows(folder / "metrics.csv")
    mine = [r for r in rows if r["method"] == method]
    if not mine:
        names = sorted({r["method"] for r in rows})
        raise InputError(f"{folder}/metrics.csv has no method {method!r}; it has {', '.join(names)}")
    values = {k: np.array([r.get(k, np.nan) for r in mine], dtype=np.float64) for k in (*METRICS, "seam")}
    gains = {k: paired(rows, method, k) for k in ("psnr", "ssim", "hfen")}
    base = method == "linear"
    cells = [label, str(len(mine))] + [mean_std(values[k], METRICS[k][1]) for k in ("psnr", "ssim", "hfen", "psnr_missing")]
    cells.append(mean_std(values["seam"], "{:.3f}"))
    cells += ["—"] * 5 if base else [mean_std(gains["psnr"], "{:+.3f}"), mean_std(gains["ssim"], "{:+.4f}"),
                                     mean_std(gains["hfen"], "{:+.4f}"), f"{subjects_better(rows, method)} of {gains['psnr'].size}",
                                     format_p(wilcoxon_p(gains["psnr"]))]
    return cells + [settings_text(folder)]


def compare(specs: list[str]) -> str:
    """The Markdown table for ``LABEL=FOLDER:METHOD`` specs."""
    rows = [table_row(*parse_row(spec)) for spec in specs]
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in rows]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inpaint.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rows", nargs="+", metavar="LABEL=FOLDER:METHOD", help="one table row each")
    parser.add_argument("--out", type=Path, help="also write the table here (atomically)")
    args: Any = parser.parse_args(argv)
    try:
        table = compare(args.rows)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.out:
        atomic_write(args.out, table)
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
