"""Device-resident training patches: the TorchIO queue's draws, cut by indexing tensors on the training device.

Each training volume is read once (TorchIO subject, ``PrepareVolume``), turned slice axis last and kept as a
tensor on the device the model trains on. Every epoch then mirrors ``LatticeQueue``: subjects in a seeded
order (or this rank's ``DistributedSampler`` share), one degradation per subject visit (interval and offset
drawn as ``Degrade`` draws them), ``num_samples`` patch centres drawn uniformly from the visit's allowed
centres (``PatchCentres``: brain on the stride lattice), fills of ``queue_length`` patches shuffled, then
batches. A patch is the same function of (subject, interval, offset, centre) as on the TorchIO path, built
from the same functions (``degrade``, ``acquired_scale``, ``gap_targets``' layout, ``lattice_mask``), so both
paths draw from one patch distribution (tests/inpaint/data/test_resident.py compares them patch by patch).

No worker processes and no per-patch Python: on a GPU a fill is a few indexing kernels.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torchio as tio
from torch.utils.data import IterableDataset

from inpaint.constants import ACQUIRED, GAPS, INPUT, INTERVAL, KNOWN, MASK, NAME, PATH, TARGET, THICK
from inpaint.data.acquired import gap_mask
from inpaint.data.degrade import degrade, slab_means
from inpaint.data.normalise import acquired_scale, normalise
from inpaint.data.subjects import VolumeFile, make_subject
from inpaint.data.transforms import PrepareVolume, check_fits, lattice_mask
from inpaint.geometry import find_slice_axis, kept_indices, permute_volume, slice_last_permutation

log = logging.getLogger(__name__)


@dataclass
class ResidentVolume:
    """One training volume on the device, stored slice-major (Z, X, Y) so that whole slices gather as blocks:
    ``slices`` float32 in the volume's units, ``brain`` bool; ``affine`` maps the slice-last (X, Y, Z) voxel
    grid to world; ``num_samples`` patches per visit."""

    name: str
    source: str
    slices: torch.Tensor
    brain: torch.Tensor
    affine: Any
    num_samples: int

    @property
    def target(self) -> torch.Tensor:
        """(X, Y, Z) view of ``slices``."""
        return self.slices.permute(1, 2, 0)


def load_resident(volume: VolumeFile, num_samples: int, device: torch.device) -> ResidentVolume:
    """Read ``volume`` (and its mask) once, check it as the TorchIO path does, slice axis last, onto ``device``."""
    subject = PrepareVolume()(make_subject(volume))
    source = str(subject[PATH])
    perm = slice_last_permutation(find_slice_axis(subject[TARGET].affine, source))
    target, affine = permute_volume(subject[TARGET].data.float(), subject[TARGET].affine, perm)
    brain = permute_volume(subject[MASK].data, affine, perm)[0][0] > 0
    return ResidentVolume(volume.name, source, target[0].permute(2, 0, 1).contiguous().to(device),
                          brain.permute(2, 0, 1).contiguous().to(device), affine, num_samples)


@dataclass(frozen=True)
class Draws:
    """What is drawn per visit and patch, as ``Degrade``/``PatchCentres`` (the ``data`` config's keys)."""

    interval: int
    offset: int
    intervals: tuple[int, ...]
    random_offset: bool
    thick: bool
    patch_size: int
    patch_slices: int
    stride: int | None
    acquired_grid: bool
    slots: int

    def degradation(self, generator: torch.Generator) -> tuple[int, int]:
        """(interval, offset) of one visit: ``Degrade._draw``'s distribution."""
        interval = self.interval
        if self.intervals:
            interval = self.intervals[int(torch.randint(len(self.intervals), (), generator=generator))]
        offset = int(torch.randint(interval, (), generator=generator)) if self.random_offset else self.offset
        return interval, offset

    def patch_shape(self) -> tuple[int, int, int]:
        p = self.patch_size
        return (p, p, self.patch_slices if self.acquired_grid else p)


def _window(start: torch.Tensor, size: int) -> torch.Tensor:
    """(B,) first indices -> (B, size) index windows."""
    return start[:, None] + torch.arange(size, device=start.device)


def _cut(volume: torch.Tensor, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """(X, Y, Z) volume, (B, n) index windows per axis -> (B, 1, nx, ny, nz) patches (advanced indexing, any device)."""
    return volume[x[:, :, None, None], y[:, None, :, None], z[:, None, None, :]][:, None]


class Visit:
    """One subject visit: the volume degraded at (interval, offset), normalised, and its allowed patch centres.

    Full-resolution patches: ``input`` (linear fill, acquired slices exact or slab means), ``known``, ``target``,
    ``mask`` of ``patch_size``³; acquired-grid patches: ``acquired`` (1, P, P, K) and ``gaps`` (slots, P, P, K),
    as ``inpaint.data.acquired.AcquiredGrid`` and ``PatchCentres`` make them.
    """

    def __init__(self, volume: ResidentVolume, interval: int, offset: int, draws: Draws) -> None:
        self.volume, self.interval, self.draws = volume, interval, draws
        shape, brain = draws.patch_shape(), volume.brain  # brain: (Z, X, Y)
        if draws.acquired_grid:
            depth = volume.slices.shape[0]
            self.kept = kept_indices(depth, interval, offset).to(brain.device)
            check_fits((*brain.shape[1:], len(self.kept)), shape, volume.source)
            slices = slab_means(volume.slices, 0, self.kept, interval) if draws.thick else volume.slices[self.kept]
            self.scale = acquired_scale(slices, brain[self.kept], brain[self.kept], volume.source)
            self.slices = slices  # (K, X, Y), normalised when cut
            allowed = gap_mask(brain, self.kept, interval, axis=0).permute(1, 2, 0)  # AcquiredGrid's, slice-major
            stride = (draws.stride, draws.stride, None)
        else:
            check_fits(tuple(volume.target.shape), shape, volume.source)
            sparse = degrade(volume.target, volume.affine, interval, offset, volume.source, draws.thick)
            self.known = sparse.known
            allowed, stride = brain.permute(1, 2, 0), draws.stride
            self.scale = acquired_scale(sparse.input, sparse.known, allowed, volume.source)
            self.input = normalise(sparse.input, self.scale)
        centres = lattice_mask(allowed, shape, stride)
        if not bool(centres.any()):  # PatchCentres' fallback: any allowed voxel
            centres = lattice_mask(allowed, shape, None)
        self.centres = torch.nonzero(centres)  # (N, 3): x, y, z (or acquired slice)

    def patches(self, count: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``count`` patches at centres drawn uniformly (with replacement, as TorchIO's LabelSampler) from the allowed ones."""
        pick = torch.randint(len(self.centres), (count,), generator=generator).to(self.centres.device)
        return self.cut(self.centres[pick])

    def cut(self, centres: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3) centres -> the patches TorchIO cuts there (a patch of size p spans [c - p // 2, c - p // 2 + p))."""
        shape = self.draws.patch_shape()
        starts = centres - torch.tensor(shape, device=centres.device) // 2
        x, y, z = (_window(starts[:, a], n) for a, n in enumerate(shape))
        if not self.draws.acquired_grid:
            target, brain = self.volume.target, self.volume.brain.permute(1, 2, 0)
            return {INPUT: _cut(self.input, x, y, z), KNOWN: _cut(self.known, x, y, z).to(torch.uint8),
                    TARGET: normalise(_cut(target, x, y, z), self.scale), MASK: _cut(brain, x, y, z).to(torch.uint8)}
        acquired = self.slices[z[:, None, None, :], x[:, :, None, None], y[:, None, :, None]][:, None]  # (B, 1, P, P, K)
        acquired = normalise(acquired, self.scale)
        depth = self.volume.slices.shape[0]
        z = self.kept[z][:, None, :] + torch.arange(self.draws.slots, device=z.device)[:, None]  # (B, S, K)
        inside = z < depth  # gap_targets' zero beyond the volume
        values = self.volume.slices[z.clamp(max=depth - 1)[:, :, None, None, :], x[:, None, :, None, None],
                                    y[:, None, None, :, None]]  # (B, S, P, P, K)
        gaps = normalise(values, self.scale) * inside[:, :, None, None, :].to(values.dtype)
        return {ACQUIRED: acquired, GAPS: gaps}


def shuffled_fill(parts: list[tuple[Visit, int]], generator: torch.Generator) -> dict[str, Any]:
    """One queue fill: each visit's patches, concatenated and shuffled; ``interval``/``thick``/``name`` per patch."""
    device = parts[0][0].volume.slices.device
    chunks = [visit.patches(count, generator) | {
        NAME: [visit.volume.name] * count,
        INTERVAL: torch.full((count,), visit.interval, dtype=torch.long, device=device),
        THICK: torch.full((count,), visit.draws.thick, device=device)} for visit, count in parts]
    order = torch.randperm(sum(count for _, count in parts), generator=generator)
    fill: dict[str, Any] = {}
    for key in chunks[0]:
        if key == NAME:
            names = [n for chunk in chunks for n in chunk[NAME]]
            fill[key] = [names[i] for i in order.tolist()]
        else:
            values = torch.cat([chunk[key] for chunk in chunks])
            fill[key] = values[order.to(values.device)]
    return fill


def as_batch(rows: dict[str, Any]) -> dict[str, Any]:
    """Rows of a fill in the layout of ``tio.SubjectsLoader`` batches: images as ``{"data": (B, C, ...)}``."""
    return {k: {tio.DATA: v} if k in (INPUT, KNOWN, TARGET, MASK, ACQUIRED, GAPS) else v for k, v in rows.items()}


def _join(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {k: a[k] + b[k] if isinstance(a[k], list) else torch.cat([a[k], b[k]]) for k in a}


class ResidentPatches(IterableDataset):
    """One epoch of training batches cut from resident volumes (module docstring), ready on their device.

    Args:
        volumes: the training volumes (``load_resident``).
        order: indices into ``volumes`` in this epoch's visiting order (this rank's share under DDP).
        draws: the degradation and sampling settings.
        batch_size: patches per batch (the last batch of the epoch may be smaller).
        queue_length: patches per shuffled fill.
        seed: seeds every draw of the epoch.
        length: patches in the epoch (default: every visit's ``num_samples``).
    """

    def __init__(self, volumes: list[ResidentVolume], order: list[int], draws: Draws, batch_size: int,
                 queue_length: int, seed: int, length: int | None = None) -> None:
        self.volumes, self.order, self.draws = volumes, order, draws
        self.batch_size, self.queue_length, self.seed = batch_size, queue_length, seed
        self.length = sum(volumes[i].num_samples for i in order) if length is None else length
        self.drawn: set[str] = set()

    def __len__(self) -> int:
        return -(-self.length // self.batch_size)

    def fills(self, generator: torch.Generator) -> Iterator[dict[str, Any]]:
        """Queue fills in order: at most ``queue_length`` patches each; a visit's remainder opens the next fill."""
        parts: list[tuple[Visit, int]] = []
        room = self.queue_length
        for index in self.order:
            volume = self.volumes[index]
            visit = Visit(volume, *self.draws.degradation(generator), self.draws)
            wanted = volume.num_samples
            while wanted:
                taken = min(wanted, room)
                parts.append((visit, taken))
                wanted, room = wanted - taken, room - taken
                if not room:
                    yield shuffled_fill(parts, generator)
                    parts, room = [], self.queue_length
        if parts:
            yield shuffled_fill(parts, generator)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        generator = torch.Generator().manual_seed(self.seed)
        left, pending = self.length, None
        for fill in self.fills(generator):  # lazily: a DDP share cut to ``length`` stops early
            pending = fill if pending is None else _join(pending, fill)
            while left and len(pending[NAME]) >= min(self.batch_size, left):
                rows = min(self.batch_size, left)
                batch, pending = {k: v[:rows] for k, v in pending.items()}, {k: v[rows:] for k, v in pending.items()}
                self.drawn.update(batch[NAME])
                left -= rows
                yield as_batch(batch)
            if not left:
                return


def load_volumes(volumes: list[VolumeFile], counts: list[int], device: torch.device) -> list[ResidentVolume]:
    """``load_resident`` for each training volume, timed in the log."""
    started = time.perf_counter()
    resident = [load_resident(v, n, device) for v, n in zip(volumes, counts, strict=True)]
    size = sum(r.slices.numel() * 5 for r in resident) / 2**30  # float32 slices + bool brain
    log.info("resident patches: %d training volumes on %s (%.2f GiB) in %.0f s", len(resident), device, size,
             time.perf_counter() - started)
    return resident
