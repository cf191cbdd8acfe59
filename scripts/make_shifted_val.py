"""A shifted validation set: the val subjects as other sites and scanners would deliver them (issue 25).

    python scripts/make_shifted_val.py --data ../shared/data/ds002748 --out data-shifted/ds002748_val
    python scripts/make_shifted_val.py --summarise EVAL/metrics.csv   # inpaint.evaluate's rows on it: gain per shift

For each subject of ``--split-name`` (default val) in the committed split, one volume per shift of ``SHIFTS``,
named ``sub-XX_acq-SHIFT_T1w.nii.gz``, each the whole 1 mm reference transformed as another site differs:

- ``wm110``: FreeSurfer's intensity normalisation (``brain.mgz``): white matter scaled to 110, stored as uint8
- ``bias``: a strong smooth multiplicative bias field (exp of a random cubic in x, y, z; in the
  brain within x1/1.6 to x1.6, one of the two reached)
- ``gamma``: another contrast curve (intensities divided by the brain's 99.9th percentile, raised to the power 1.6,
  scaled back)
- ``noise``: Gaussian noise of 4 % of the white-matter level in the brain (the background stays 0, as skull stripping
  leaves it)
- ``res1mm``, ``res08mm``: 1.0 mm and 0.8 mm in-plane voxels (ds002748 has 0.868 mm; through-plane unchanged)
- ``site``: all of them at once (white matter at 110 last), with 1.0 mm in-plane voxels

Every shift is seeded per subject, so the set is the same on every machine. ``shifted.tsv`` lists file, subject, shift
and the drawn parameters. Score it with ``python -m inpaint.evaluate --data OUT --allow-seen ...`` (the val subjects
selected the checkpoints: these are validation figures) or pass it to training as ``data.val_shifted=OUT``: every
validation then reports ``val_shifted/psnr_gain`` beside ``val/psnr_gain``. Refuses to overwrite a file unless
``--overwrite``.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchio as tio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inpaint.data.io import InputError, atomic_write, read_volume, write_volume  # noqa: E402
from inpaint.data.subjects import read_split_file, reference_files  # noqa: E402

WM_LEVEL = 110.0  # FreeSurfer's white-matter intensity in T1.mgz / brain.mgz
GAMMA = 1.6
NOISE = 0.04  # noise std as a fraction of the white-matter level
BIAS_MAX = 1.6  # the bias field spans x1/1.6 to x1.6 in the brain
UINT8 = ("wm110", "site")  # stored as FreeSurfer stores brain.mgz
SHIFTS = ("wm110", "bias", "gamma", "noise", "res1mm", "res08mm", "site")


def white_matter_level(volume: np.ndarray) -> float:
    """The white-matter intensity of a skull-stripped T1 volume: the mode of the brain's upper half (smoothed
    256-bin histogram of the voxels above the brain's median)."""
    brain = volume[volume > 0]
    upper = brain[brain > np.median(brain)]
    counts, edges = np.histogram(upper, 256)
    smooth = np.convolve(counts, np.ones(5) / 5, mode="same")
    peak = int(np.argmax(smooth))
    return float((edges[peak] + edges[peak + 1]) / 2)


def to_wm110(image: tio.ScalarImage, rng: np.random.Generator) -> tuple[tio.ScalarImage, str]:
    level = white_matter_level(image.data.numpy())
    scaled = (image.data * (WM_LEVEL / level)).round().clamp(0, 255)  # written as uint8, as brain.mgz
    return tio.ScalarImage(tensor=scaled, affine=image.affine), f"white matter {level:.1f} -> 110, uint8"


def with_bias(image: tio.ScalarImage, rng: np.random.Generator) -> tuple[tio.ScalarImage, str]:
    """A smooth multiplicative field: exp of a random cubic polynomial of the voxel coordinates (each in [-1, 1]),
    centred on the brain and scaled so that it spans x1/BIAS_MAX to xBIAS_MAX there."""
    data = image.data[0].double()
    axes = [torch.linspace(-1, 1, n, dtype=torch.float64) for n in data.shape]
    x, y, z = torch.meshgrid(*axes, indexing="ij")
    log_field = torch.zeros_like(data)
    for i in range(4):
        for j in range(4 - i):
            for k in range(4 - i - j):
                if i + j + k:
                    log_field += float(rng.normal()) * x**i * y**j * z**k
    brain = data > 0
    log_field -= log_field[brain].mean()
    log_field *= np.log(BIAS_MAX) / log_field[brain].abs().max()
    out = data * log_field.exp()
    low, high = log_field[brain].exp().min(), log_field[brain].exp().max()
    return tio.ScalarImage(tensor=out[None].float(), affine=image.affine), f"bias field x{low:.2f} to x{high:.2f} in the brain"


def with_gamma(image: tio.ScalarImage, rng: np.random.Generator) -> tuple[tio.ScalarImage, str]:
    data = image.data.double()
    top = float(torch.quantile(data[data > 0][::7], 0.999))  # robust to a few bright voxels (a subsample: quantile's limit)
    out = (data.clamp(min=0) / top) ** GAMMA * top
    return tio.ScalarImage(tensor=out.float(), affine=image.affine), f"gamma {GAMMA}"


def with_noise(image: tio.ScalarImage, rng: np.random.Generator) -> tuple[tio.ScalarImage, str]:
    data = image.data.numpy().astype(np.float32)
    std = NOISE * white_matter_level(data)
    brain = data > 0
    data[brain] = np.clip(data[brain] + rng.normal(0.0, std, int(brain.sum())), 1e-3, None)  # stays in the brain
    return tio.ScalarImage(tensor=torch.from_numpy(data), affine=image.affine), f"Gaussian noise std {std:.1f} in the brain"


def in_plane(spacing_mm: float) -> Callable[[tio.ScalarImage, np.random.Generator], tuple[tio.ScalarImage, str]]:
    """Resample to ``spacing_mm`` in the two voxel axes of the finer spacing (the slice axis keeps its own)."""
    def resample(image: tio.ScalarImage, rng: np.random.Generator) -> tuple[tio.ScalarImage, str]:
        spacing = np.array(image.spacing, dtype=float)
        through = int(np.argmax(spacing))
        target = tuple(float(spacing[a]) if a == through else spacing_mm for a in range(3))
        out = tio.Resample(target, image_interpolation="bspline")(image)
        out.set_data(out.data.clamp(min=0))
        return out, f"in-plane {spacing[[a for a in range(3) if a != through]].round(3).tolist()} -> {spacing_mm} mm"
    return resample


def site(image: tio.ScalarImage, rng: np.random.Generator) -> tuple[tio.ScalarImage, str]:
    notes = []
    for step in (in_plane(1.0), with_bias, with_gamma, with_noise, to_wm110):
        image, note = step(image, rng)
        notes.append(note)
    return image, "; ".join(notes)


TRANSFORMS = {"wm110": to_wm110, "bias": with_bias, "gamma": with_gamma, "noise": with_noise,
              "res1mm": in_plane(1.0), "res08mm": in_plane(0.8), "site": site}


def shifted(reference: Path, shift: str, subject: str) -> tuple[tio.ScalarImage, str]:
    """``reference`` transformed by ``shift``, seeded by subject and shift; (image, what was drawn)."""
    data, affine = read_volume(reference)
    image = tio.ScalarImage(tensor=data, affine=affine)
    rng = np.random.default_rng(zlib.crc32(f"{subject}/{shift}".encode()))
    return TRANSFORMS[shift](image, rng)


def summarise(metrics: Path) -> str:
    """A Markdown table from ``inpaint.evaluate``'s metrics.csv on a shifted set: each method's mean PSNR gain over
    linear per shift (rows ``sub-XX_acq-SHIFT``), over the subjects."""
    rows = list(csv.DictReader(metrics.open()))
    psnr = {(r["subject"], r["method"]): float(r["psnr"]) for r in rows}
    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m != "linear"]
    gains: dict[tuple[str, str], list[float]] = {}
    for (volume, method), value in psnr.items():
        if method != "linear" and "_acq-" in volume:
            shift = volume.split("_acq-")[1].split("_")[0]
            gains.setdefault((shift, method), []).append(value - psnr[volume, "linear"])
    shifts = [k for k in SHIFTS if any(s == k for s, _ in gains)]
    lines = ["| shift | " + " | ".join(f"{m}: PSNR gain over linear (dB)" for m in methods) + " |",
             "|---|" + "---|" * len(methods)]
    for shift in [*shifts, "all"]:
        cells = []
        for m in methods:
            values = [v for (s, mm), vs in gains.items() if mm == m and (s == shift or shift == "all") for v in vs]
            cells.append(f"{np.mean(values):+.2f} (n={len(values)})" if values else "—")
        lines.append(f"| {shift} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--summarise"]:  # python scripts/make_shifted_val.py --summarise EVAL/metrics.csv
        print(summarise(Path(argv[1])), end="")
        return 0
    parser.add_argument("--data", type=Path, required=True, help="the ds002748 folder (sub-XX_T1w.nii.gz)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the shifted volumes")
    parser.add_argument("--split", type=Path, default=Path(__file__).resolve().parents[1] / "experiments/splits/ds002748.tsv")
    parser.add_argument("--split-name", default="val", help="which subjects (default val; never a training split's)")
    parser.add_argument("--shifts", default=",".join(SHIFTS), help=f"comma-separated, of {', '.join(SHIFTS)}")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)
    try:
        shifts = [s for s in args.shifts.split(",") if s]
        unknown = [s for s in shifts if s not in TRANSFORMS]
        if unknown:
            raise InputError(f"--shifts: no shift {unknown[0]!r}; choose from {', '.join(SHIFTS)}")
        subjects = sorted(s for s, split in read_split_file(args.split).items() if split == args.split_name)
        if not subjects:
            raise InputError(f"{args.split}: no subject in split {args.split_name!r}")
        references = reference_files(args.data, subjects)
        targets = {(s, k): args.out / f"{s}_acq-{k}_T1w.nii.gz" for s in subjects for k in shifts}
        existing = [p for p in targets.values() if p.exists()]
        if existing and not args.overwrite:
            raise InputError(f"{existing[0]} exists ({len(existing)} of {len(targets)} files); pass --overwrite to "
                             "replace them or give another --out")
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for subject, reference in zip(subjects, references, strict=True):
        for shift in shifts:
            image, note = shifted(reference, shift, subject)
            data = image.data[0]
            write_volume(data, image.affine, targets[subject, shift], overwrite=True,
                         dtype=np.uint8 if shift in UINT8 else np.float32)
            rows.append({"file": targets[subject, shift].name, "subject": subject, "shift": shift,
                         "shape": "x".join(map(str, data.shape)), "spacing_mm": "x".join(f"{s:.3f}" for s in image.spacing),
                         "drawn": note})
            print(f"{targets[subject, shift]}: {note}")
    listed = args.out / "shifted.tsv"  # earlier runs' rows kept for the files this run did not write
    written = {r["file"] for r in rows}
    earlier = [r for r in csv.DictReader(listed.open(), delimiter="\t") if r["file"] not in written] if listed.exists() else []
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(earlier + rows, key=lambda r: r["file"]))
    atomic_write(listed, table.getvalue())
    print(f"{len(rows)} shifted volumes of {len(subjects)} {args.split_name} subject(s) in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
