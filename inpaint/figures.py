"""The evaluation report: the summary table (Markdown) and figures (matplotlib, Agg backend).

``summary_markdown`` turns metrics.csv rows into mean ± std per method, the paired PSNR gain over
linear and paired Wilcoxon signed-rank tests; ``box_plots`` draws the paper's Fig. 3b-d (plus the
missing-slice PSNR and the per-subject gain) and ``slice_panel`` its Fig. 3a: axial, coronal and
sagittal slices of the reference and every method with absolute-error maps.
"""

from __future__ import annotations

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


def _by_method(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(row["method"], {})[row["subject"]] = row
    return out


def paired(rows: list[dict[str, Any]], method: str, metric: str, baseline: str = "linear") -> np.ndarray:
    """Per-subject ``method - baseline`` differences of ``metric`` over the subjects both have."""
    table = _by_method(rows)
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


def _versions() -> str:
    import scipy
    import torch
    import torchio

    import inpaint

    return (f"inpaint {inpaint.__version__}, python {platform.python_version()}, torch {torch.__version__}, "
            f"numpy {np.__version__}, scipy {scipy.__version__}, torchio {torchio.__version__}, "
            f"nibabel {nib.__version__}, {platform.platform()}")


def segment_markdown(rows: list[dict[str, Any]], methods: list[str], references: list[dict[str, Any]]) -> list[str]:
    """Dice per tissue, volume bias (method - reference, mL) and volume correlation with the reference."""
    tissues = ("gm", "wm", "csf")
    failed = [r for r in references if degenerate_segmentation(r)]
    references = [r for r in references if not degenerate_segmentation(r)]
    reference = {r["subject"]: r for r in references}
    header = [f"Dice {t.upper()}" for t in tissues] + [f"{t.upper()} volume bias (mL)" for t in tissues] + [
        f"r {t.upper()} volume" for t in tissues]
    lines = ["", "## Tissue segmentation (ANTsPy Atropos, 3 classes, in the brain mask)", "",
             "| method | " + " | ".join(header) + " |", "|" + "---|" * (len(header) + 1)]
    ceiling = [mean_std(np.array([r[f"ceiling_dice_{t}"] for r in references]), "{:.4f}") for t in tissues]
    lines.append("| reference segmented twice (ceiling) | " + " | ".join(ceiling + ["—"] * 6) + " |")
    table = _by_method(rows)
    for m in [m for m in methods if m in table]:
        pairs = [(r, reference[s]) for s, r in table[m].items() if s in reference]
        cells = [mean_std(np.array([r[f"dice_{t}"] for r, _ in pairs]), "{:.4f}") for t in tissues]
        cells += [mean_std(np.array([r[f"vol_{t}"] - ref[f"vol_{t}"] for r, ref in pairs]), "{:+.1f}") for t in tissues]
        for t in tissues:
            a, b = (np.array([p[i][f"vol_{t}"] for p in pairs]) for i in (0, 1))
            cells.append(f"{np.corrcoef(a, b)[0, 1]:.3f}" if len(pairs) > 2 and a.std() > 0 and b.std() > 0 else "—")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    if failed:
        detail = "; ".join(f"{r['subject']} (" + ", ".join(f"{t.upper()} {r[f'vol_{t}']:.1f} mL" for t in tissues) + ")"
                           for r in failed)
        lines += ["", f"Excluded from this table: the reference segmentation of {len(failed)} subject(s) has a tissue class "
                  f"under {DEGENERATE_FRACTION:.0%} of the brain, i.e. Atropos failed on the reference itself (twice alike): "
                  f"{detail}. The image metrics above include them."]
    return lines


DEGENERATE_FRACTION = 0.05  # a tissue class this small a fraction of the brain means a failed segmentation


def degenerate_segmentation(reference: dict[str, Any]) -> bool:
    """True when one tissue of a ``segment_reference.csv`` row holds < 5 % of the brain volume."""
    volumes = [reference[f"vol_{t}"] for t in ("gm", "wm", "csf")]
    return min(volumes) < DEGENERATE_FRACTION * sum(volumes)


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
    table = _by_method(rows)
    methods = [m for m in methods if m in table] + [m for m in table if m not in methods]
    n_pairs = {m: paired(rows, m, "psnr").size for m in methods}
    header = ["method", "n"] + [label for label, _ in METRICS.values()] + [
        "seam ratio", "PSNR gain over linear (dB)", "subjects better than linear (PSNR/SSIM/HFEN)",
        "Wilcoxon p (PSNR)", "fill s / volume"]
    lines = [f"# Evaluation: interval {info['interval']}, offset {info['offset']}", "",
             f"{info['subjects']} subject(s) from `{info['data']}`; mean ± sample std over subjects (PROTOCOL.md).",
             "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in methods:
        values = {k: np.array([r.get(k, np.nan) for r in table[m].values()], dtype=np.float64)
                  for k in (*METRICS, "seam", "seconds")}
        gain = paired(rows, m, "psnr")
        base = m == "linear" or gain.size == 0
        cells = [f"**{m}**", str(len(table[m]))] + [mean_std(values[k], fmt) for k, (_, fmt) in METRICS.items()]
        cells += [mean_std(values["seam"], "{:.3f}"), "—" if base else mean_std(gain, "{:+.3f}"),
                  "—" if base else f"{subjects_better(rows, m)} of {gain.size}",
                  "—" if base else format_p(wilcoxon_p(gain)), mean_std(values["seconds"], "{:.2f}").split(" ±")[0]]
        lines.append("| " + " | ".join(cells) + " |")
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
    lines += [f"- versions: {_versions()}", f"- written: {datetime.datetime.now().isoformat(timespec='seconds')}", ""]
    return "\n".join(lines)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def box_plots(rows: list[dict[str, Any]], methods: list[str], folder: Path, subtitle: str = "") -> list[Path]:
    """``boxplots.png`` (PSNR, missing-slice PSNR, SSIM, HFEN per method) and ``psnr_gain.png`` (paired gain)."""
    plt = _pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    table = _by_method(rows)
    methods = [m for m in methods if m in table]
    subjects = sorted({r["subject"] for r in rows})
    jitter = dict(zip(subjects, np.random.default_rng(0).uniform(-0.12, 0.12, len(subjects)), strict=True))
    style = {"showfliers": False, "widths": 0.55, "medianprops": {"color": "k", "lw": 1.5}}
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.2 * len(METRICS), 3.8), layout="constrained")
    for ax, (key, (label, _)) in zip(axes, METRICS.items(), strict=True):
        ax.boxplot([[r[key] for r in table[m].values()] for m in methods], tick_labels=methods, **style)
        for s in subjects:  # one grey line per subject: the comparison is paired
            points = [(i + jitter[s], table[m][s][key]) for i, m in enumerate(methods, 1) if s in table[m]]
            ax.plot(*zip(*points, strict=True), color="0.6", lw=0.5, alpha=0.5, zorder=2)
        for i, m in enumerate(methods, start=1):
            ax.scatter([i + jitter[s] for s in table[m]], [r[key] for r in table[m].values()], s=9, alpha=0.7,
                       color=f"C{i - 1}", zorder=3)
        ax.set_title(label + (" (lower is better)" if key == "hfen" else ""), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.tick_params(axis="x", rotation=30 if max(map(len, methods)) > 8 else 0)
    n = len({r["subject"] for r in rows})
    fig.suptitle(f"Whole-volume metrics in the brain mask, {n} subject(s){subtitle}", fontsize=11)
    paths = [folder / "boxplots.png"]
    fig.savefig(paths[0], dpi=130)
    plt.close(fig)
    others = [m for m in methods if m != "linear"]
    if others:
        fig, ax = plt.subplots(figsize=(max(3.8, 1.6 + 1.4 * len(others)), 3.8), layout="constrained")
        gains = [paired(rows, m, "psnr") for m in others]
        ax.boxplot(gains, tick_labels=others, **style)
        for i, values in enumerate(gains, start=1):
            spread = np.random.default_rng(i).uniform(-0.12, 0.12, values.size)
            ax.scatter(i + spread, values, s=9, alpha=0.7, color=f"C{methods.index(others[i - 1])}", zorder=3)
        ax.axhline(0, color="k", lw=0.8, ls="--")
        ax.set_ylabel("PSNR gain over linear (dB)")
        ax.set_title(f"Paired PSNR gain over linear, {n} subject(s)\n{subtitle.lstrip('; ')}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        paths.append(folder / "psnr_gain.png")
        fig.savefig(paths[1], dpi=130)
        plt.close(fig)
    return paths


def _views(centre: np.ndarray, axial: int) -> list[tuple[str, Any, int, int]]:
    """(name, 2-D slicer of a RAS volume, horizontal axis, vertical axis) of the three planes."""
    x, y = (int(c) for c in centre[:2])
    return [("axial (a missing slice)", np.s_[:, :, axial], 0, 1), ("coronal (brain centre)", np.s_[:, y, :], 0, 2),
            ("sagittal (brain centre)", np.s_[x, :, :], 1, 2)]


def slice_panel(data: dict[str, Any], rows: list[dict[str, Any]], path: Path, interval: int, offset: int) -> Path:
    """Fig. 3a: reference and every method in three planes, each with its |error| map (shared windows).

    Args:
        data: ``reference``, ``mask``, ``known`` (X, Y, Z) tensors, ``affine`` (4, 4), ``subject`` and
            ``predictions`` {method: (X, Y, Z) tensor}, all in file voxel order.
        rows: metrics rows, for the PSNR in the column titles.
        path: the PNG to write.
    """
    plt = _pyplot()
    ornt = nib.orientations.io_orientation(data["affine"])
    zooms = np.linalg.norm(np.asarray(data["affine"])[:3, :3], axis=0)[np.argsort(ornt[:, 0])]

    def ras(v: Any) -> np.ndarray:
        return nib.orientations.apply_orientation(np.asarray(v, dtype=np.float32), ornt)

    ref, mask, known = ras(data["reference"]), ras(data["mask"]) > 0, ras(data["known"]) > 0
    preds = {m: ras(v) for m, v in data["predictions"].items()}
    centre = np.argwhere(mask).mean(0).round().astype(int)
    line = known.any(axis=(0, 1))
    dist = np.array([np.abs(np.flatnonzero(line) - z).min() for z in range(line.size)])
    axial = int(max(range(line.size), key=lambda z: (dist[z], -abs(z - centre[2]))))
    box = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != d))) for d in range(3)]
    crop = [slice(max(b[0] - 4, 0), b[-1] + 5) for b in box]
    window = float(np.percentile(ref[mask], 99.5))
    missing = mask & ~known
    base = preds.get("linear", next(iter(preds.values())))
    err_max = float(np.percentile(np.abs(base - ref)[missing], 99.5)) if missing.any() else window / 4
    metrics = {r["method"]: r for r in rows if r["subject"] == data["subject"]}
    views = _views(centre, axial)
    columns = [("reference", ref), *preds.items()]
    heights = []
    for _, _, horizontal, vertical in views:
        extent = [(min(crop[a].stop, ref.shape[a]) - crop[a].start) * zooms[a] for a in (horizontal, vertical)]
        heights += [extent[1] / extent[0]] * 2
    fig = plt.figure(figsize=(2.2 * len(columns) + 0.9, 2.2 * sum(heights) + 1.0), layout="constrained")
    grid = fig.add_gridspec(6, len(columns) + 1, width_ratios=[1] * len(columns) + [0.07], height_ratios=heights)
    for v, (name, where, horizontal, vertical) in enumerate(views):
        sub = (crop[horizontal], crop[vertical])
        aspect = zooms[vertical] / zooms[horizontal]
        for c, (method, volume) in enumerate(columns):
            image = volume[where][sub].T
            ax = fig.add_subplot(grid[2 * v, c])
            shown = ax.imshow(image, cmap="gray", vmin=0, vmax=window, origin="lower", aspect=aspect,
                              interpolation="nearest")
            if v == 0:
                m = metrics.get(method)
                ax.set_title(method if m is None else f"{method}\nPSNR {m['psnr']:.2f} dB\n"
                             f"missing {m['psnr_missing']:.2f} dB", fontsize=9)
            ax.set_xticks([])
            acquired = np.flatnonzero(line[crop[2]]) if vertical == 2 and c == 0 else []
            ax.set_yticks(acquired, [""] * len(acquired))
            ax.tick_params(axis="y", length=4, color="tab:red", width=1.2)
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
            err_ax = fig.add_subplot(grid[2 * v + 1, c])
            err_ax.set_xticks([])
            err_ax.set_yticks([])
            if c == 0:
                err_ax.set_ylabel("|error|", fontsize=9)
                err_ax.text(0.5, 0.5, "red ticks:\nacquired slices" if vertical == 2 else "|method − reference|\nshared scale",
                            ha="center", va="center", fontsize=8, transform=err_ax.transAxes)
                err_ax.set_frame_on(False)
                continue
            err = err_ax.imshow(np.abs(volume - ref)[where][sub].T, cmap="inferno", vmin=0, vmax=err_max,
                                origin="lower", aspect=aspect, interpolation="nearest")
        fig.colorbar(shown, cax=fig.add_subplot(grid[2 * v, -1]), label="intensity (file units)")
        if len(columns) > 1:
            fig.colorbar(err, cax=fig.add_subplot(grid[2 * v + 1, -1]), label="|error|", extend="max")
    fig.suptitle(f"{data['subject']}: every {interval}th axial slice kept (k % {interval} == {offset}); "
                 "neurological view (R on the right); shared windows", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
