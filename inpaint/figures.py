"""The evaluation figures (matplotlib, Agg backend): box plots and the slice panel.

``box_plots`` draws the paper's Fig. 3b-d (plus the missing-slice PSNR and the per-subject gain) and
``slice_panel`` its Fig. 3a: axial, coronal and sagittal slices of the reference and every method with
absolute-error maps. The numbers behind them are ``inpaint.reporting``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from inpaint.reporting import METRICS, by_method, paired


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def method_labels(ax: Any, methods: list[str]) -> None:
    """Method names under the boxes, slanted and right-aligned to their box when long (no overlap)."""
    if max(map(len, methods)) > 8:
        for label in ax.get_xticklabels():
            label.set(rotation=35, ha="right", rotation_mode="anchor")


def box_plots(rows: list[dict[str, Any]], methods: list[str], folder: Path, subtitle: str = "") -> list[Path]:
    """``boxplots.png`` (PSNR, missing-slice PSNR, SSIM, HFEN per method) and ``psnr_gain.png`` (paired gain)."""
    plt = _pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    table = by_method(rows)
    methods = [m for m in methods if m in table]
    subjects = sorted({r["subject"] for r in rows})
    jitter = dict(zip(subjects, np.random.default_rng(0).uniform(-0.12, 0.12, len(subjects)), strict=True))
    style = {"showfliers": False, "widths": 0.55, "medianprops": {"color": "k", "lw": 1.5}}
    width = max(3.2, 0.75 + 0.55 * len(methods))  # per panel: room for every box and its label
    fig, axes = plt.subplots(1, len(METRICS), figsize=(width * len(METRICS), 4.2), layout="constrained")
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
        method_labels(ax, methods)
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
        method_labels(ax, others)
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


def missing_slice(known_line: np.ndarray, centre: int) -> int:
    """The missing slice farthest from any acquired one, between the first and last acquired, nearest ``centre``."""
    acquired = np.flatnonzero(known_line)
    inside = np.arange(acquired[0], acquired[-1] + 1) if acquired.size else np.arange(known_line.size)
    dist = np.array([np.abs(acquired - z).min() if acquired.size else 0 for z in inside])
    return int(max(zip(inside.tolist(), dist.tolist(), strict=True), key=lambda zd: (zd[1], -abs(zd[0] - centre)))[0])


def slice_panel(data: dict[str, Any], rows: list[dict[str, Any]], path: Path | None, interval: int, offset: int) -> Any:
    """Fig. 3a: reference and every method in three planes, each with its |error| map (shared windows).

    The axial plane is a mid-gap missing slice near the brain centre; the training callback
    (``inpaint.callbacks.SlicePanels``) draws the same panel for its validation subject.

    Args:
        data: ``reference``, ``mask``, ``known`` (X, Y, Z) tensors, ``affine`` (4, 4), ``subject`` and
            ``predictions`` {method: (X, Y, Z) tensor}, all in file voxel order.
        rows: metrics rows, for the PSNR in the column titles (may be empty).
        path: the PNG to write; None returns the RGB image as a (H, W, 3) uint8 array instead.
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
    axial = missing_slice(line, int(centre[2]))
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
    if path is None:
        fig.canvas.draw()
        image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
        plt.close(fig)
        return image
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
