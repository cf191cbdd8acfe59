"""What the adapters share (numpy and nibabel only: they run in the peers' venvs, without inpaint's packages)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np


def read_request(folder: Path) -> tuple[dict, np.ndarray, np.ndarray, int]:
    """``request.json`` and ``sparse.nii.gz`` of ``folder``: (request, data (X, Y, Z) float32, affine, slice axis)."""
    request = json.loads((folder / "request.json").read_text())
    image = nib.load(str(folder / "sparse.nii.gz"))
    data = np.asanyarray(image.dataobj, dtype=np.float32)
    return request, data, np.asarray(image.affine, dtype=np.float64), int(request["axis"])


def write_output(folder: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    path = folder / "output.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine), str(path))
    return path


def stretched_affine(affine: np.ndarray, axis: int, n_in: int, n_out: int) -> np.ndarray:
    """The affine of ``n_out`` samples spanning the same first-to-last voxel centres as ``n_in`` along ``axis`` (what
    ``scipy.ndimage.zoom`` produces, corners aligned)."""
    step = np.eye(4)
    step[axis, axis] = (n_in - 1) / (n_out - 1)
    return affine @ step


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
