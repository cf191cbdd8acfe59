"""LightningDataModule: seeded subject split, a TorchIO patch Queue for training, whole volumes for validation."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torchio as tio
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from inpaint.config import EXPERIMENTS
from inpaint.constants import (
    INPUT,
    INTERVAL,
    KNOWN,
    MASK,
    MASK_GIVEN,
    NAME,
    OFFSET,
    PATH,
    SAMPLING,
    SLICE_AXIS,
    TARGET,
)
from inpaint.data.acquired import AcquiredGrid
from inpaint.data.degrade import Degrade
from inpaint.data.demo import demo_dataset
from inpaint.data.io import InputError, read_volume
from inpaint.data.normalise import Normalise
from inpaint.data.queue import LatticeQueue, SeededQueue
from inpaint.data.resident import Draws, ResidentPatches, ResidentVolume, load_volumes
from inpaint.data.subjects import VolumeFile, find_volumes, make_subject, shifted_volumes, split_volumes
from inpaint.data.transforms import CropAroundBrain, PatchCentres, PrepareVolume, SliceAxisLast, lattice_mask
from inpaint.geometry import sparse_axis, voxel_sizes

log = logging.getLogger(__name__)


class ShardSampler(Sampler[int]):
    """Rank ``rank``'s share of ``length`` validation subjects: ``rank, rank + world, ...``.

    When ``world`` divides ``length`` every subject is on exactly one rank. Otherwise the list is
    repeated ``lcm(length, world) / length`` times before sharding, so that no rank gets an empty
    share (DDP needs every rank in the epoch-end metric sync) and every subject still counts equally
    often in the cross-rank mean: the metrics stay exact; the price is repeated work (at worst
    every rank evaluates every subject, as long as one process alone).
    """

    def __init__(self, length: int, rank: int, world: int) -> None:
        total = math.lcm(length, world) if length else 0
        self.indices = [i % length for i in range(rank, total, world)]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def volume_batch(subjects: list[tio.Subject]) -> dict[str, Any]:
    """Collate one whole-volume subject: input/known/mask/target (1, 1, X, Y, Z), file voxel order, + metadata."""
    (subject,) = subjects
    batch = {key: subject[key].data[None] for key in (INPUT, KNOWN, MASK, TARGET)}
    batch.update({key: subject[key] for key in (NAME, SLICE_AXIS, PATH, INTERVAL, OFFSET, MASK_GIVEN)})
    batch["affine"] = subject[TARGET].affine
    return batch


def lattice_count(volume: VolumeFile, patch_size: int, stride: int | None) -> int:
    """Number of allowed patch centres of one volume (the paper's patches per subject for stride 16)."""
    mask = read_volume(volume.mask or volume.image)[0][0] > 0
    return max(1, int(lattice_mask(mask, patch_size, stride).sum()))


def check_volumes(volumes: list[VolumeFile]) -> None:
    """Read every volume and mask once (3D, finite: ``read_volume``'s one-line errors; dense, not a sparse 2D
    acquisition) before training starts."""
    started = time.perf_counter()
    for volume in volumes:
        for path in (volume.image, volume.mask):
            if path is not None:
                _, affine = read_volume(path)
                axis = sparse_axis(affine)
                if axis is not None and path == volume.image:
                    sizes = voxel_sizes(affine).round(2).tolist()
                    raise InputError(f"{path}: voxels of {sizes} mm, sparse along voxel axis {axis}: a 2D acquisition, "
                                     "not a dense 3D reference; fit degrades dense references itself (restore sparse "
                                     "scans with python -m inpaint.predict)")
    log.info("checked %d volumes (readable, 3D, finite, dense) in %.0f s", len(volumes), time.perf_counter() - started)


class InpaintDataModule(L.LightningDataModule):
    """Subjects from ``data.root`` (or the bundled demo), degraded on the fly, patches from a TorchIO Queue.

    Args:
        data: the ``data`` section of the config (a dict or DictConfig).
        seed: base seed; each epoch's queue is seeded with (seed, epoch) so a resumed run draws the
            same patches as an uninterrupted one.
        acquired_grid: training patches on the acquired-slice grid (``inpaint.data.acquired``), of
            ``patch_size`` x ``patch_size`` x ``patch_slices`` acquired slices, for acquired-slice generators;
            validation volumes are the same either way.
    """

    def __init__(self, data: Any, seed: int = 0, acquired_grid: bool = False) -> None:
        super().__init__()
        self.cfg = data
        self.seed = seed
        self.acquired_grid = acquired_grid
        self.splits: dict[str, list[VolumeFile]] = {}
        self.shifted: list[VolumeFile] = []  # data.val_shifted's volumes
        self._announced = False  # the bundled-data note is logged once

    # -- subjects ------------------------------------------------------------------------------
    def root(self) -> str:
        if self.cfg.root:
            return str(self.cfg.root)
        return str(demo_dataset(self.cfg.demo_subjects, self.cfg.demo_dir))

    def prepare_data(self) -> None:
        """Writes the bundled data on first use; says so once (fit calls it before the Trainer does)."""
        if not self.cfg.root and not self._announced:
            self._announced = True
            directory = demo_dataset(self.cfg.demo_subjects, self.cfg.demo_dir)
            log.info("no data.root given: using the bundled MNI152 pseudo-subjects in %s; "
                     "train on your own volumes with data.root=/path/to/folder_of_nifti", directory)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        volumes = find_volumes(self.root(), self.cfg.mask_token)
        split, source = self.split_file()
        self.splits = split_volumes(volumes, self.cfg.val_fraction, self.cfg.test_fraction, self.cfg.split_seed,
                                    split, list(self.cfg.val_subjects), list(self.cfg.test_subjects),
                                    missing_ok=self.cfg.split == "auto")
        if self.cfg.max_val_subjects is not None:
            self.splits["val"] = self.splits["val"][: self.cfg.max_val_subjects]
        log.info("subjects: %s (%s)", ", ".join(f"{k} {len(v)}" for k, v in self.splits.items()), source)
        if self.cfg.val_shifted:
            self.shifted = shifted_volumes(self.cfg.val_shifted, self.splits, self.cfg.mask_token)
            log.info("shifted validation: %d volume(s) of %s", len(self.shifted), self.cfg.val_shifted)
        if stage == "fit":
            check_volumes(self.splits["train"] + self.splits["val"] + self.shifted)

    def split_file(self) -> tuple[str | None, str]:
        """The split file ``data.split`` resolves to (None: lists or the seeded split), and where the split comes from.

        ``auto``: the committed ``experiments/splits/<folder>.tsv`` of ``data.root``'s folder name when there is one
        (restricted to the subjects the folder holds), else as null.
        """
        c = self.cfg
        if c.val_subjects or c.test_subjects:
            return None, "data.val_subjects / data.test_subjects"
        if c.split != "auto":
            return c.split, f"split file {c.split}" if c.split else f"seeded split (data.split_seed={c.split_seed})"
        committed = EXPERIMENTS / "splits" / f"{Path(self.root()).name}.tsv"
        if not c.root or not committed.is_file():
            return None, f"seeded split (data.split_seed={c.split_seed}; no committed split for this folder)"
        return str(committed), (f"the committed split {committed.relative_to(EXPERIMENTS.parent)} (data.split=auto; "
                                "data.split=null for a seeded one)")

    def base_transforms(self, training: bool) -> list[tio.Transform]:
        """Mask + degradation; training adds normalisation and the slice axis last (validation volumes stay in
        file order and original units: the system restores them as ``inpaint.evaluate`` does)."""
        c = self.cfg
        if not training:
            return [PrepareVolume(), Degrade(c.interval, c.offset, thick=c.thick_slices)]
        degrade = Degrade(c.interval, c.offset, c.intervals, c.random_offset, c.thick_slices)
        return [PrepareVolume(), degrade, Normalise(), SliceAxisLast()]

    def num_samples(self, volume: VolumeFile) -> int:
        """Patches per subject visit: ``data.samples_per_volume``, or null = the subject's lattice patches."""
        c = self.cfg
        return c.samples_per_volume or lattice_count(volume, c.patch_size, c.patch_stride)

    def train_subjects(self) -> list[tio.Subject]:
        if not self.splits["train"]:
            raise ValueError(f"{self.root()}: no training subjects after the split; add volumes or lower the val/test fractions")
        subjects = [make_subject(volume) for volume in self.splits["train"]]
        for subject, volume in zip(subjects, self.splits["train"], strict=True):
            subject["num_samples"] = self.num_samples(volume)
        return subjects

    def patch_shape(self) -> tuple[int, int, int]:
        """Training patch size (X, Y, Z): full-resolution voxels, or acquired slices along Z."""
        c = self.cfg
        return (c.patch_size, c.patch_size, c.patch_slices if self.acquired_grid else c.patch_size)

    def patch_transforms(self) -> list[tio.Transform]:
        """After ``base_transforms`` in training: the acquired-slice grid if asked, then the patch centres."""
        c = self.cfg
        if not self.acquired_grid:
            return [PatchCentres(c.patch_size, c.patch_stride)]
        slots = max([c.interval, *c.intervals])
        return [AcquiredGrid(slots), PatchCentres(self.patch_shape(), (c.patch_stride, c.patch_stride, None))]

    # -- loaders -------------------------------------------------------------------------------
    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def train_dataloader(self, device: torch.device | None = None) -> DataLoader:
        """This epoch's training batches from the TorchIO queue (``data.pipeline: torchio``) or resident volumes.

        ``device``: where resident volumes live (default: the trainer's device, else the CPU).
        """
        c = self.cfg
        rank, world = self._rank_world()
        epoch = self._epoch()
        epoch_seed = (self.seed * 100003 + epoch * 1009 + rank) % 2**31
        if not hasattr(self, "_train_subjects"):
            self._train_subjects = self.train_subjects()
        transform = tio.Compose([*self.base_transforms(training=True), *self.patch_transforms()])
        dataset = tio.SubjectsDataset(self._train_subjects, transform=transform)
        subject_sampler, length = None, None
        if world > 1:  # this rank's subjects; the same number of patches (so of steps) on every rank
            subject_sampler = self._subject_sampler(dataset, rank, world, epoch)
            shares = [self._patches(self._subject_sampler(dataset, r, world, epoch)) for r in range(world)]
            length = min(shares)
            if max(shares) > length and epoch == 0 and rank == 0:
                log.info("DDP: ranks draw %s patches this epoch; each rank takes %d (the smallest share)",
                         shares, length)
        device = device or getattr(getattr(self.trainer, "strategy", None), "root_device", None) or torch.device("cpu")
        if c.pipeline == "resident":
            order = list(subject_sampler) if subject_sampler is not None else torch.randperm(  # its own seed: the
                len(dataset), generator=torch.Generator().manual_seed(epoch_seed + 1)).tolist()  # draws use epoch_seed
            self.train_queue = ResidentPatches(self._resident(device), order, self.draws(), c.batch_size,
                                               c.queue_length, epoch_seed, length)
            return DataLoader(self.train_queue, batch_size=None, num_workers=0)
        self.train_queue = SeededQueue(lambda: LatticeQueue(
            dataset, max_length=c.queue_length,
            samples_per_volume=c.samples_per_volume or 1,
            sampler=tio.LabelSampler(self.patch_shape(), label_name=SAMPLING),
            subject_sampler=subject_sampler, shuffle_subjects=subject_sampler is None,
            num_workers=c.num_workers,
        ), epoch_seed, length)
        return tio.SubjectsLoader(self.train_queue, batch_size=c.batch_size, num_workers=0,
                                  pin_memory=device.type == "cuda")

    def draws(self) -> Draws:
        """The training degradation and patch settings, for ``inpaint.data.resident``."""
        c = self.cfg
        return Draws(c.interval, c.offset, tuple(c.intervals), c.random_offset, c.thick_slices, c.patch_size,
                     c.patch_slices, c.patch_stride, self.acquired_grid, max([c.interval, *c.intervals]))

    def _resident(self, device: torch.device) -> list[ResidentVolume]:
        """The training volumes on ``device``, read on the first epoch and kept."""
        if getattr(self, "_resident_volumes", None) is None:
            volumes = self.splits["train"]
            self._resident_volumes = load_volumes(volumes, [int(s["num_samples"]) for s in self._train_subjects], device)
        return self._resident_volumes

    def _subject_sampler(self, dataset: Dataset, rank: int, world: int, epoch: int) -> DistributedSampler:
        """Rank ``rank``'s share of the training subjects, reshuffled every epoch (the same seed on all ranks).

        The shares are disjoint when ``world`` divides the number of subjects; otherwise ``DistributedSampler``
        repeats a few subjects (others each epoch) so that every rank gets as many.
        """
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed)
        sampler.set_epoch(epoch)
        return sampler

    def _patches(self, sampler: DistributedSampler) -> int:
        default = self.cfg.samples_per_volume or 1
        return sum(int(self._train_subjects[i].get("num_samples", default)) for i in sampler)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """The val subjects' whole volumes; with ``data.val_shifted``, a second loader of its volumes."""
        plain = self._volume_loader(self.splits["val"])
        return [plain, self._volume_loader(self.shifted)] if self.shifted else plain

    def _volume_loader(self, volumes: list[VolumeFile]) -> DataLoader:
        transforms = self.base_transforms(training=False)
        if self.cfg.val_crop:
            transforms.append(CropAroundBrain(self.cfg.val_crop))
        dataset = tio.SubjectsDataset([make_subject(v) for v in volumes], transform=tio.Compose(transforms))
        rank, world = self._rank_world()
        if len(dataset) % world and rank == 0 and self._epoch() == 0:
            log.info("DDP: %d validation volume(s) on %d ranks: each rank evaluates %d, repeating volumes so that "
                     "each counts equally; a multiple of %d volumes avoids the repeats", len(dataset), world,
                     math.lcm(len(dataset), world) // world, world)
        return DataLoader(dataset, batch_size=1, collate_fn=volume_batch, sampler=ShardSampler(len(dataset), rank, world),
                          num_workers=min(self.cfg.num_workers, 1))
