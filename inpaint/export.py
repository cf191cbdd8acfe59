"""Slim a training checkpoint into a shareable model file: generator weights + hyper-parameters only.

    python -m inpaint.export runs/dense_unet/<run>/checkpoints/best.ckpt -o model.ckpt
    python -m inpaint.export best.ckpt -o inpaint/assets/pretrained/dense_unet.ckpt --overwrite   # the committed model

A Lightning checkpoint also holds optimiser moments, scheduler and loop state (three times the
weights). The exported file keeps ``state_dict`` (floating tensors cast to ``--dtype``, half by
default: ~1e-3 relative weight error), ``hyper_parameters`` and the Lightning version, so
``InpaintingModule.load_from_checkpoint``, ``inpaint.predict --checkpoint`` and ``inpaint.evaluate
--checkpoint`` read it like the original. Written atomically; an existing output is kept unless
``--overwrite``.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Any

import torch

from inpaint.checkpoint import load_module, read_checkpoint
from inpaint.data.io import InputError, atomic_write
from inpaint.errors import report

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
KEEP = ("state_dict", "hyper_parameters", "pytorch-lightning_version")


def slim(checkpoint: dict[str, Any], dtype: torch.dtype = torch.float16) -> dict[str, Any]:
    """The parts of a Lightning checkpoint a model needs, floating tensors cast to ``dtype``."""
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in checkpoint["state_dict"].items()}
    return {**{k: checkpoint[k] for k in KEEP if k in checkpoint}, "state_dict": state}


def export(source: Path, output: Path, dtype: str = "fp16", overwrite: bool = False) -> int:
    """Write the slim copy of ``source`` to ``output``; returns its size in bytes."""
    load_module(str(source))  # one-line errors for anything that is not an inpaint checkpoint, before any writing
    if output.exists() and not overwrite:
        raise InputError(f"{output} exists; pass --overwrite to replace it")
    buffer = io.BytesIO()
    torch.save(slim(read_checkpoint(source), DTYPES[dtype]), buffer)
    atomic_write(output, buffer.getvalue())
    return len(buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inpaint.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help=".ckpt written by python -m inpaint.fit")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the slim .ckpt to write")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="fp16", help="weight precision (default: fp16)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    args = parser.parse_args(argv)
    try:
        size = export(args.checkpoint, args.output, args.dtype, args.overwrite)
    except InputError as error:
        return report(error)
    print(f"wrote {args.output} ({size / 2**20:.2f} MiB, {args.dtype})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
