"""Whole-volume inference: TorchIO grid patches (patch 32, overlap 8) through a network, overlaps aggregated.

One function serves validation, ``inpaint.evaluate`` and ``inpaint.predict``. Patches with no brain
voxel are not run through the network (they keep the interpolated input), so the cost follows the
brain, not the field of view; the aggregation buffer lives on the CPU, so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch
import torchio as tio
from tqdm.auto import tqdm

PatchFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
AGGREGATION = {"average": "average", "hann": "hann"}


def grid_locations(shape: tuple[int, int, int], patch_size: int, overlap: int) -> tuple[tio.GridSampler, torch.Tensor]:
    """TorchIO's grid over a (X, Y, Z) volume: the sampler (for the aggregator) and (N, 6) patch locations."""
    if min(shape) < patch_size:
        raise ValueError(f"volume {tuple(shape)} is smaller than the inference patch {patch_size}; pad it or use a smaller patch")
    if overlap % 2 or not 0 <= overlap < patch_size:
        raise ValueError(f"inference overlap must be even and in [0, {patch_size}), got {overlap}")
    dummy = tio.Subject(x=tio.ScalarImage(tensor=torch.zeros(1, *shape, dtype=torch.uint8)))
    sampler = tio.GridSampler(dummy, patch_size, overlap)
    return sampler, torch.as_tensor(sampler.locations, dtype=torch.long)


@torch.no_grad()
def infer_volume(
    patch_fn: PatchFunction,
    volume: torch.Tensor,
    known: torch.Tensor,
    mask: torch.Tensor,
    patch_size: int = 32,
    overlap: int = 8,
    aggregation: str = "average",
    batch_size: int = 16,
    data_consistency: bool = True,
    device: torch.device | str | None = None,
    bf16: bool = False,
    progress: bool = False,
) -> torch.Tensor:
    """Run ``patch_fn`` over a whole normalised volume.

    Args:
        patch_fn: ``(input (B, 1, p, p, p), known (B, 1, p, p, p)) -> (B, 1, p, p, p)``, normalised units.
        volume: interpolated input (1, X, Y, Z) or (X, Y, Z), normalised.
        known: acquired-slice mask, same shape.
        mask: brain mask, same shape; patches without a brain voxel keep the input.
        aggregation: ``average`` (the paper) or ``hann`` (weights that fade to the patch borders).
        data_consistency: copy the acquired slices of ``volume`` into the result exactly.

    Returns:
        (1, X, Y, Z) float32 prediction on the CPU, normalised units.
    """
    if aggregation not in AGGREGATION:
        raise ValueError(f"aggregation {aggregation!r} is not one of {', '.join(AGGREGATION)}")
    volume, known, mask = (t.reshape(1, *t.shape[-3:]) for t in (volume, known, mask))
    device = torch.device(device) if device is not None else volume.device
    sampler, locations = grid_locations(tuple(volume.shape[1:]), patch_size, overlap)
    aggregator = tio.GridAggregator(sampler, overlap_mode=AGGREGATION[aggregation])
    volume_d, known_d = volume.to(device, torch.float32), known.to(device, torch.float32)
    mask_cpu = mask.cpu() > 0
    autocast = torch.autocast("cuda", torch.bfloat16) if bf16 and device.type == "cuda" else nullcontext()
    starts = range(0, len(locations), batch_size)
    for start in tqdm(starts, desc="patches", unit="batch", disable=not progress, leave=False):
        batch_locations = locations[start : start + batch_size]
        crops = [tuple(slice(int(a), int(b)) for a, b in zip(loc[:3], loc[3:], strict=True)) for loc in batch_locations]
        inputs = torch.stack([volume_d[(slice(None), *c)] for c in crops])
        output = inputs.clone()
        in_brain = torch.tensor([bool(mask_cpu[(0, *c)].any()) for c in crops])
        if in_brain.any():
            chosen = in_brain.nonzero()[:, 0].to(device)
            knowns = torch.stack([known_d[(slice(None), *c)] for c in crops])
            with autocast:
                output[chosen] = patch_fn(inputs[chosen], knowns[chosen]).float()
        aggregator.add_batch(output.cpu(), batch_locations)
    result = aggregator.get_output_tensor().float()
    if data_consistency:
        acquired = known.cpu() > 0
        result[acquired] = volume.cpu().float()[acquired]
    return result
