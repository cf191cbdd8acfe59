"""Shared fixtures: tiny synthetic NIfTI folders, real-data location, fast config overrides."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")
# Tiny test volumes: one thread is faster than two, and immune to a busy machine's oversubscription.
torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("INPAINT_SHARED_DATA", REPO.parent / "shared" / "data" / "ds002748"))


def phantom(shape=(40, 44, 36), seed=0) -> np.ndarray:
    """A smooth 'brain': an ellipsoid of smoothly varying intensity with background 0, float32."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    radius = sum((g / r) ** 2 for g, r in zip(grid, (0.8, 0.85, 0.75), strict=True))
    phase = rng.uniform(0, np.pi, 3)
    texture = sum(np.sin(3 * g + p) for g, p in zip(grid, phase, strict=True))
    return np.where(radius < 1, 600 + 200 * texture, 0).astype(np.float32)


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 1.0, 1.0]) if affine is None else affine), str(path))
    return path


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """Six BIDS-named synthetic subjects, 40 x 44 x 36 voxels, RAS (slice axis last)."""
    root = tmp_path_factory.mktemp("tiny")
    for i in range(6):
        write_nifti(root / f"sub-{i:02d}" / "anat" / f"sub-{i:02d}_T1w.nii.gz", phantom(seed=i))
    return root


def quick_overrides(root: Path, tmp_path: Path) -> list[str]:
    """Overrides that make any experiment a seconds-long CPU run on the tiny data."""
    return [f"data.root={root}", f"output_dir={tmp_path / 'runs'}", "data.num_workers=0", "data.batch_size=2",
            "data.samples_per_volume=4", "data.queue_length=8", "data.patch_size=32", "logger=none",
            "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "inference.batch_size=8"]


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set INPAINT_SHARED_DATA)")
    return SHARED_DATA
