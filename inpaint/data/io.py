"""NIfTI reading with clear errors, and atomic writing (temp file + rename, no silent overwrite)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from inpaint.errors import InpaintError

NIFTI_SUFFIXES = (".nii.gz", ".nii", ".mgz")  # read
WRITTEN_SUFFIXES = (".nii.gz", ".nii")  # written (NIfTI-1)


class InputError(InpaintError):
    """Bad input data: the message is one line naming the file and the fix."""


def is_volume_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(NIFTI_SUFFIXES)


def volume_stem(path: Path) -> str:
    """File name without its NIfTI suffix: ``sub-02_T1w.nii.gz`` -> ``sub-02_T1w``."""
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def read_volume(path: str | Path) -> tuple[torch.Tensor, np.ndarray]:
    """Read one 3D volume (a TorchIO ``reader``): float32 tensor (1, X, Y, Z) in file voxel order, affine (4, 4).

    Raises:
        InputError: unreadable file, not 3D (or 4D with more than one volume), NaN or Inf values.
    """
    path = Path(path)
    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
    except Exception as error:  # nibabel raises many kinds
        raise InputError(f"{path}: cannot read it as NIfTI/MGZ ({error}); give a .nii, .nii.gz or .mgz file") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 3 and min(data.shape) < 2:
        raise InputError(f"{path}: shape {data.shape} holds a single slice; give a volume with at least 2 slices "
                         "along every axis (a sparse scan needs 2 or more acquired slices)")
    if data.ndim != 3:
        raise InputError(
            f"{path}: expected one 3D volume, got shape {data.shape}; "
            "split 4D series into 3D files (e.g. fslsplit) and give 3D volumes only"
        )
    data = np.asarray(data, dtype=np.float32)
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise InputError(f"{path}: {bad} NaN/Inf voxels; replace them (e.g. fslmaths in -nan out) before use")
    return torch.from_numpy(data)[None], image.affine


def atomic_write(path: str | Path, content: str | bytes | Callable[[Path], Any]) -> Path:
    """Write ``content`` (text, bytes, or ``content(tmp_path)``) to a temporary file, then rename it onto ``path``.

    Readers never see half a file, and an interrupted write leaves the old file as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp{os.getpid()}.{path.name}")  # same suffix: writers that go by it still work
    try:
        if isinstance(content, str):
            tmp.write_text(content)
        elif isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            content(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_volume(data: torch.Tensor | np.ndarray, affine: np.ndarray, path: str | Path, overwrite: bool = False,
                 dtype: np.dtype | type | None = None, description: str = "") -> Path:
    """Write (X, Y, Z) or (1, X, Y, Z) data as NIfTI atomically (sform = qform = ``affine``, mm); refuse to overwrite
    unless asked. ``description``: the header's descrip field (at most 79 characters)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite (or choose another output) to replace it")
    array = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    if array.ndim == 4:
        array = array[0]
    if dtype is not None:
        if np.issubdtype(np.dtype(dtype), np.integer):
            info = np.iinfo(dtype)
            array = np.clip(np.rint(array), info.min, info.max)
        array = array.astype(dtype)
    image = nib.Nifti1Image(array, affine)
    set_header_geometry(image.header, np.asarray(affine, dtype=np.float64))
    if description:
        image.header["descrip"] = description[:79].encode()
    return atomic_write(path, lambda tmp: nib.save(image, str(tmp)))


def set_header_geometry(header: nib.Nifti1Header, affine: np.ndarray) -> None:
    """sform and qform both ``affine`` (code 1, scanner; the qform only if ``affine`` has no shear), units mm."""
    header.set_sform(affine, code=1)
    columns = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    header.set_qform(affine, code=1 if np.allclose(columns.T @ columns, np.eye(3), atol=1e-5) else 0)
    header.set_xyzt_units("mm", "sec")
