"""Whole-volume inference: TorchIO grid patches (patch 32, overlap 8) through a network, overlaps aggregated.

One function serves validation, ``inpaint.evaluate``, ``inpaint.predict`` and ``benchmarks/bench.py``.
Patches with no brain voxel are not run through the network (they keep the interpolated input), so
the cost follows the brain, not the field of view; the aggregation buffer lives on the CPU, so
memory stays bounded.

Two ways to cover a volume:

- ``tile=None`` (default, the paper): 32³ patches with stride 24 (8 voxels overlap), averaged.
- ``tile=T``: the network, fully convolutional, runs on a few large windows of at most T voxels
  per axis (multiples of ``multiple``), sized so they cover the brain's bounding box with little
  waste, overlapping by the same ``overlap`` and aggregated the same way. Each voxel is computed
  about once instead of ~2.4 times, and big windows run faster per voxel. The result is not the
  paper's: a voxel sees more context than inside a 32³ patch (the receptive field of the paper's
  DenseUNet is larger than 32), so it differs slightly; ``python -m benchmarks.bench --checkpoint`` measures it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch
import torchio as tio
from tqdm.auto import tqdm

from inpaint.config import AGGREGATIONS, InferenceConfig

PatchFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
AGGREGATION = {name: name for name in AGGREGATIONS}  # ours -> TorchIO overlap_mode
DEFAULT = InferenceConfig()  # the defaults below are these
Size3 = tuple[int, int, int]
Region = tuple[slice, slice, slice]


def _triple(size: int | Size3) -> Size3:
    return (size,) * 3 if isinstance(size, int) else tuple(int(s) for s in size)  # type: ignore[return-value]


def grid_locations(shape: Size3, patch_size: int | Size3, overlap: int) -> tuple[tio.GridSampler, torch.Tensor]:
    """TorchIO's grid over a (X, Y, Z) volume: the sampler (for the aggregator) and (N, 6) patch locations.

    ``patch_size`` is one edge or one per axis; each location is ``(x0, y0, z0, x1, y1, z1)``.
    """
    size = _triple(patch_size)
    if any(n < p for n, p in zip(shape, size, strict=True)):
        raise ValueError(f"volume {tuple(shape)} is smaller than the inference patch {size}; pad it or use a smaller patch")
    if overlap % 2 or not 0 <= overlap < min(size):
        raise ValueError(f"inference overlap must be even and in [0, {min(size)}), got {overlap}")
    dummy = tio.Subject(x=tio.ScalarImage(tensor=torch.zeros(1, *shape, dtype=torch.uint8)))
    sampler = tio.GridSampler(dummy, size, overlap)
    return sampler, torch.as_tensor(sampler.locations, dtype=torch.long)


def patch_borders(shape: Size3, patch_size: int | Size3 = DEFAULT.patch_size, overlap: int = DEFAULT.overlap) -> list[list[int]]:
    """Per axis of a (X, Y, Z) volume, the planes where a grid patch starts or ends (inside the volume).

    These are where averaged patch outputs can jump (the paper's seams): a voxel ``b`` in the list
    means the step from ``b - 1`` to ``b`` crosses a patch edge. Used by ``inpaint.metrics.seam_ratio``.
    """
    _, locations = grid_locations(shape, patch_size, overlap)
    borders = []
    for axis, n in enumerate(shape):
        edges = set(locations[:, axis].tolist()) | set(locations[:, axis + 3].tolist())
        borders.append(sorted(b for b in edges if 0 < b < n))
    return borders


def tile_layout(mask: torch.Tensor, tile: int, overlap: int, multiple: int = 16) -> tuple[Region, Size3]:
    """Where ``tile`` mode runs the network: a region around the brain and the window size per axis.

    The region is the brain's bounding box grown by ``overlap`` voxels (clipped to the volume). Along
    each axis of extent E it takes the fewest windows n of at most ``tile`` voxels overlapping by
    ``overlap`` (n = ceil((E - overlap) / (tile - overlap))), each of the smallest multiple of
    ``multiple`` that lets n windows cover E; a window larger than E grows the region instead.

    Args:
        mask: (X, Y, Z) brain mask (any dtype, > 0 is brain); not empty.
        tile: largest window edge, a multiple of ``multiple`` and larger than ``overlap``.
        overlap: voxels shared by neighbouring windows (even).
        multiple: every window edge is a multiple of this (the generator's ``size_multiple``).

    Returns:
        (region slices into (X, Y, Z), window size (wx, wy, wz)).
    """
    if tile % multiple or tile <= overlap:
        raise ValueError(f"inference tile must be a multiple of {multiple} and larger than the overlap {overlap}, got {tile}")
    shape = tuple(mask.shape[-3:])
    brain = torch.nonzero(mask.reshape(shape) > 0)
    if len(brain) == 0:
        return tuple(slice(0, n) for n in shape), (multiple,) * 3  # type: ignore[return-value]
    region, window = [], []
    for axis, n in enumerate(shape):
        if n < multiple:
            raise ValueError(f"volume {shape} is smaller than {multiple} voxels along axis {axis}; pad it")
        lo, hi = max(0, int(brain[:, axis].min()) - overlap), min(n, int(brain[:, axis].max()) + 1 + overlap)
        extent = hi - lo
        count = max(1, math.ceil((extent - overlap) / (tile - overlap)))
        size = min(multiple * math.ceil((extent + (count - 1) * overlap) / count / multiple), n // multiple * multiple)
        if size > extent:  # grow the region to one window, centred on the brain, inside the volume
            lo = min(max(0, (lo + hi - size) // 2), n - size)
            hi = lo + size
        region.append(slice(lo, hi))
        window.append(size)
    return tuple(region), tuple(window)  # type: ignore[return-value]


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters


@contextmanager
def heap_allocations(enabled: bool = True) -> Iterator[None]:
    """Keep freed CPU memory for reuse (glibc only; elsewhere a no-op).

    glibc serves each allocation above 32 MB with a fresh ``mmap`` and unmaps it on free, so every
    large activation of a network call is page-faulted in again (zero-filled by the kernel); for the
    DenseUNet at batch 16 that costs ~20 % of the CPU time. Inside this block allocations come from
    the heap and freed memory is not trimmed; the defaults come back afterwards (then the heap's free
    top is released at the next ``free``).
    """
    libc = None
    if enabled:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            if not hasattr(libc, "mallopt") or not libc.mallopt(_M_MMAP_MAX, 0):
                libc = None
            else:
                libc.mallopt(_M_TRIM_THRESHOLD, 2**30)
        except OSError:
            libc = None
    try:
        yield
    finally:
        if libc is not None:
            libc.mallopt(_M_MMAP_MAX, 65536)
            libc.mallopt(_M_TRIM_THRESHOLD, 128 * 1024)


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, torch.bfloat16) if bf16 and device.type in ("cuda", "cpu") else nullcontext()


def plan(mask: torch.Tensor, patch_size: int = DEFAULT.patch_size, overlap: int = DEFAULT.overlap, tile: int | None = None,
         multiple: int = 16) -> tuple[Region, Size3, tio.GridSampler, torch.Tensor, torch.Tensor]:
    """The windows ``infer_volume`` runs: region, window size, sampler, (N, 6) locations in the region, in-brain flags.

    Args:
        mask: (X, Y, Z) brain mask.
        patch_size, overlap, tile, multiple: as in ``infer_volume``.

    Returns:
        ``(region, window, sampler, locations, in_brain)``; ``in_brain`` (N,) bool marks the windows
        that go through the network (the others keep the input).
    """
    mask = mask.reshape(mask.shape[-3:]).cpu() > 0
    if tile is None:
        region: Region = tuple(slice(0, n) for n in mask.shape)  # type: ignore[assignment]
        window = _triple(patch_size)
    else:
        region, window = tile_layout(mask, tile, overlap, multiple)
    sub = mask[region]
    sampler, locations = grid_locations(tuple(sub.shape), window, overlap)
    in_brain = torch.tensor([bool(sub[a:d, b:e, c:f].any()) for a, b, c, d, e, f in locations.tolist()], dtype=torch.bool)
    return region, window, sampler, locations, in_brain


@torch.no_grad()
def infer_volume(
    patch_fn: PatchFunction,
    volume: torch.Tensor,
    known: torch.Tensor,
    mask: torch.Tensor,
    patch_size: int = DEFAULT.patch_size,
    overlap: int = DEFAULT.overlap,
    aggregation: str = DEFAULT.aggregation,
    batch_size: int = DEFAULT.batch_size,
    data_consistency: bool = True,
    device: torch.device | str | None = None,
    bf16: bool = DEFAULT.bf16,
    progress: bool = False,
    tile: int | None = None,
    multiple: int = 16,
    heap: bool = DEFAULT.heap,
) -> torch.Tensor:
    """Run ``patch_fn`` over a whole normalised volume.

    Args:
        patch_fn: ``(input (B, 1, x, y, z), known (B, 1, x, y, z)) -> (B, 1, x, y, z)``, normalised units;
            (x, y, z) = (p, p, p) for the paper's patches, the window size in ``tile`` mode.
        volume: interpolated input (1, X, Y, Z) or (X, Y, Z) (or (1, 1, X, Y, Z)), normalised.
        known: acquired-slice mask, same shape.
        mask: brain mask, same shape; patches without a brain voxel keep the input.
        patch_size: edge of the paper's patches (``tile=None``).
        overlap: voxels shared by neighbouring patches (windows), even.
        aggregation: ``average`` (the paper) or ``hann`` (weights that fade to the patch borders).
        batch_size: patches per network call; in ``tile`` mode, windows per call such that a call
            holds at most ``batch_size * patch_size**3`` voxels (at least one window).
        data_consistency: copy the acquired slices of ``volume`` into the result exactly.
        device: where the network runs (default: the volume's device).
        bf16: bfloat16 autocast on CUDA, and on the CPU (fast on CPUs with AVX512-BF16/AMX).
        progress: show a progress bar.
        tile: None for the paper's patches; else the largest window edge (see ``tile_layout``).
        multiple: window edges are multiples of this in ``tile`` mode (the generator's ``size_multiple``).
        heap: on the CPU, reuse freed memory instead of page-faulting it in again (``heap_allocations``).

    Returns:
        (1, X, Y, Z) float32 prediction on the CPU, normalised units.

    Example:
        >>> x = torch.rand(40, 40, 40)
        >>> out = infer_volume(lambda v, k: v, x, torch.zeros_like(x), torch.ones_like(x))
        >>> out.shape, bool(torch.allclose(out[0], x))
        (torch.Size([1, 40, 40, 40]), True)
    """
    if aggregation not in AGGREGATION:
        raise ValueError(f"aggregation {aggregation!r} is not one of {', '.join(AGGREGATION)}")
    if batch_size < 1:
        raise ValueError(f"inference batch_size must be >= 1, got {batch_size}")
    volume, known, mask = (t.reshape(1, *t.shape[-3:]) for t in (volume, known, mask))
    device = torch.device(device) if device is not None else volume.device
    region, window, sampler, locations, in_brain = plan(mask, patch_size, overlap, tile, multiple)
    if tile is not None:
        batch_size = max(1, batch_size * patch_size**3 // math.prod(window))
    crop = (slice(None), *region)
    aggregator = tio.GridAggregator(sampler, overlap_mode=AGGREGATION[aggregation])
    windows = [(slice(None), *(slice(int(a), int(b)) for a, b in zip(loc[:3], loc[3:], strict=True))) for loc in locations]
    volume_cpu = volume.cpu().float()
    if (~in_brain).any():  # outside the brain: the interpolated input, no network
        idle = (~in_brain).nonzero()[:, 0].tolist()
        sub = volume_cpu[crop]
        aggregator.add_batch(torch.stack([sub[windows[i]] for i in idle]), locations[idle])
    volume_d, known_d = volume[crop].to(device, torch.float32), known[crop].to(device, torch.float32)
    chosen = in_brain.nonzero()[:, 0].tolist()
    starts = range(0, len(chosen), batch_size)
    with heap_allocations(heap and device.type == "cpu"):
        for start in tqdm(starts, desc="patches", unit="batch", disable=not progress, leave=False):
            batch = chosen[start : start + batch_size]
            inputs = torch.stack([volume_d[windows[i]] for i in batch])
            knowns = torch.stack([known_d[windows[i]] for i in batch])
            with _autocast(device, bf16):
                output = patch_fn(inputs, knowns)
            aggregator.add_batch(output.float().cpu(), locations[batch])
    result = volume_cpu.clone()
    result[crop] = aggregator.get_output_tensor().float()
    if data_consistency:
        acquired = known.cpu() > 0
        result[acquired] = volume_cpu[acquired]
    return result


def receptive_radius(generator: torch.nn.Module) -> int:
    """In-plane voxels on each side that an acquired-slice generator's output depends on: the ``receptive_radius``
    it states, else its convs' halo (every conv at full resolution)."""
    stated = getattr(generator, "receptive_radius", None)
    if isinstance(stated, int):
        return stated
    convs = [m for m in generator.modules() if isinstance(m, torch.nn.Conv3d)]
    return sum(max(int(k) for k in m.kernel_size[:2]) // 2 for m in convs)


@torch.no_grad()
def infer_acquired(
    generator: torch.nn.Module,
    volume: torch.Tensor,
    known: torch.Tensor,
    mask: torch.Tensor,
    predict_acquired: bool = False,
    data_consistency: bool = True,
    device: torch.device | str | None = None,
    bf16: bool = DEFAULT.bf16,
    tile: int | None = None,
    heap: bool = DEFAULT.heap,
) -> torch.Tensor:
    """Whole-volume inference of an acquired-slice generator (``models.slice_resnet``), no patches.

    The trunk runs once over the acquired slices of the brain's in-plane bounding box (grown by the
    generator's receptive radius), the head emits every missing slice between them; outside that box
    and beyond the first/last acquired slice the linear input is kept. No patch grid, so no seams.

    Args:
        generator: ``trunk``/``head_features``/``emit`` as ``models.slice_resnet.SliceResNet``, in eval mode.
        volume: interpolated input (..., X, Y, Z), normalised, slice axis last.
        known: acquired-slice mask, same shape (evenly spaced acquired slices).
        mask: brain mask, same shape.
        predict_acquired: also predict the acquired positions (``t = 0``: thick-slice models); else
            they stay exact.
        data_consistency: copy the acquired slices of ``volume`` into the result (a no-op unless
            ``predict_acquired``).
        device: where the network runs (default: the volume's device).
        bf16: bfloat16 autocast (CUDA, and CPUs with bf16 units).
        tile: None = the whole box at once; T = in-plane windows of at most T x T voxels (plus the
            receptive halo), for volumes too large for memory. Equal up to float rounding.
        heap: on the CPU, reuse freed memory (``heap_allocations``).

    Returns:
        (1, X, Y, Z) float32 on the CPU, normalised units.
    """
    from inpaint.geometry import acquired_slices

    volume, known, mask = (t.reshape(*t.shape[-3:]) for t in (volume, known, mask))
    device = torch.device(device) if device is not None else volume.device
    kept, gap = acquired_slices(known)
    result = volume.detach().cpu().float().clone()
    brain = torch.nonzero(mask.cpu() > 0)
    if len(brain) == 0:
        return result[None]
    halo = receptive_radius(generator)
    box = [(max(0, int(brain[:, a].min()) - halo), min(volume.shape[a], int(brain[:, a].max()) + 1 + halo)) for a in (0, 1)]
    cell = getattr(generator, "unshuffle", 1)  # a space-to-depth trunk: windows start on its r x r cell grid
    step = -(-(tile or max(b - a for a, b in box)) // cell) * cell
    first = 0 if predict_acquired else 1
    gaps = torch.full((1,), float(gap), device=device)
    with heap_allocations(heap and device.type == "cpu"):
        for x0 in range(box[0][0], box[0][1], step):
            for y0 in range(box[1][0], box[1][1], step):
                x1, y1 = min(x0 + step, box[0][1]), min(y0 + step, box[1][1])
                lo = (max(box[0][0], x0 - halo), max(box[1][0], y0 - halo))
                hi = (min(box[0][1], x1 + halo), min(box[1][1], y1 + halo))
                slices = volume[lo[0]:hi[0], lo[1]:hi[1]][..., kept].to(device, torch.float32)[None, None]
                with _autocast(device, bf16):
                    head = generator.head_features(generator.trunk(slices, gaps))
                    for m in range(first, gap):
                        values = generator.emit(head, slices, gaps, torch.full((1,), m / gap, device=device))
                        values = values[0, 0, x0 - lo[0]:x1 - lo[0], y0 - lo[1]:y1 - lo[1]].float().cpu()
                        count = len(kept) if m == 0 else len(kept) - 1
                        result[x0:x1, y0:y1, kept[:count] + m] = values[..., :count]
    if data_consistency:
        result[..., kept] = volume.cpu().float()[..., kept]
    return result[None]
