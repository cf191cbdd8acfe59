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

from inpaint.data.io import InputError, atomic_write
from inpaint.errors import report
from inpaint.reporting import CELLS, method_cells, read_rows

COLUMNS = ["n", "psnr", "ssim", "hfen", "psnr_missing", "seam", "psnr_gain", "ssim_gain", "hfen_change", "better", "p",
           "seconds"]
HEADER = ["row", *(CELLS[c] for c in COLUMNS), "settings"]


def parse_row(spec: str) -> tuple[str, Path, str]:
    """``LABEL=FOLDER:METHOD`` -> (label, folder, method), with one-line errors."""
    label, sep, rest = spec.partition("=")
    folder, colon, method = rest.rpartition(":")
    if not sep or not colon or not label or not folder or not method:
        raise InputError(f"{spec!r}: expected LABEL=FOLDER:METHOD, e.g. ours=eval/test:dense_unet")
    if not (Path(folder) / "metrics.csv").is_file():
        raise InputError(f"{spec!r}: {folder}/metrics.csv not found; run python -m inpaint.evaluate --out {folder} first")
    return label, Path(folder), method


def settings_text(folder: Path, method: str) -> str:
    """The degradation of a folder and, for a network, the settings it was restored with (settings.json)."""
    saved = folder / "settings.json"
    s = json.loads(saved.read_text()) if saved.exists() else {}
    restore = {**s, **s.get("restore", {}).get(method, {})}  # older folders: one set for every network
    parts = [f"interval {s.get('interval', '?')}"] + (["thick slices"] if s.get("thick_slices") else [])
    if method not in ("linear", "cubic"):
        parts += [f"{restore.get('aggregation', '?')} / overlap {restore.get('overlap', '?')}",
                  f"DC {restore.get('data_consistency', '?')}"]
    return ", ".join(parts)


def table_row(label: str, folder: Path, method: str) -> list[str]:
    """One Markdown row of ``method`` in ``folder`` against that folder's linear."""
    rows = read_rows(folder / "metrics.csv")
    if not any(r["method"] == method for r in rows):
        names = sorted({r["method"] for r in rows})
        raise InputError(f"{folder}/metrics.csv has no method {method!r}; it has {', '.join(names)}")
    cells = method_cells(rows, method)
    return [label, *(cells[c] for c in COLUMNS), settings_text(folder, method)]


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
        return report(error)
    if args.out:
        atomic_write(args.out, table)
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
