"""A real-scan test set: clinical-style 2D acquisitions made from 1 mm references, restored by predict, scored.

    python scripts/real_scans.py --data ../shared/data/ds002748 --out runs/real_scans \\
        --method linear --checkpoint pretrained --checkpoint pretrained-thick

For each subject (default: the first 3 test subjects of experiments/splits/ds002748.tsv) it writes one
file per acquisition of ``ACQUISITIONS``: slices of a given spacing (4.4 to 6 mm, with gaps) and
thickness (thin, or the mean of a slab, as a 2D scan measures), in-plane spacing 0.5 or 0.9 mm, tilted
about the left-right axis, stored as LAS/RAS/LPS/LIA NIfTI or ``.mgz``. Each is sampled from the
reference (trilinear, the slab by the midpoint rule at 0.25 mm). Every method restores every file
with ``python -m inpaint.predict FILE -o OUT`` and no other flag (predict's default grid and settings); the output is brought back to the
reference grid through the two affines (trilinear; exact where the grids coincide) and scored with
PROTOCOL.md's PSNR, SSIM and HFEN in the brain (reference > 0) inside the acquired field of view, 3
voxels in from its edges; outside it the reference stands in (so no SSIM window sees a false edge).
A ``head`` acquisition puts the brain inside a synthetic skull and scalp (``whole_head``); each network
restores it plain, with the true brain mask (``--mask FILE``) and with BET's (``--mask auto``, the
``skull`` extra), scored in the brain. Writes ``scores.csv`` and ``scores.md`` (per file and method, the
gain over the first method; a table per set of methods); resumes, and refuses a checkpoint whose file changed
since its scores (``weights.json``) until ``--redo NAME`` drops them.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import shlex
import shutil
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
from inpaint.checkpoint import changed_weights, checkpoint_path, file_digest  # noqa: E402
from inpaint.data.io import InputError, atomic_write, read_volume  # noqa: E402
from inpaint.data.subjects import read_split_file, reference_files  # noqa: E402
from inpaint.interpolate import METHODS  # noqa: E402
from inpaint.metrics import volume_metrics  # noqa: E402
from inpaint.peers import on_reference_grid as resample_onto  # noqa: E402
from inpaint.skull import bet_available  # noqa: E402

SLAB_STEP = 0.25  # mm between the samples that average a thick slice
# A synthetic head around a skull-stripped brain: (outer distance from the brain in mm, intensity as a
# fraction of the brain's 95th percentile) from the inside out: CSF, inner table, diploe (marrow fat), outer
# table, galea and muscle, subcutaneous fat, skin; air beyond. Typical adult T1 contrasts and thicknesses.
SCALP = ((2.0, 0.15), (4.0, 0.04), (7.0, 0.65), (9.0, 0.04), (12.0, 0.45), (16.0, 1.05), (17.5, 0.5))
SCALP_TEXTURE = 0.08  # relative amplitude of the scalp's smooth multiplicative texture
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
    head: bool = False  # skull and scalp around the brain (``whole_head``); restored plain and with --mask


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
    Acquisition("head-thick-5mm", 5.0, 5.0, head=True),
)


def whole_head(brain: np.ndarray, affine: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A skull-stripped (X, Y, Z) brain inside a synthetic head: layers of ``SCALP`` by distance from the brain.

    The volume is padded by the head's thickness on every side (voxel 0 moves; the returned affine says
    where). Brain voxels keep their values. Returns (head, brain mask, affine), on the padded grid.
    """
    zooms = np.linalg.norm(affine[:3, :3], axis=0)
    pad = np.ceil((SCALP[-1][0] + 2) / zooms).astype(int)
    mask = np.pad(brain > 0, [(p, p) for p in pad])
    distance = ndimage.distance_transform_edt(~mask, sampling=zooms)
    level = float(np.percentile(brain[brain > 0], 95))
    bounds, fractions = zip(*SCALP, strict=True)
    layer = np.searchsorted(np.array(bounds), distance)  # 0..len(SCALP); the last: air
    scalp = np.append(np.array(fractions), 0.0)[layer] * level
    texture = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(mask.shape), 4 / zooms)
    scalp *= 1 + SCALP_TEXTURE * texture / texture.std()
    scalp = ndimage.gaussian_filter(scalp, 0.6 / zooms)  # partial volume at the layers' borders
    head = np.where(mask, np.pad(brain, [(p, p) for p in pad]), scalp)
    padded = affine.copy()
    padded[:3, 3] -= affine[:3, :3] @ pad
    return head.astype(np.float32), mask, padded


def acquire(reference: np.ndarray, affine: np.ndarray, acq: Acquisition) -> tuple[np.ndarray, np.ndarray]:
    """Sample one acquisition from a (X, Y, Z) reference whose slice axis is 2; returns (data, affine) in LAS+tilt.

    Voxel 0 of the result is reference voxel 0 (rotated about the volume's centre when tilted); its slice
    axis is 2, spaced ``acq.spacing`` mm; its in-plane axes are the reference's, at ``acq.inplane`` mm. A
    tilted acquisition starts from the world axes nearest the reference's, so ``acq.tilt`` is its obliquity.
    """
    zooms = np.linalg.norm(affine[:3, :3], axis=0)
    inplane = [acq.inplane or zooms[0], acq.inplane or zooms[1]]
    shape = [int(math.floor((n - 1) * z / s + 1e-6)) + 1 for n, z, s in zip(reference.shape, zooms, [*inplane, acq.spacing], strict=True)]
    directions = affine[:3, :3] / zooms
    if acq.tilt:  # tilted from the world's axial plane, whatever the reference's own obliquity (sub-30: 10 degrees)
        directions = nib.orientations.inv_ornt_aff(nib.orientations.io_orientation(affine), (1, 1, 1))[:3, :3]
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
    return resample_onto(np.asanyarray(image.dataobj), image.affine, reference_affine, shape)


def score(output: Path, reference: np.ndarray, reference_affine: np.ndarray, brain: np.ndarray) -> dict[str, float]:
    """PROTOCOL.md metrics of a restored file against the reference, in the ``brain`` inside the field of view."""
    values, inside = on_reference_grid(output, reference_affine, reference.shape)
    evaluated = ndimage.binary_erosion(inside, iterations=EDGE) & brain
    restored = np.where(inside, values, reference)
    ref = torch.from_numpy(reference.astype(np.float64))
    metrics = volume_metrics(torch.from_numpy(restored), ref, torch.from_numpy(evaluated),
                             torch.zeros(reference.shape, dtype=torch.bool))
    return {k: metrics[k] for k in METRICS}


def restore(source: Path, output: Path, method: str) -> None:
    """``python -m inpaint.predict SOURCE -o OUTPUT --method M`` (or ``--checkpoint M``) and no other flag, unless
    the method names some: ``"M --grid input"``; whole heads add ``--mask FILE`` (the brain mask) or ``--mask auto``."""
    name, *flags = shlex.split(method)
    how = ["--method", name] if name in METHODS else ["--checkpoint", name]
    if predict.main([str(source), "-o", str(output), *how, *flags]) != 0:
        raise SystemExit(f"error: predict failed on {source} with {method}; see above")


def head_variants(methods: list[str], mask: Path) -> list[str]:
    """The methods of a whole-head file: each as given, then each network with the true brain mask and with BET's
    (``--mask auto``, where the ``skull`` extra is installed)."""
    networks = [m for m in methods if shlex.split(m)[0] not in METHODS]
    bet = [f"{m} --mask auto" for m in networks] if bet_available() else []
    return methods + [f"{m} --mask {shlex.quote(str(mask))}" for m in networks] + bet


def method_label(method: str) -> str:
    """A method's name in the tables: a mask file's path becomes ``FILE``."""
    parts = shlex.split(method)
    return shlex.join("FILE" if i and parts[i - 1] == "--mask" and part != "auto" else part for i, part in enumerate(parts))


def restored_dir(out: Path, label: str) -> Path:
    """The folder of a method's restored files (its label, made a file name)."""
    return out / "restored" / re.sub(r"[^\w.-]+", "_", label)


def network_weights(methods: list[str]) -> dict[str, str]:
    """{checkpoint name or path: sha256 of its file} for each network of ``methods``."""
    names = sorted({shlex.split(m)[0] for m in methods} - set(METHODS))
    try:
        paths = {n: checkpoint_path(n) for n in names}
    except InputError as error:
        raise SystemExit(f"error: {error}") from None
    missing = [n for n, path in paths.items() if not path.is_file()]
    if missing:
        raise SystemExit(f"error: --checkpoint {missing[0]}: no such file; give a .ckpt path or a pretrained name")
    return {n: file_digest(path) for n, path in paths.items()}


def guard_weights(out: Path, weights: dict[str, str], redo: list[str],
                  scores: dict[tuple[str, str, str], dict[str, float]], order: list[str]) -> None:
    """Refuse to resume a network whose file changed since its scores (``weights.json``) unless it is in ``redo``;
    for each name in ``redo`` drop its scores and restored files (all its mask variants) so that they are redone."""
    unknown = [n for n in redo if n not in weights]
    if unknown:
        raise SystemExit(f"error: --redo {unknown[0]}: not a checkpoint of this run; choose from {', '.join(weights)}")
    path = out / "weights.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    scored = {shlex.split(k[2])[0] for k in scores}
    changed = changed_weights(old, weights, redo) + [n for n in weights if n in scored and n not in old and n not in redo]
    if changed:
        raise SystemExit(f"error: {path}: --checkpoint {changed[0]} is not (or is not recorded as) the file its scores in "
                         f"{out} were made with; add --redo {changed[0]} to restore and score it again")
    for name in redo:  # its scored labels and this run's (mask variants included): exactly their folders
        labels = {label for label in {k[2] for k in scores} | set(order) if shlex.split(label)[0] == name}
        for key in [k for k in scores if k[2] in labels]:
            del scores[key]
        for label in labels:
            shutil.rmtree(restored_dir(out, label), ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    if redo:
        write_tables(out, scores, order)
    atomic_write(path, json.dumps({**old, **weights}, indent=2))


def read_scores(path: Path) -> dict[tuple[str, str, str], dict[str, float]]:
    if not path.exists():
        return {}
    with path.open(newline="") as handle:
        return {(r["subject"], r["file"], r["method"]): {k: float(r[k]) for k in METRICS} for r in csv.DictReader(handle)}


def summary_line(method: str, base: str, files: list[dict[str, dict[str, float]]]) -> str:
    """How often ``method`` beats ``base`` in each metric over ``files`` (HFEN: lower is better), and its mean gain."""
    better = [sum((f[method][k] < f[base][k]) if k == "hfen" else (f[method][k] > f[base][k]) for f in files)
              for k in METRICS]
    gains = [f[method]["psnr"] - f[base]["psnr"] for f in files]
    return (f"- {method}: better than {base} on {'/'.join(map(str, better))} of {len(files)} files (PSNR/SSIM/HFEN); "
            f"PSNR gain {np.mean(gains):+.2f} dB (range {min(gains):+.2f} to {max(gains):+.2f})")


def write_tables(path: Path, scores: dict[tuple[str, str, str], dict[str, float]], order: list[str]) -> None:
    """``scores.csv`` (a row per subject, file and method) and ``scores.md``: a table per set of methods (the
    plain acquisitions; the whole heads with their mask variants), the gain over each table's first method.
    Methods appear in ``order`` (labels; others after them)."""
    rows = [{"subject": s, "file": f, "method": m, **v} for (s, f, m), v in scores.items()]
    header = ["subject", "file", "method", *METRICS]
    lines = [",".join(header)] + [",".join(str(r[k]) for k in header) for r in rows]
    atomic_write(path / "scores.csv", "\n".join(lines) + "\n")
    files: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    for (subject, name, method), values in scores.items():
        files.setdefault((subject, name), {})[method] = values
    groups: dict[tuple[str, ...], list[tuple[str, str]]] = {}
    for key, by_method in files.items():
        ranked = sorted(by_method, key=lambda m: order.index(m) if m in order else len(order))
        groups.setdefault(tuple(ranked), []).append(key)
    md = []
    for methods, keys in groups.items():
        base = methods[0]
        md += ["| subject | file | " + " | ".join(f"{m} PSNR / SSIM / HFEN" for m in methods) +
               "".join(f" | {m} − {base} PSNR" for m in methods[1:]) + " |",
               "|---|---|" + "---|" * (2 * len(methods) - 1)]
        for subject, name in keys:
            cells = [files[(subject, name)][m] for m in methods]
            text = [f"{c['psnr']:.2f} / {c['ssim']:.4f} / {c['hfen']:.4f}" for c in cells]
            gains = [f"{c['psnr'] - cells[0]['psnr']:+.2f}" for c in cells[1:]]
            md.append(f"| {subject} | {name} | " + " | ".join(text + gains) + " |")
        md += ["", *(summary_line(m, base, [files[k] for k in keys]) for m in methods[1:]), ""]
    atomic_write(path / "scores.md", "\n".join(md))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of 1 mm references (SUBJECT_T1w.nii.gz)")
    parser.add_argument("--split", type=Path, default=Path("experiments/splits/ds002748.tsv"))
    parser.add_argument("--subjects", nargs="+", help="default: the first 3 test subjects of --split")
    parser.add_argument("--out", type=Path, required=True, help="folder for the set, the restored files and the scores")
    parser.add_argument("--method", dest="methods", action="append", default=[],
                        help="a classical method, optionally with predict flags: 'linear --grid input' (first: the baseline)")
    parser.add_argument("--checkpoint", dest="methods", action="append",
                        help="a checkpoint path or 'pretrained...', optionally with predict flags")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="acquisitions to make (default: all)")
    parser.add_argument("--redo", action="append", default=[], metavar="NAME",
                        help="restore and score this checkpoint again (its file changed), keeping the other methods; "
                             "its scores of subjects and acquisitions outside this run are dropped too")
    args = parser.parse_args(argv)
    methods = args.methods or ["linear"]
    try:  # every input checked before --redo drops anything
        subjects = args.subjects or [s for s, role in read_split_file(args.split).items() if role == "test"][:3]
        references = dict(zip(subjects, reference_files(args.data, subjects), strict=True))
    except InputError as error:
        raise SystemExit(f"error: {error}") from None
    acquisitions = [a for a in ACQUISITIONS if not args.only or a.name in args.only]
    scores = read_scores(args.out / "scores.csv")
    order = [method_label(m) for m in head_variants(methods, Path("FILE"))]  # the tables' column order
    guard_weights(args.out, network_weights(methods), args.redo, scores, order)
    jobs = [(s, a) for s in subjects for a in acquisitions]
    for subject, acq in tqdm(jobs, desc="acquisitions", unit="file"):
        data, affine = read_volume(references[subject])
        reference = data[0].numpy().astype(np.float64)
        brain, variants = reference > 0, methods
        source = args.out / "set" / f"{subject}_{acq.name}{acq.suffix}"
        if acq.head:
            reference, brain, affine = whole_head(reference, affine)
            mask_file = source.with_name(f"{subject}_{acq.name}_mask{acq.suffix}")
            if not mask_file.exists():
                sampled, mask_affine = acquire(brain.astype(np.float64), affine, acq)
                write_acquisition(mask_file, (sampled > 0.5).astype(np.float32), mask_affine, acq)
            variants = head_variants(methods, mask_file)
        if not source.exists():
            write_acquisition(source, *acquire(reference, affine, acq), acq)
        for method in variants:
            label = method_label(method)
            if (subject, acq.name, label) in scores:
                continue
            output = restored_dir(args.out, label) / f"{subject}_{acq.name}.nii.gz"
            if not output.exists():
                restore(source, output, method)
            scores[(subject, acq.name, label)] = score(output, reference, affine, brain)
            write_tables(args.out, scores, order)
    write_tables(args.out, scores, order)
    print((args.out / "scores.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
