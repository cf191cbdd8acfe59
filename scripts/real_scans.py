"""A real-scan test set: clinical-style 2D acquisitions made from 1 mm references, restored by predict, scored.

    python scripts/real_scans.py --data ../shared/data/ds002748 --out runs/real_scans \\
        --method linear --checkpoint pretrained

For each subject (default: the first 3 test subjects of experiments/splits/ds002748.tsv) it writes one
file per acquisition of ``ACQUISITIONS``: slices of a given spacing (4.4 to 6 mm, with gaps) and
thickness (thin, or the mean of a slab, as a 2D scan measures), in-plane spacing 0.5 or 0.9 mm, tilted
about the left-right axis, stored as LAS/RAS/LPS/LIA NIfTI or ``.mgz``. Each is sampled from the
reference (trilinear, the slab by the midpoint rule at 0.25 mm). Every method restores every file
with ``python -m inpaint.predict FILE -o OUT`` and no other flag; the output is brought back to the
reference grid through the two affines (trilinear; exact where the grids coincide) and scored with
PROTOCOL.md's PSNR, SSIM and HFEN in the brain (reference > 0) inside the acquired field of view, 3
voxels in from its edges; outside it the reference stands in (so no SSIM window sees a false edge).
Writes ``scores.csv`` and ``scores.md`` (per file and method, the gain over the first method); resumes.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inpaint import predict  # noqa: E402
from inpaint.data.io import atomic_write, read_volume  # noqa: E402
from inpaint.data.subjects import read_split_file  # noqa: E402
from inpaint.metrics import volume_metrics  # noqa: E402

SLAB_STEP = 0.25  # mm between the samples that average a thick slice
EDGE = 3  # voxels of the acquired field of view left out of the scores at its edges
METRICS = ("psnr", "ssim", "hfen")


@dataclass(frozen=True)
class Acquisition:
    """A 2D acquisition: slice spacing and thickness (0: thin), in-plane spacing (None: the reference's), tilt."""

    name: str
    spacing: float
    thickness: float = 0.0
    inplane: float | None = None
    tilt: float = 0.0  # degrees about the left-right axis
    orientation: str = "LAS"
    suffix: str = ".nii.gz"


ACQUISITIONS = (
    Acquisition("thin-5mm", 5.0),
    Acquisition("thick-5mm", 5.0, 5.0),
    Acquisition("thick-4mm-gap-0.4", 4.4, 4.0),
    Acquisition("thick-5mm-gap-0.5", 5.5, 5.0),
    Acquisition("thick-5mm-gap-1", 6.0, 5.0),
    Acquisition("inplane-0.5mm", 5.0, 5.0, inplane=0.5),
    Acquisition("inplane-0.9mm", 5.0, 5.0, inplane=0.9),
    Acquisition("oblique-20deg", 5.0, 5.0, tilt=20.0),
    Acquisition("RAS", 5.0, 5.0, orientation="RAS"),
    Acquisition("LPS", 5.0, 5.0, orientation="LPS"),
    Acquisition("LIA-mgz", 5.0, 5.0, orientation="LIA", suffix=".mgz"),
)


def acquire(reference: np.ndarray, affine: np.ndarray, acq: Acquisition) -> tuple[np.ndarray, np.ndarray]:
    """Sample one acquisition from a (X, Y, Z) reference whose slice axis is 2; returns (data, affine) in LAS+tilt.

    Voxel 0 of the result is reference voxel 0 (rotated about the volume's centre when tilted); its slice
    axis is 2, spaced ``acq.spacing`` mm; its in-plane axes are the reference's, at ``acq.inplane`` mm.
    """
    zooms = np.linalg.norm(affine[:3, :3], axis=0)
    inplane = [acq.inplane or zooms[0], acq.inplane or zooms[1]]
    shape = [int(math.floor((n - 1) * z / s + 1e-6)) + 1 for n, z, s in zip(reference.shape, zooms, [*inplane, acq.spacing], strict=True)]
    directions = affine[:3, :3] / zooms
    angle = math.radians(acq.tilt)
    rotation = np.array([[1, 0, 0], [0, math.cos(angle), -math.sin(angle)], [0, math.sin(angle), math.cos(angle)]])
    centre = affine[:3, :3] @ ((np.array(reference.shape) - 1) / 2) + affine[:3, 3]
    axes = rotation @ directions * [*inplane, acq.spacing]
    origin = rotation @ (affine[:3, 3] - centre) + centre
    out_affine = np.eye(4)
    out_affine[:3, :3], out_affine[:3, 3] = axes, origin
    samples = max(1, math.ceil(acq.thickness / SLAB_STEP)) if acq.thickness else 1
    offsets = (np.arange(samples) + 0.5) / samples - 0.5 if acq.thickness else np.zeros(1)
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"), -1)
    to_reference = np.linalg.inv(affine)
    data = np.zeros(shape, dtype=np.float64)
    for offset in offsets:  # the slab: positions offset * thickness along the slice normal
        world = grid @ axes.T + origin + offset * acq.thickness * (axes[:, 2] / acq.spacing)
        voxels = world @ to_reference[:3, :3].T + to_reference[:3, 3]
        data += ndimage.map_coordinates(reference, voxels.reshape(-1, 3).T, order=1, mode="constant").reshape(shape)
    return (data / len(offsets)).astype(np.float32), out_affine


def reorient(data: np.ndarray, affine: np.ndarray, codes: str) -> tuple[np.ndarray, np.ndarray]:
    """The same image stored with voxel axes ``codes`` (e.g. ``"LIA"``), world coordinates unchanged."""
    current = nib.orientations.io_orientation(affine)
    wanted = nib.orientations.axcodes2ornt(tuple(codes))
    transform = nib.orientations.ornt_transform(current, wanted)
    return (nib.orientations.apply_orientation(data, transform),
            affine @ nib.orientations.inv_ornt_aff(transform, data.shape))


def write_acquisition(path: Path, data: np.ndarray, affine: np.ndarray, acq: Acquisition) -> None:
    data, affine = reorient(data, affine, acq.orientation)
    image = (nib.MGHImage if acq.suffix == ".mgz" else nib.Nifti1Image)(data.astype(np.float32), affine)
    atomic_write(path, lambda tmp: nib.save(image, str(tmp)))


def on_reference_grid(output: Path, reference_affine: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A restored volume resampled to the reference grid (trilinear), and the voxels inside its field of view."""
    image = nib.load(str(output))
    data = np.asanyarray(image.dataobj, dtype=np.float64)
    to_output = np.linalg.inv(image.affine) @ reference_affine
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"), -1)
    voxels = grid @ to_output[:3, :3].T + to_output[:3, 3]
    inside = np.all((voxels >= -1e-3) & (voxels <= np.array(data.shape) - 1 + 1e-3), axis=-1)
    values = ndimage.map_coordinates(data, voxels.reshape(-1, 3).T, order=1, mode="nearest").reshape(shape)
    return values, inside


def score(output: Path, reference: np.ndarray, reference_affine: np.ndarray) -> dict[str, float]:
    """PROTOCOL.md metrics of a restored file against the reference, in the brain inside the field of view."""
    values, inside = on_reference_grid(output, reference_affine, reference.shape)
    evaluated = ndimage.binary_erosion(inside, iterations=EDGE) & (reference > 0)
    restored = np.where(inside, values, reference)
    ref = torch.from_numpy(reference.astype(np.float64))
    metrics = volume_metrics(torch.from_numpy(restored), ref, torch.from_numpy(evaluated),
                             torch.zeros(reference.shape, dtype=torch.bool))
    return {k: metrics[k] for k in METRICS}


def restore(source: Path, output: Path, method: str) -> None:
    """``python -m inpaint.predict SOURCE -o OUTPUT --method M`` (or ``--checkpoint M``), no other flag."""
    how = ["--method", method] if method in ("linear", "cubic") else ["--checkpoint", method]
    if predict.main([str(source), "-o", str(output), *how]) != 0:
        raise SystemExit(f"error: predict failed on {source} with {method}; see above")


def read_scores(path: Path) -> dict[tuple[str, str, str], dict[str, float]]:
    if not path.exists():
        return {}
    with path.open(newline="") as handle:
        return {(r["subject"], r["file"], r["method"]): {k: float(r[k]) for k in METRICS} for r in csv.DictReader(handle)}


def write_tables(path: Path, scores: dict[tuple[str, str, str], dict[str, float]], methods: list[str]) -> None:
    rows = [{"subject": s, "file": f, "method": m, **v} for (s, f, m), v in scores.items()]
    header = ["subject", "file", "method", *METRICS]
    lines = [",".join(header)] + [",".join(str(r[k]) for k in header) for r in rows]
    atomic_write(path / "scores.csv", "\n".join(lines) + "\n")
    base = methods[0]
    md = ["| subject | file | " + " | ".join(f"{m} PSNR / SSIM / HFEN" for m in methods) +
          "".join(f" | {m} − {base} PSNR" for m in methods[1:]) + " |",
          "|---|---|" + "---|" * (2 * len(methods) - 1)]
    for subject, name in dict.fromkeys((s, f) for s, f, _ in scores):
        cells = [scores.get((subject, name, m)) for m in methods]
        text = [f"{c['psnr']:.2f} / {c['ssim']:.4f} / {c['hfen']:.4f}" if c else "–" for c in cells]
        gains = [f"{c['psnr'] - cells[0]['psnr']:+.2f}" if c and cells[0] else "–" for c in cells[1:]]
        md.append(f"| {subject} | {name} | " + " | ".join(text + gains) + " |")
    atomic_write(path / "scores.md", "\n".join(md) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of 1 mm references (SUBJECT_T1w.nii.gz)")
    parser.add_argument("--split", type=Path, default=Path("experiments/splits/ds002748.tsv"))
    parser.add_argument("--subjects", nargs="+", help="default: the first 3 test subjects of --split")
    parser.add_argument("--out", type=Path, required=True, help="folder for the set, the restored files and the scores")
    parser.add_argument("--method", dest="methods", action="append", default=[], help="a classical method (first: the baseline)")
    parser.add_argument("--checkpoint", dest="methods", action="append", help="a checkpoint path or 'pretrained...'")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="acquisitions to make (default: all)")
    args = parser.parse_args(argv)
    methods = args.methods or ["linear"]
    subjects = args.subjects or [s for s, role in read_split_file(args.split).items() if role == "test"][:3]
    acquisitions = [a for a in ACQUISITIONS if not args.only or a.name in args.only]
    scores = read_scores(args.out / "scores.csv")
    jobs = [(s, a) for s in subjects for a in acquisitions]
    for subject, acq in tqdm(jobs, desc="acquisitions", unit="file"):
        reference_path = next(args.data.glob(f"{subject}*_T1w.nii*"), None)
        if reference_path is None:
            raise SystemExit(f"error: no {subject}*_T1w.nii(.gz) in {args.data}; give --data the reference folder")
        data, affine = read_volume(reference_path)
        reference = data[0].numpy().astype(np.float64)
        source = args.out / "set" / f"{subject}_{acq.name}{acq.suffix}"
        if not source.exists():
            write_acquisition(source, *acquire(reference, affine, acq), acq)
        for method in methods:
            if (subject, acq.name, method) in scores:
                continue
            output = args.out / "restored" / re.sub(r"[^\w.-]+", "_", method) / f"{subject}_{acq.name}.nii.gz"
            if not output.exists():
                restore(source, output, method)
            scores[(subject, acq.name, method)] = score(output, reference, affine)
            write_tables(args.out, scores, methods)
    print((args.out / "scores.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
