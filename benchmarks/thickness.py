"""Cortical thickness: ``evaluate --thickness distance`` against DiReCT on a real reference; agreement and speed.

    .venv-segment/bin/python -m benchmarks.thickness --data ../shared/data/ds002748 --subject sub-11 \\
        --transforms eval-out/ds002748_cpu/morphometry/morphometry/transforms/sub-11 --out docs/bench_thickness.md

The subject's reference is segmented as ``evaluate --morphometry`` does (Atropos with the template
priors; the registration kept in ``--transforms`` is reused, else computed there). The distance
thickness is timed on the whole brain. DiReCT (``ants.kelly_kapowski``) on a whole 0.87 mm brain ran
for over 35 minutes on 2 cores without finishing, so both methods run on ``--blocks`` cubes of
``--block`` voxels centred on random GM voxels (seeded). Agreement is taken over the GM voxels of each
cube's core (``--margin`` voxels from the faces left out): Pearson r, and the mean of each method.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from inpaint.data.io import atomic_write, read_volume
from inpaint.data.subjects import find_volumes
from inpaint.data.transforms import brain_mask
from inpaint.morphometry import cortical_thickness, register, segment, to_ants
from inpaint.segment import TISSUES


def cubes(gm: np.ndarray, count: int, size: int, seed: int) -> list[tuple[slice, ...]]:
    """``count`` cubes of ``size`` voxels inside the volume, centred on GM voxels drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    half = size // 2
    inside = np.argwhere(gm)
    inside = inside[((inside >= half) & (inside <= np.array(gm.shape) - half)).all(1)]
    centres = inside[rng.choice(len(inside), count, replace=False)]
    return [tuple(slice(c - half, c - half + size) for c in centre) for centre in centres]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--subject", default="sub-11")
    parser.add_argument("--transforms", type=Path, required=True, help="folder of the kept registration (reused or made)")
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--block", type=int, default=64, help="cube edge, voxels")
    parser.add_argument("--margin", type=int, default=8, help="voxels from each face left out of the agreement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    args = parser.parse_args(argv)
    volume = next(v for v in find_volumes(args.data) if v.name == args.subject)
    data, affine = read_volume(volume.image)
    reference = data[0].numpy()
    mask = brain_mask(data[0], None, str(volume.image)).numpy()
    space = register(reference, affine, mask, keep=args.transforms)
    tissues = segment(reference, mask, space)
    spacing = tuple(float(s) for s in space.image.spacing)
    start = time.perf_counter()
    whole = cortical_thickness(tissues, space.image, "distance")
    whole_seconds = time.perf_counter() - start
    lines = [f"# Distance thickness against DiReCT: {args.subject}, {args.blocks} cubes of {args.block}³ voxels "
             f"({spacing[0]:.3f} x {spacing[1]:.3f} x {spacing[2]:.3f} mm)", "",
             f"Distance thickness of the whole brain ({int(mask.sum()):,} voxels): {whole_seconds:.1f} s, mean "
             f"{whole[whole > 0].mean():.2f} mm over the GM.", "",
             "| cube | GM voxels in core | DiReCT mean (mm) | distance mean (mm) | voxel r | DiReCT s | distance s |",
             "|---|---|---|---|---|---|---|"]
    pooled = []
    for k, cube in enumerate(cubes(tissues["labels"] == TISSUES["gm"], args.blocks, args.block, args.seed)):
        crop = {name: np.ascontiguousarray(value[cube]) for name, value in tissues.items()}
        like = to_ants(np.zeros(crop["labels"].shape, np.float32), np.diag([*spacing, 1.0]))
        values, seconds = {}, {}
        for method in ("direct", "distance"):
            start = time.perf_counter()
            values[method] = cortical_thickness(crop, like, method)
            seconds[method] = time.perf_counter() - start
        core = (slice(args.margin, -args.margin),) * 3
        gm = crop["labels"][core] == TISSUES["gm"]
        direct, distance = values["direct"][core][gm], values["distance"][core][gm]
        pooled.append((direct, distance))
        lines.append(f"| {k} | {gm.sum():,} | {direct.mean():.2f} | {distance.mean():.2f} | "
                     f"{np.corrcoef(direct, distance)[0, 1]:.3f} | {seconds['direct']:.0f} | {seconds['distance']:.2f} |")
    direct, distance = (np.concatenate(p) for p in zip(*pooled, strict=True))
    lines += ["", f"All cubes: DiReCT {direct.mean():.2f} mm, distance {distance.mean():.2f} mm, "
              f"voxel r {np.corrcoef(direct, distance)[0, 1]:.3f}."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        atomic_write(args.out, text)


if __name__ == "__main__":
    main()
