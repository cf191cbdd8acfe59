"""Peers: slice-interpolation tools users would pick instead, scored by ``inpaint.evaluate`` like any method (issue 26).

Each peer runs in its own venv (its TensorFlow or torch pins clash with ours; ``make setup-peers``), through a small
adapter script (``inpaint/peer_adapters/run_NAME.py``, numpy and nibabel only on our side of it) in a child process:

1. here: the acquired slices of the degraded volume are written as the sparse file a scanner would write
   (``sparse.nii.gz``: only the acquired slices, the slice spacing ``interval`` times the reference's, thin slices or
   slab means as the protocol says), with ``request.json`` (interval, thick slices, the peer's settings);
2. there: the adapter gives the peer the array orientation, intensity range and factor it expects and writes the
   peer's output with the affine of the grid it produced (``output.nii.gz``);
3. here: the output is resampled onto the reference grid through the two affines (trilinear); voxels outside the
   output's field of view (past the last acquired slice) keep the linear fill, as linear copies the edge slices.

A peer does not get the acquired slices copied back: its output is scored as it comes (``describe`` says whether the
peer itself keeps them). The seconds of a row are the whole child process (the peer's imports included).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage

from inpaint.data.degrade import Degraded
from inpaint.data.io import InputError, write_volume

REPO = Path(__file__).resolve().parents[1]
ADAPTERS = Path(__file__).resolve().parent / "peer_adapters"


@dataclass(frozen=True)
class Peer:
    """One peer: its venv, adapter, what it needs offline and what it supports."""

    name: str
    package: str  # the pip requirement its venv holds
    built_for: str  # one line: what the authors built it for
    needs: tuple[str, ...]  # files (glob patterns, relative to the venv's site-packages) it must find offline
    intervals: tuple[int, ...]  # the factors it supports
    thick: bool  # whether it restores thick slices (slab means) too
    keeps_acquired: bool  # whether its output equals the input on the acquired slices
    settings: dict[str, Any] = field(default_factory=dict)

    def venv(self) -> Path:
        return Path(os.environ.get(f"INPAINT_PEER_{self.name.upper()}", REPO / f".venv-peer-{self.name}"))

    def python(self) -> Path:
        return self.venv() / "bin" / "python"


PEERS = {
    "soup_gan": Peer(
        "soup_gan", "KevinSR==0.1.20 (tensorflow-cpu 2.15)",
        "SOUP-GAN (Zhang et al., Mayo Clinic, 2022): pretrained 3D GAN for thick-to-thin and thin-to-thin slice "
        "interpolation at 2-6x; only its thin-to-thin SavedModel ships in the sdist (thick-to-thin is downloaded at "
        "run time, impossible offline)",
        needs=("KevinSR/Thin-to-thin/saved_model.pb", "KevinSR/Thin-to-thin/variables/variables.index"),
        intervals=(2, 3, 4, 5, 6), thick=False, keeps_acquired=False,
        settings={"model": "Thin-to-thin", "prep_type": 1, "threads": int(os.environ.get("INPAINT_PEER_THREADS", "2"))}),
    "eclare": Peer(
        "eclare", "eclare==1.0.1 (torch 2.13 CPU)",
        "ECLARE (Remedios et al., 2025): self-supervised super-resolution trained on each volume's own in-plane "
        "patches, no training data; default 1 M patches per volume (a GPU job)",
        needs=("eclare/main.py",), intervals=tuple(range(2, 9)), thick=True, keeps_acquired=False,
        settings={"n_patches": int(os.environ.get("INPAINT_ECLARE_PATCHES", "8000")), "batch_size": 32,
                  "threads": int(os.environ.get("INPAINT_PEER_THREADS", "2"))}),
}


def site_packages(peer: Peer) -> Path | None:
    found = sorted((peer.venv() / "lib").glob("python*/site-packages"))
    return found[0] if found else None


def check_peer(name: str, interval: int | None = None, thick: bool = False) -> Peer:
    """The peer ``name``, with a one-line InputError naming what is missing or unsupported, before any work."""
    if name not in PEERS:
        raise InputError(f"--methods: unknown peer {name!r}")
    peer = PEERS[name]
    setup = f"run `make setup-peers` (a venv with {peer.package}) or set INPAINT_PEER_{name.upper()} to one"
    if not peer.python().is_file():
        raise InputError(f"--methods {name}: {peer.python()} is missing; {setup}")
    packages = site_packages(peer)
    for pattern in peer.needs:
        if packages is None or not list(packages.glob(pattern)):
            raise InputError(f"--methods {name}: {pattern} is not in {peer.venv()} (the peer cannot run offline "
                             f"without it); {setup}")
    if interval is not None and interval not in peer.intervals:
        raise InputError(f"--methods {name}: interval {interval} is outside the factors it supports "
                         f"({peer.intervals[0]}-{peer.intervals[-1]})")
    if thick and not peer.thick:
        raise InputError(f"--methods {name}: it has no model for thick slices offline ({peer.built_for})")
    return peer


def sparse_file(degraded: Degraded, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The acquired slices of ``degraded`` as a scanner writes them: (X, Y, K) in the reference's axis order (slice axis
    ``degraded.axis``), and its affine (slice spacing ``interval`` x the reference's, first voxel on the first kept
    slice)."""
    kept = degraded.kept.long()
    data = degraded.input.index_select(degraded.axis, kept).numpy()
    step = np.eye(4)
    step[degraded.axis, degraded.axis] = float(degraded.interval)
    step[degraded.axis, 3] = float(kept[0])
    return data.astype(np.float32), np.asarray(affine, dtype=np.float64) @ step


def on_reference_grid(data: np.ndarray, data_affine: np.ndarray, reference_affine: np.ndarray,
                      shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``data`` (on ``data_affine``'s grid) resampled to the reference grid of ``shape`` (trilinear), and the voxels
    inside its field of view."""
    to_data = np.linalg.inv(data_affine) @ np.asarray(reference_affine, dtype=np.float64)
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"), -1)
    voxels = grid @ to_data[:3, :3].T + to_data[:3, 3]
    inside = np.all((voxels >= -1e-3) & (voxels <= np.array(data.shape) - 1 + 1e-3), axis=-1)
    values = ndimage.map_coordinates(np.asarray(data, dtype=np.float64), voxels.reshape(-1, 3).T, order=1,
                                     mode="nearest").reshape(shape)
    return values, inside


class PeerRestorer:
    """A peer as an ``inpaint.evaluate`` method: ``(degraded, mask, spacing, source, affine) -> (X, Y, Z)``."""

    classical = False

    def __init__(self, name: str, interval: int, thick: bool) -> None:
        self.peer = check_peer(name, interval, thick)
        self.thick = thick

    def describe(self) -> str:
        p = self.peer
        return (f"{p.package}; settings {json.dumps(p.settings)}; keeps the acquired slices: "
                f"{'yes' if p.keeps_acquired else 'no'}; its output grid resampled onto the reference's (trilinear); "
                "outside its field of view: the linear fill")

    def __call__(self, degraded: Degraded, mask: torch.Tensor | None = None, spacing: list[float] | None = None,
                 source: str = "volume", affine: np.ndarray | None = None) -> torch.Tensor:
        if affine is None:
            raise ValueError("a peer needs the reference affine (its output comes back through the affines)")
        sparse, sparse_affine = sparse_file(degraded, affine)
        with tempfile.TemporaryDirectory(prefix=f"peer_{self.peer.name}_") as tmp:
            folder = Path(tmp)
            write_volume(sparse, sparse_affine, folder / "sparse.nii.gz")
            request = {"interval": degraded.interval, "thick": self.thick, "axis": degraded.axis, **self.peer.settings}
            (folder / "request.json").write_text(json.dumps(request))
            env = {**os.environ, "OMP_NUM_THREADS": str(self.peer.settings.get("threads", os.environ.get("OMP_NUM_THREADS", "2")))}
            run = subprocess.run([str(self.peer.python()), str(adapter_script(self.peer.name)), str(folder)],
                                 capture_output=True, text=True, env=env, check=False)
            output = folder / "output.nii.gz"
            if run.returncode < 0:
                raise RuntimeError(f"peer {self.peer.name} was killed on {source} by signal {-run.returncode} "
                                   "(out of memory?)")
            if run.returncode != 0 or not output.is_file():
                errors = [line for line in (run.stderr or run.stdout).splitlines() if line.startswith("error:")]
                tail = errors[-1:] or (run.stderr or run.stdout).strip().splitlines()[-1:] or ["no output"]
                raise RuntimeError(f"peer {self.peer.name} failed on {source} (exit {run.returncode}): {tail[0]}")
            image = nib.load(str(output))
            values, inside = on_reference_grid(np.asanyarray(image.dataobj), image.affine, affine,
                                               tuple(degraded.input.shape))
        fallback = degraded.input.numpy().astype(np.float64)
        return torch.from_numpy(np.where(inside, values, fallback).astype(np.float32))


def adapter_script(name: str) -> Path:
    """``run_NAME.py``: never the peer's package name, which would shadow the package in the child's ``sys.path``."""
    return ADAPTERS / f"run_{name}.py"


def main() -> int:  # python -m inpaint.peers: which peers can run here
    for name, peer in PEERS.items():
        try:
            check_peer(name)
            print(f"{name}: ready ({peer.python()})")
        except InputError as error:
            print(f"{name}: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
