"""Optional GM/WM/CSF scoring for ``inpaint.evaluate --segment`` with ANTsPy's Atropos (``pip install -e .[segment]``).

Three-class Atropos inside the brain mask: k-means initialisation, MRF smoothing 0.2 with radius 1,
5 iterations; the classes come out ordered by T1 intensity (1 CSF, 2 GM, 3 WM). Each method's fill
is segmented the same way and compared with the reference's segmentation (Dice per tissue, tissue
volumes in mL). Atropos is not bit-reproducible (threads, k-means), so the reference is segmented
twice and the Dice between the two runs is the ceiling any method can reach.

antspyx pins ``numpy<2.4``: install it in its own virtual environment, not in the main one.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inpaint.data.io import InputError

TISSUES = {"csf": 1, "gm": 2, "wm": 3}
COLUMNS = [f"dice_{t}" for t in ("gm", "wm", "csf")] + [f"vol_{t}" for t in ("gm", "wm", "csf")]
REFERENCE_COLUMNS = ["subject"] + [f"vol_{t}" for t in ("gm", "wm", "csf")] + [f"ceiling_dice_{t}" for t in ("gm", "wm", "csf")]
ATROPOS = {"i": "kmeans[3]", "m": "[0.2,1x1x1]", "c": "[5,0]"}


def require_ants() -> Any:
    """The ``ants`` module, or a one-line error that says how to install it."""
    try:
        import ants
    except ImportError:
        raise InputError("--segment needs ANTsPy (antspyx): pip install -e .[segment] (it pins numpy<2.4, so use "
                         "its own virtual environment, e.g. python -m venv .venv-segment)") from None
    return ants


def segment(volume: torch.Tensor, mask: torch.Tensor, spacing: tuple[float, ...]) -> np.ndarray:
    """Atropos labels of ``volume`` inside ``mask``; both (X, Y, Z). Returns (X, Y, Z) uint8: 0 out, 1 CSF, 2 GM, 3 WM."""
    ants = require_ants()
    image = ants.from_numpy(volume.detach().cpu().numpy().astype(np.float32), spacing=tuple(map(float, spacing)))
    brain = ants.from_numpy(mask.detach().cpu().numpy().astype(np.float32), spacing=tuple(map(float, spacing)))
    return ants.atropos(a=image, x=brain, **ATROPOS)["segmentation"].numpy().astype(np.uint8)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def tissue_volumes(labels: np.ndarray, voxel_ml: float) -> dict[str, float]:
    return {f"vol_{t}": float((labels == k).sum()) * voxel_ml for t, k in TISSUES.items()}


def compare(labels: np.ndarray, reference: np.ndarray, voxel_ml: float) -> dict[str, float]:
    """``dice_gm/wm/csf`` against the reference labels and ``vol_gm/wm/csf`` (mL) of ``labels``."""
    scores = {f"dice_{t}": dice(labels == k, reference == k) for t, k in TISSUES.items()}
    return {k: (scores | tissue_volumes(labels, voxel_ml))[k] for k in COLUMNS}


class TissueScorer:
    """Segments each subject's reference (twice: the ceiling, kept in ``OUT/segment_reference.csv``) and scores fills.

    Args:
        out: the evaluation folder.
        fresh: start ``segment_reference.csv`` afresh (otherwise subjects already in it are not re-segmented twice).
    """

    def __init__(self, out: Path, fresh: bool) -> None:
        require_ants()
        self.path = Path(out) / "segment_reference.csv"
        if fresh or not self.path.exists():
            self.path.write_text(",".join(REFERENCE_COLUMNS) + "\n")
        with self.path.open(newline="") as handle:
            self.done = {row["subject"] for row in csv.DictReader(handle)}
        self.labels: np.ndarray | None = None

    def start(self, subject: str, reference: torch.Tensor, mask: torch.Tensor, affine: np.ndarray) -> None:
        """Segment the reference of ``subject`` (and record the ceiling the first time)."""
        spacing = tuple(float(s) for s in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))
        self.mask, self.spacing = mask, spacing
        self.voxel_ml = float(np.prod(spacing)) / 1000.0
        self.labels = segment(reference, mask, spacing)
        if subject in self.done:
            return
        again = segment(reference, mask, spacing)
        ceiling = {f"ceiling_dice_{t}": dice(again == k, self.labels == k) for t, k in TISSUES.items()}
        row = {"subject": subject, **tissue_volumes(self.labels, self.voxel_ml), **ceiling}
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, REFERENCE_COLUMNS).writerow(
                {k: (f"{v:.8g}" if isinstance(v, float) else v) for k, v in row.items()})
        self.done.add(subject)

    def score(self, filled: torch.Tensor, method: str = "") -> dict[str, float]:
        """Dice and tissue volumes of one method's fill of the subject given to :meth:`start`."""
        if self.labels is None:
            raise RuntimeError("TissueScorer.score before start")
        return compare(segment(filled, self.mask, self.spacing), self.labels, self.voxel_ml)

    def reference_rows(self) -> list[dict[str, Any]]:
        with self.path.open(newline="") as handle:
            return [{k: (v if k == "subject" else float(v)) for k, v in row.items()} for row in csv.DictReader(handle)]
