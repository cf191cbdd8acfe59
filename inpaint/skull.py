"""Is this volume skull-stripped? Three measured signs of a whole head (background, volume, cross-section).

The networks learnt skull-stripped brains (background exactly 0). On the 56 ds002748 references
(skull-stripped, 0.87 x 0.87 x 1 mm) 60-65 % of the voxels are 0, the nonzero region holds
1,126-1,633 mL, and the largest axial cross-section is 145-197 cm². A head differs in at least one
way: a noisy background (few zeros), scalp and skull (over 2,200 mL), or an axial cross-section
over 250 cm² (a head is ~16 x 20 cm across). Partial coverage lowers the volume, not the cross-section.
"""

from __future__ import annotations

import numpy as np
import torch

MIN_ZERO_FRACTION = 0.2  # skull-stripped volumes: >= 0.60 measured
MAX_BRAIN_ML = 2200.0  # ds002748: <= 1,633 mL
MAX_BRAIN_SECTION_CM2 = 250.0  # ds002748: <= 197 cm²


def head_signs(volume: torch.Tensor, spacing: list[float]) -> list[str]:
    """Why a (X, Y, Z) volume, slice axis last, with voxel ``spacing`` [a, b, slice] mm looks like a whole head.

    Returns:
        Each sign found, as text (empty: it looks skull-stripped).
    """
    nonzero = volume != 0
    signs = []
    zero_fraction = 1 - float(nonzero.float().mean())
    if zero_fraction < MIN_ZERO_FRACTION:
        signs.append(f"only {100 * zero_fraction:.0f}% of the voxels are 0 (a background)")
    millilitres = float(nonzero.sum()) * float(np.prod(spacing)) / 1000
    if millilitres > MAX_BRAIN_ML:
        signs.append(f"the nonzero region holds {millilitres:,.0f} mL (brains: < {MAX_BRAIN_ML:,.0f})")
    section = float(nonzero.sum(dim=(0, 1)).max()) * spacing[0] * spacing[1] / 100
    if section > MAX_BRAIN_SECTION_CM2:
        signs.append(f"an axial cross-section of {section:.0f} cm² (brains: < {MAX_BRAIN_SECTION_CM2:.0f})")
    return signs
