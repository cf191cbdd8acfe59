"""Bundled default data: pseudo-subjects made from the real 1 mm MNI152 2009 T1 template that nilearn ships.

The template is skull-stripped with nilearn's brain mask, cropped to the brain and varied by seeded
TorchIO random affine + elastic deformations and bias fields, then written once as NIfTI files
(``demo-01_T1w.nii.gz`` ...) under ``~/.cache/inpaint``; from then on they are read like any folder.
Nothing is downloaded.
"""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torchio as tio

from inpaint.data.io import write_volume

log = logging.getLogger(__name__)
VERSION = 1
MARGIN = 4  # voxels kept around the brain's bounding box


def default_dir(n_subjects: int) -> Path:
    return Path.home() / ".cache" / "inpaint" / f"mni152-demo-v{VERSION}-n{n_subjects}"


def skull_stripped_template() -> tuple[np.ndarray, np.ndarray]:
    """The MNI152 T1 template times its brain mask, cropped to the brain; (X, Y, Z) float32 in [0, 1000], affine."""
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template

    template = load_mni152_template(resolution=1)
    mask = load_mni152_brain_mask(resolution=1).get_fdata() > 0
    data = np.where(mask, template.get_fdata(), 0.0) * 1000.0
    lo = np.maximum(np.argwhere(mask).min(0) - MARGIN, 0)
    hi = np.minimum(np.argwhere(mask).max(0) + MARGIN + 1, mask.shape)
    crop = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    affine = template.affine.copy()
    affine[:3, 3] = nib.affines.apply_affine(template.affine, lo)
    return data[crop].astype(np.float32), affine


def pseudo_subject_transform() -> tio.Transform:
    """Anatomical and contrast variation: small affine, elastic deformation, bias field, gamma."""
    return tio.Compose([
        tio.RandomAffine(scales=0.08, degrees=6, translation=0, image_interpolation="linear"),
        tio.RandomElasticDeformation(num_control_points=7, max_displacement=5.0),
        tio.RandomBiasField(coefficients=0.2),
        tio.RandomGamma(log_gamma=0.15),
    ])


def demo_dataset(n_subjects: int = 8, directory: str | Path | None = None, seed: int = 0) -> Path:
    """Write (once) and return a folder of ``n_subjects`` pseudo-subject volumes."""
    directory = Path(directory) if directory else default_dir(n_subjects)
    done = directory / ".complete"
    if done.exists():
        return directory
    log.info("writing %d bundled MNI152 pseudo-subjects to %s (once)", n_subjects, directory)
    data, affine = skull_stripped_template()
    transform = pseudo_subject_transform()
    for index in range(n_subjects):
        path = directory / f"demo-{index + 1:02d}_T1w.nii.gz"
        if path.exists():
            continue
        torch.manual_seed(seed * 1000 + index)
        image = transform(tio.ScalarImage(tensor=torch.from_numpy(data)[None], affine=affine))
        volume = image.data[0].clamp(min=0)
        volume[volume < 5] = 0  # keep the background exactly 0 (mask = volume > 0)
        write_volume(volume, affine, path, dtype=np.int16)
    done.touch()
    return directory
