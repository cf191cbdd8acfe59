"""Tables and figures of ``inpaint.evaluate --morphometry`` (numpy and matplotlib; no ANTs needed).

- :func:`regional_agreement`: per region (both hemispheres pooled) and method, Pearson r and mean bias of
  the GM volume (mL, and % of the reference) and of the mean cortical thickness (mm) against the reference.
- :func:`voxelwise_maps`: the mean paired difference method - reference of the smoothed, modulated GM
  maps in MNI, and the paired t map (n - 1 degrees of freedom).
- :func:`morphometry_markdown` and :func:`morphometry_figures`: the summary section and the figures
  (Kang et al. Figs. 5a, 6a, 6b).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np

from inpaint.morphometry import HEMISPHERES, REGIONS
from inpaint.reporting import segment_markdown

if TYPE_CHECKING:
    from matplotlib.figure import Figure

QUANTITIES = {"gm_ml": "GM volume (mL)", "thickness_mm": "cortical thickness (mm)"}
THICKNESS_NAMES = {"distance": "distance thickness", "direct": "DiReCT thickness"}


def paired_values(rows: list[dict[str, Any]], references: list[dict[str, Any]], method: str, region: str,
                  quantity: str) -> tuple[np.ndarray, np.ndarray]:
    """(reference, method) values of one region (both hemispheres) over the subjects both have, NaNs dropped."""
    reference = {r["subject"]: r for r in references}
    pairs = [(float(reference[r["subject"]][f"{region}_{h}_{quantity}"]), float(r[f"{region}_{h}_{quantity}"]))
             for r in rows if r["method"] == method and r["subject"] in reference for h in HEMISPHERES]
    values = np.array([p for p in pairs if np.isfinite(p).all()], dtype=np.float64).reshape(-1, 2)
    return values[:, 0], values[:, 1]


def regional_agreement(rows: list[dict[str, Any]], references: list[dict[str, Any]],
                       methods: list[str]) -> list[dict[str, Any]]:
    """One row per (method, region, quantity): n, Pearson r, mean bias, bias in % of the reference mean."""
    table = []
    for method in methods:
        for region in REGIONS:
            for quantity in QUANTITIES:
                ref, est = paired_values(rows, references, method, region, quantity)
                r = float(np.corrcoef(ref, est)[0, 1]) if len(ref) > 2 and ref.std() > 0 and est.std() > 0 else np.nan
                bias = float((est - ref).mean()) if len(ref) else np.nan
                table.append({"method": method, "region": region, "quantity": quantity, "n": len(ref), "r": r,
                              "bias": bias, "bias_percent": 100 * bias / float(ref.mean()) if len(ref) else np.nan})
    return table


def morphometry_markdown(table: list[dict[str, Any]], rows: list[dict[str, Any]], references: list[dict[str, Any]],
                         methods: list[str], thickness: str = "distance") -> list[str]:
    """The summary.md section: the regional agreement tables and the template-prior tissue table (with its ceiling)."""
    lines = ["", f"## Morphometry (AAL2 regions of Kang et al. Fig. 6; MNI152 2009 priors; {THICKNESS_NAMES[thickness]})", "",
             f"Per region, both hemispheres pooled ({len(references)} subjects x 2 points): Pearson r against the "
             "reference and the mean bias (method - reference). Files: morphometry/, figures/morphometry_*.png.", ""]
    for quantity, label in QUANTITIES.items():
        lines += [f"### {label}", "", "| region | " + " | ".join(f"{m} r / bias" for m in methods) + " |",
                  "|---|" + "---|" * len(methods)]
        for region in REGIONS:
            cells = []
            for method in methods:
                row = next(t for t in table if (t["method"], t["region"], t["quantity"]) == (method, region, quantity))
                unit = f" ({row['bias_percent']:+.1f} %)" if quantity == "gm_ml" else ""
                cells.append(f"{row['r']:.3f} / {row['bias']:+.3f}{unit}")
            lines.append(f"| {region.replace('_', ' ')} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines + segment_markdown(rows, methods, references, prefix="prior_",
                                    title="Tissue segmentation with the template priors (Atropos, in the brain mask)")


def voxelwise_maps(folder: Path, subjects: list[str], method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean paired difference and paired t of ``gm_mni/SUBJECT_METHOD`` against ``SUBJECT_reference``; and the affine."""
    differences, affine = [], None
    for subject in subjects:
        ref, est = (nib.load(str(folder / "gm_mni" / f"{subject}_{name}.nii.gz")) for name in ("reference", method))
        differences.append(np.asarray(est.dataobj, dtype=np.float64) - np.asarray(ref.dataobj, dtype=np.float64))
        affine = ref.affine
    stack = np.stack(differences)
    mean = stack.mean(0)
    spread = stack.std(0, ddof=1) if len(subjects) > 1 else np.full_like(mean, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(spread > 1e-9, mean / (spread / np.sqrt(len(subjects))), 0.0)
    return mean.astype(np.float32), t.astype(np.float32), affine


MNI_VIEWS = ("sagittal", "coronal", "axial")  # slices through the centre along MNI voxel axes x, y, z


def morphometry_figures(table: list[dict[str, Any]], rows: list[dict[str, Any]], references: list[dict[str, Any]],
                        methods: list[str], out: Path) -> list[Path]:
    """Scatter plots per region (GM volume, thickness) and the voxel-wise mean-difference and t maps."""
    from inpaint.figures import _pyplot

    plt = _pyplot()
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    written = []
    for quantity, label in QUANTITIES.items():
        fig, axes = plt.subplots(2, 4, figsize=(13, 6.5), layout="constrained")
        for ax, region in zip(axes.flat, REGIONS, strict=True):
            for method in methods:
                ref, est = paired_values(rows, references, method, region, quantity)
                ax.scatter(ref, est, s=12, label=method)
            low, high = ax.get_xlim()
            ax.plot([low, high], [low, high], "k--", lw=0.8)
            ax.set_title(region.replace("_", " "), fontsize=9)
        axes.flat[0].legend(fontsize=7)
        fig.supxlabel(f"reference {label}")
        fig.supylabel(f"method {label}")
        written.append(figures / f"morphometry_{quantity}.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    fig = voxelwise_figure(out, sorted({r["subject"] for r in references}), methods)
    written.append(figures / "morphometry_voxelwise.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)
    return written


def voxelwise_figure(out: Path, subjects: list[str], methods: list[str]) -> Figure:
    """Per method (rows): mean paired difference and paired t of the GM maps in MNI, sagittal/coronal/axial; the maps
    are also saved as ``out/morphometry/voxelwise_{method}.nii.gz`` ([..., 0] mean, [..., 1] t)."""
    from inpaint.figures import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(len(methods), 6, figsize=(15, 2.6 * len(methods)), squeeze=False, layout="constrained")
    for row_axes, method in zip(axes, methods, strict=True):
        mean, t, affine = voxelwise_maps(out / "morphometry", subjects, method)
        nib.save(nib.Nifti1Image(np.stack([mean, t], -1), affine), str(out / "morphometry" / f"voxelwise_{method}.nii.gz"))
        centre = [n // 2 for n in mean.shape]
        maps = ((mean, "mean difference", 0.05, "method − reference\n(mL GM per mL)"),
                (t, "paired t", 5.0, f"paired t ({len(subjects) - 1} df)"))
        for k, (image, name, limit, unit) in enumerate(maps):
            for view, plane in enumerate(MNI_VIEWS):
                ax = row_axes[3 * k + view]
                picture = np.rot90(np.take(image, centre[view], axis=view))
                shown = ax.imshow(picture, cmap="RdBu_r", vmin=-limit, vmax=limit)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(f"{method}: {name}, {plane}" if view == 0 else plane, fontsize=8)
            fig.colorbar(shown, ax=row_axes[3 * k:3 * k + 3], shrink=0.7, extend="both").set_label(unit, fontsize=8)
    return fig
