"""Evaluation reporting: metrics.csv rows, paired statistics against linear, and the Markdown tables.

``summary_markdown`` (``inpaint.evaluate``'s summary.md) and ``inpaint.compare`` build their rows with one
function, :func:`method_cells`: mean ± std per metric, the paired gains over linear, how many subjects
improve, and the paired Wilcoxon signed-rank p. Plots live in ``inpaint.figures``.
"""

from __future__ import annotations

import csv
import datetime
import math
import platform
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

METRICS = {"psnr": ("PSNR (dB)", "{:.2f}"), "psnr_missing": ("missing-slice PSNR (dB)", "{:.2f}"),
           "ssim": ("SSIM", "{:.4f}"), "hfen": ("HFEN", "{:.4f}")}
MIN_SUBJECTS_FOR_P = 6
CELLS = {"n": "n", **{k: label for k, (label, _) in METRICS.items()}, "seam": "seam ratio",
         "psnr_gain": "PSNR gain over linear (dB)", "ssim_gain": "SSIM gain", "hfen_change": "HFEN change",
         "better": "subjects better than linear (PSNR/SSIM/HFEN)", "p": "Wilcoxon p (PSNR)", "seconds": "fill s / volume"}


def read_rows(path: Path) -> list[dict[str, Any]]:
    """metrics.csv -> rows with float metrics."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key in row:
            if key not in ("subject", "method"):
                row[key] = float(row[key]) if row[key] not in ("", None) else float("nan")
    return rows


def by_method(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(row["method"], {})[row["subject"]] = row
    return out


def paired(rows: list[dict[str, Any]], method: str, metric: str, baseline: str = "linear") -> np.ndarray:
    """Per-subject ``method - baseline`` differences of ``metric`` over the subjects both have."""
    table = by_method(rows)
    a, b = table.get(method, {}), table.get(baseline, {})
    return np.array([a[s][metric] - b[s][metric] for s in a if s in b], dtype=np.float64)


def wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided paired Wilcoxon signed-rank p-value; NaN when undefined (no pairs, all differences zero)."""
    from scipy.stats import wilcoxon

    differences = differences[np.isfinite(differences)]
    if differences.size == 0 or not differences.any():
        return math.nan
    return float(wilcoxon(differences).pvalue)


def subjects_better(rows: list[dict[str, Any]], method: str) -> str:
    """``"P/S/H"``: how many subjects ``method`` beats linear on in PSNR, SSIM (higher) and HFEN (lower)."""
    return "/".join(str(int((paired(rows, method, k) * (-1 if k == "hfen" else 1) > 0).sum())) for k in ("psnr", "ssim", "hfen"))


def mean_std(values: np.ndarray, fmt: str) -> str:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return "—"
    if values.size == 1:
        return fmt.format(values[0])
    std = values.std(ddof=1)
    return f"{fmt.format(values.mean())} ± {fmt.replace('+', '').format(std)}"


def format_p(value: float) -> str:
    return "—" if math.isnan(value) else (f"{value:.2g}" if value >= 1e-3 else f"{value:.1e}")


def versions() -> str:
    import scipy
    import torch
    import torchio

    import inpaint

    return (f"inpaint {inpaint.__version__}, python {platform.python_version()}, torch {torch.__version__}, "
            f"numpy {np.__version__}, scipy {scipy.__version__}, torchio {torchio.__version__}, "
            f"nibabel {nib.__version__}, {platform.platform()}")


SEGMENT_TITLE = "Tissue segmentation (ANTsPy Atropos, 3 classes, in the brain mask)"


def segment_markdown(rows: list[dict[str, Any]], methods: list[str], references: list[dict[str, Any]],
                     prefix: str = "", title: str = SEGMENT_TITLE) -> list[str]:
    """Dice per tissue, volume bias (method - reference, mL) and volume correlation with the reference.

    ``prefix``: of the ``dice_*`` / ``vol_*`` columns (``prior_`` for ``--morphometry``'s template-prior Atropos).
    """
    tissues = ("gm", "wm", "csf")
    failed = [r for r in references if degenerate_segmentation(r, prefix)]
    references = [r for r in references if not degenerate_segmentation(r, prefix)]
    reference = {r["subject"]: r for r in references}
    header = [f"Dice {t.upper()}" for t in tissues] + [f"{t.upper()} volume bias (mL)" for t in tissues] + [
        f"r {t.upper()} volume" for t in tissues]
    lines = ["", f"## {title}", "", f"{len(references)} subjects.", "",
             "| method | " + " | ".join(header) + " |", "|" + "---|" * (len(header) + 1)]
    ceiling = [mean_std(np.array([r[f"ceiling_dice_{t}"] for r in references]), "{:.4f}") for t in tissues]
    lines.append("| reference segmented twice (ceiling) | " + " | ".join(ceiling + ["—"] * 6) + " |")
    table = by_method(rows)
    for m in [m for m in methods if m in table]:
        pairs = [(r, reference[s]) for s, r in table[m].items() if s in reference]
        cells = [mean_std(np.array([r[f"{prefix}dice_{t}"] for r, _ in pairs]), "{:.4f}") for t in tissues]
        cells += [mean_std(np.array([r[f"{prefix}vol_{t}"] - ref[f"{prefix}vol_{t}"] for r, ref in pairs]), "{:+.1f}")
                  for t in tissues]
        for t in tissues:
            a, b = (np.array([p[i][f"{prefix}vol_{t}"] for p in pairs]) for i in (0, 1))
            cells.append(f"{np.corrcoef(a, b)[0, 1]:.3f}" if len(pairs) > 2 and a.std() > 0 and b.std() > 0 else "—")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    if failed:
        detail = "; ".join(f"{r['subject']} (" + ", ".join(f"{t.upper()} {r[f'{prefix}vol_{t}']:.1f} mL" for t in tissues)
                           + ")"
                           for r in failed)
        lines += ["", f"Excluded from this table: the reference segmentation of {len(failed)} subject(s) has a tissue class "
                  f"under {DEGENERATE_FRACTION:.0%} of the brain, i.e. Atropos failed on the reference itself (twice alike): "
                  f"{detail}. The image metrics above include them."]
    return lines


DEGENERATE_FRACTION = 0.05  # a tissue class this small a fraction of the brain means a failed segmentation


def degenerate_segmentation(reference: dict[str, Any], prefix: str = "") -> bool:
    """True when one tissue of a reference row (``segment_reference.csv``; ``prefix``) holds < 5 % of the brain."""
    volumes = [reference[f"{prefix}vol_{t}"] for t in ("gm", "wm", "csf")]
    return min(volumes) < DEGENERATE_FRACTION * sum(volumes)


def method_cells(rows: list[dict[str, Any]], method: str) -> dict[str, str]:
    """The formatted statistics of one method's rows (keys of ``CELLS``), gains paired with ``linear``."""
    mine = by_method(rows).get(method, {})
    values = {k: np.array([r.get(k, np.nan) for r in mine.values()], dtype=np.float64) for k in (*METRICS, "seam", "seconds")}
    gains = {k: paired(rows, method, k) for k in ("psnr", "ssim", "hfen")}
    base = method == "linear" or gains["psnr"].size == 0
    cells = {"n": str(len(mine)), **{k: mean_std(values[k], fmt) for k, (_, fmt) in METRICS.items()},
             "seam": mean_std(values["seam"], "{:.3f}"), "seconds": mean_std(values["seconds"], "{:.2f}").split(" ±")[0]}
    cells.update({"psnr_gain": "—", "ssim_gain": "—", "hfen_change": "—", "better": "—", "p": "—"} if base else {
        "psnr_gain": mean_std(gains["psnr"], "{:+.3f}"), "ssim_gain": mean_std(gains["ssim"], "{:+.4f}"),
        "hfen_change": mean_std(gains["hfen"], "{:+.4f}"), "better": f"{subjects_better(rows, method)} of {gains['psnr'].size}",
        "p": format_p(wilcoxon_p(gains["psnr"]))})
    return cells


def summary_markdown(rows: list[dict[str, Any]], methods: list[str], info: dict[str, Any],
                     segments: list[dict[str, Any]] | None = None) -> str:
    """The summary.md text: a table per method, Wilcoxon tests against linear, and the run's settings.

    Args:
        rows: metrics.csv rows (``subject, method, psnr, ssim, hfen, psnr_missing, seconds``), floats parsed.
        methods: method names in display order (``linear`` first).
        info: ``commands`` (every invocation that wrote these rows), ``data, subjects, interval, offset, thick_slices,
            device``, ``checkpoints``/``predictions`` name -> path dicts and ``restore``: name -> the settings each
            checkpoint was restored with and where each came from (``Restorer.describe``).
        segments: rows of ``segment_reference.csv`` when ``--segment`` was given (tissue table added).
    """
    table = by_method(rows)
    methods = [m for m in methods if m in table] + [m for m in table if m not in methods]
    n_pairs = {m: paired(rows, m, "psnr").size for m in methods}
    columns = ["n", "psnr", "psnr_missing", "ssim", "hfen", "seam", "psnr_gain", "better", "p", "seconds"]
    header = ["method"] + [CELLS[c] for c in columns]
    lines = [f"# Evaluation: interval {info['interval']}, offset {info['offset']}", "",
             f"{info['subjects']} subject(s) from `{info['data']}`; mean ± sample std over subjects (PROTOCOL.md).",
             "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in methods:
        cells = method_cells(rows, m)
        lines.append(f"| **{m}** | " + " | ".join(cells[c] for c in columns) + " |")
    others = [m for m in methods if m != "linear" and n_pairs[m]]
    if others:
        lines += ["", "Paired Wilcoxon signed-rank tests against linear (two-sided p; per subject differences):", "",
                  "| method | " + " | ".join(label for label, _ in METRICS.values()) + " |",
                  "|" + "---|" * (len(METRICS) + 1)]
        lines += [f"| {m} | " + " | ".join(format_p(wilcoxon_p(paired(rows, m, k))) for k in METRICS) + " |" for m in others]
        small = min(n_pairs[m] for m in others)
        if small < MIN_SUBJECTS_FOR_P:
            lines += ["", f"**Note:** with {small} paired subject(s) these p-values are not meaningful: the smallest "
                      f"two-sided p the test can give is {2 / 2 ** small:.3g}. Use at least {MIN_SUBJECTS_FOR_P} subjects."]
    if segments is not None:
        lines += segment_markdown(rows, methods, segments)
    lines += ["", "Headline (PROTOCOL.md): the paired PSNR gain over linear and the missing-slice PSNR; absolute "
              "PSNR depends on one peak voxel per subject and is not comparable across data sets.", "", "## Settings", "",
              *[f"- command{' (resumed)' if i else ''}: `{c}`" for i, c in enumerate(info["commands"])],
              f"- degradation: keep slices k % {info['interval']} == {info['offset']} along the S/I voxel axis (file order)"
              + (f", each the mean of its slab of {info['interval']} slices (thick slices)" if info.get("thick_slices") else ""),
              f"- device: {info['device']}"]
    restore = info.get("restore", {})
    lines += [f"- checkpoint {n}: `{p}`" + (f"; restored with {restore[n]}" if n in restore else "")
              for n, p in info.get("checkpoints", {}).items()]
    lines += [f"- prediction {n}: `{p}`" for n, p in info.get("predictions", {}).items()]
    lines += [f"- peer {n}: {d}" for n, d in info.get("peers", {}).items()]
    lines += [f"- versions: {versions()}", f"- written: {datetime.datetime.now().isoformat(timespec='seconds')}", ""]
    return "\n".join(lines)


