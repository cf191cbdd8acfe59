"""Test-time flips: does averaging a network's fill over mirrored inputs raise its gain over linear?

    .venv/bin/python -m benchmarks.flip_average --data ../shared/data/ds002748 --checkpoint pretrained \\
        --out docs/bench_flip_average.md

For each subject of ``--split-name`` (default: the validation subjects of the committed split), the
acquisition the checkpoint expects is simulated, restored plainly and averaged over each set of
``FLIPS`` (in-plane axes of the network's frame, slice axis last), and scored (PROTOCOL.md's PSNR in the
brain, gain over linear) with its wall time. The networks were trained without flips.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from inpaint.checkpoint import load_module
from inpaint.data.io import InputError, atomic_write, read_volume
from inpaint.data.subjects import read_split_file, reference_files
from inpaint.errors import report
from inpaint.metrics import volume_metrics
from inpaint.restore import Restorer

# name -> the in-plane axes flipped in each pass (() = as is); the fill is the mean of the passes
FLIPS = {"plain": [()], "left-right": [(), (0,)], "left-right + front-back": [(), (0,), (1,), (0, 1)]}


class FlipAveraged(Restorer):
    """A :class:`Restorer` whose network output is the mean over passes on flipped (X, Y, Z) inputs."""

    def __init__(self, method, flips: list[tuple[int, ...]]) -> None:
        super().__init__(method)
        self.flips = flips

    def restore_normalised(self, x: torch.Tensor, known: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        passes = [super(FlipAveraged, self).restore_normalised(*(t.flip(dims) for t in (x, known, mask))).flip(dims)
                  for dims in self.flips]
        return torch.stack(passes).mean(0)


def gains(module, reference: torch.Tensor, affine: np.ndarray, source: str) -> dict[str, tuple[float, float]]:
    """{flip set: (PSNR gain over linear in dB, seconds)} for one (X, Y, Z) reference."""
    degraded = Restorer(module).degrade(reference, affine, source)  # the same acquisition for every flip set
    linear = volume_metrics(degraded.input.double(), reference.double(), reference > 0, degraded.known)["psnr"]
    result = {}
    for name, flips in FLIPS.items():
        restorer = FlipAveraged(module, flips)
        start = time.perf_counter()
        filled = restorer(degraded, None, None, source, affine=affine)
        seconds = time.perf_counter() - start
        psnr = volume_metrics(filled.double(), reference.double(), reference > 0, degraded.known)["psnr"]
        result[name] = (psnr - linear, seconds)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of 1 mm references (SUBJECT_T1w.nii.gz)")
    parser.add_argument("--split", type=Path, default=Path("experiments/splits/ds002748.tsv"))
    parser.add_argument("--split-name", default="val", help="the split's subjects to score (default: val)")
    parser.add_argument("--checkpoint", default="pretrained", help="a checkpoint path or a pretrained name")
    parser.add_argument("--out", type=Path, help="Markdown table to write (default: print only)")
    args = parser.parse_args(argv)
    try:
        module = load_module(args.checkpoint)
        subjects = [s for s, role in read_split_file(args.split).items() if role == args.split_name]
        paths = reference_files(args.data, subjects)
    except InputError as error:
        return report(error)
    lines = ["| subject | " + " | ".join(f"{n}: gain (dB) / s" for n in FLIPS) + " |", "|---|" + "---|" * len(FLIPS)]
    rows = []
    for subject, path in zip(subjects, paths, strict=True):
        data, affine = read_volume(path)
        rows.append(gains(module, data[0].float(), affine, str(path)))
        lines.append(f"| {subject} | " + " | ".join(f"{g:+.3f} / {s:.1f}" for g, s in rows[-1].values()) + " |")
        print(lines[-1], flush=True)
    lines.append("| mean | " + " | ".join(f"{np.mean([r[n][0] for r in rows]):+.3f} / {np.mean([r[n][1] for r in rows]):.1f}"
                                         for n in FLIPS) + " |")
    print(lines[-1])
    if args.out:
        atomic_write(args.out, f"`{args.checkpoint}` on the {args.split_name} subjects of {args.split}, interval "
                               f"{Restorer(module).settings['interval']} (as the checkpoint expects)\n\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
