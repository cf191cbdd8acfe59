"""What made an output: a JSON sidecar beside every restored volume and a short NIfTI header description.

    dense.nii.gz  ->  dense.json   {"input": ..., "input_sha256": ..., "method": {...}, "settings": {...}, ...}

A month later the sidecar says which file, which model (name, file, sha256), which inpaint version and which
settings (each with where it came from: command line, checkpoint, default) made the volume, and when.
"""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import inpaint
from inpaint.checkpoint import file_digest
from inpaint.data.io import WRITTEN_SUFFIXES, atomic_write
from inpaint.geometry import voxel_sizes

DESCRIPTION_BYTES = 79  # the NIfTI-1 header's descrip field holds 80 bytes, NUL-terminated


def sidecar_path(output: Path) -> Path:
    """``dense.nii.gz`` -> ``dense.json`` (BIDS-style), in the output's folder."""
    name = output.name
    suffix = next(s for s in WRITTEN_SUFFIXES if name.lower().endswith(s))
    return output.with_name(name[: -len(suffix)] + ".json")


def method_record(restorer: Any, spec: str | None) -> dict[str, Any]:
    """The method: a classical fill's name, or the checkpoint as given, its file, sha256, generator and experiment."""
    if restorer.classical:
        return {"name": restorer.method, "kind": "classical"}
    hparams = restorer.method.hparams
    path = Path(restorer.method.checkpoint_path)
    return {"name": spec, "kind": "checkpoint", "file": str(path.resolve()), "sha256": file_digest(path),
            "generator": hparams["generator"]["name"], "experiment": (hparams.get("config") or {}).get("experiment")}


def description(restorer: Any, spec: str | None) -> str:
    """A header description of at most 79 characters, e.g. ``inpaint 0.1.0 slice_resnet pretrained; see .json``."""
    what = restorer.method if restorer.classical else \
        f"{restorer.method.hparams['generator']['name']} {Path(spec or '').name}"
    return f"inpaint {inpaint.__version__} {what}; see .json"[-DESCRIPTION_BYTES:]


def record(source: Path, output: Path, restorer: Any, spec: str | None, options: dict[str, tuple[Any, str]],
           shape: tuple[int, ...], affine: np.ndarray, command: list[str]) -> dict[str, Any]:
    """The sidecar's content.

    Args:
        source: the input file.
        output: the volume written.
        restorer: the ``inpaint.restore.Restorer`` that filled it (its settings and their sources).
        spec: the ``--checkpoint`` value (None for a classical method).
        options: the command's own settings, name -> (value, source).
        shape: the output's (X, Y, Z).
        affine: the output's voxel-to-world matrix.
        command: the command line.
    """
    restore = {k: {"value": v, "source": restorer.sources[k]} for k, v in restorer.settings.items()}
    return {"output": str(output.resolve()), "input": str(source.resolve()), "input_sha256": file_digest(source),
            "method": method_record(restorer, spec), "settings": restore,
            "options": {k: {"value": v, "source": s} for k, (v, s) in options.items()},
            "output_shape": [int(n) for n in shape],
            "output_spacing_mm": [round(float(z), 6) for z in voxel_sizes(affine)],
            "inpaint_version": inpaint.__version__, "python": platform.python_version(), "command": command,
            "written": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def write_sidecar(output: Path, content: dict[str, Any], overwrite: bool = False) -> Path:
    """Write ``content`` as ``sidecar_path(output)`` atomically; refuse an existing one unless ``overwrite``."""
    path = sidecar_path(output)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite (or choose another output) to replace it")
    return atomic_write(path, json.dumps(content, indent=2, default=str) + "\n")
