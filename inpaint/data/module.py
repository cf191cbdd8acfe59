"""LightningDataModule: seeded subject split, a TorchIO patch Queue for training, whole volumes for validation."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
import torchio as tio
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from inpaint.constants import INPUT, KNOWN, MASK, NAME, PATH, SAMPLING, SCALE, SLICE_AXIS, TARGET
from inpaint.data.degrade import Degrade
from inpaint.data.demo import demo_dataset
from inpaint.data.io import read_volume
from inpaint.data.normalise import Normalise
from inpaint.data.subjects import VolumeFile, find_volumes, make_subject, split_volumes
from inpaint.data.transforms import CropAroundBrain, PatchCentres, PrepareVolume, SliceAxisLast, lattice_mask

log = logging.getLogger(__name__)


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...``: every validation subject on exactly one rank, none repeated."""

    def __init__(self, length: int, rank: int, world: int) -> None:
        self.indices = list(range(rank, length, world))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class SeededQueue(Dataset):
    """A ``tio.Queue`` that runs under its own RNG state (torch, numpy, random), seeded once.

    Subject order, patch positions, worker seeds and patch shuffling then depend only on ``seed``
    (seed, epoch, rank), not on what else draws random numbers in between: this is what makes a
    resumed run draw exactly the patches of an uninterrupted one.
    """

    def __init__(self, make_queue: Callable[[], tio.Queue], seed: int) -> None:
        self._states = (torch.Generator().manual_seed(seed).get_state(), np.random.RandomState(seed).get_state(),
                        random.Random(seed).getstate())
        self.queue = self._isolated(make_queue)

    def _isolated(self, fn: Callable[..., Any], *args: Any) -> Any:
        outside = (torch.get_rng_state(), np.random.get_state(), random.getstate())
        torch.set_rng_state(self._states[0])
        np.random.set_state(self._states[1])
        random.setstate(self._states[2])
        try:
            return fn(*args)
        finally:
            self._states = (torch.get_rng_state(), np.random.get_state(), random.getstate())
            torch.set_rng_state(outside[0])
            np.random.set_state(outside[1])
            random.setstate(outside[2])

    def __len__(self) -> int:
        return len(self.queue)

    def __getitem__(self, index: int) -> tio.Subject:
        return self._isolated(self.queue.__getitem__, index)


def volume_batch(subjects: list[tio.Subject]) -> dict[str, Any]:
    """Collate one whole-volume subject into tensors: input/known/mask/target (1, 1, X, Y, Z) + metadata."""
    (subject,) = subjects
    batch = {key: subject[key].data[None] for key in (INPUT, KNOWN, MASK, TARGET)}
    batch.update({NAME: subject[NAME], SCALE: subject[SCALE], "affine": subject[TARGET].affine,
                  SLICE_AXIS: subject[SLICE_AXIS], PATH: subject[PATH]})
    return batch


def lattice_count(volume: VolumeFile, patch_size: int, stride: int | None) -> int:
    """Number of allowed patch centres of one volume (the paper's patches per subject for stride 16)."""
    mask = read_volume(volume.mask or volume.image)[0][0] > 0
    return max(1, int(lattice_mask(mask, patch_size, stride).sum()))


class InpaintDataModule(L.LightningDataModule):
    """Subjects from ``data.root`` (or the bundled demo), degraded on the fly, patches from a TorchIO Queue.

    Args:
        data: the ``data`` section of the config (a dict or DictConfig).
        seed: base seed; each epoch's queue is seeded with (seed, epoch) so a resumed run draws the
            same patches as an uninterrupted one.
    """

    def __init__(self, data: Any, seed: int = 0) -> None:
        super().__init__()
        self.cfg = data
        self.seed = seed
        self.splits: dict[str, list[VolumeFile]] = {}

    # -- subjects ------------------------------------------------------------------------------
    def root(self) -> str:
        if self.cfg.root:
            return str(self.cfg.root)
        return str(demo_dataset(self.cfg.demo_subjects, self.cfg.demo_dir))

    def prepare_data(self) -> None:
        if not self.cfg.root:
            directory = demo_dataset(self.cfg.demo_subjects, self.cfg.demo_dir)
            log.info("no data.root given: using the bundled MNI152 pseudo-subjects in %s; "
                     "train on your own volumes with data.root=/path/to/folder_of_nifti", directory)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        volumes = find_volumes(self.root(), self.cfg.mask_token)
        self.splits = split_volumes(volumes, self.cfg.val_fraction, self.cfg.test_fraction, self.cfg.split_seed,
                                    self.cfg.split, list(self.cfg.val_subjects), list(self.cfg.test_subjects))
        if self.cfg.max_val_subjects is not None:
            self.splits["val"] = self.splits["val"][: self.cfg.max_val_subjects]
        log.info("subjects: %s", ", ".join(f"{k} {len(v)}" for k, v in self.splits.items()))

    def base_transforms(self, training: bool) -> list[tio.Transform]:
        c = self.cfg
        degrade = Degrade(c.interval, c.offset, c.intervals if training else (), c.random_offset and training)
        return [PrepareVolume(), degrade, Normalise(), SliceAxisLast()]

    def train_subjects(self) -> list[tio.Subject]:
        subjects = []
        for volume in self.splits["train"]:
            subject = make_subject(volume)
            if self.cfg.samples_per_volume is None:
                subject["num_samples"] = lattice_count(volume, self.cfg.patch_size, self.cfg.patch_stride)
            subjects.append(subject)
        if not subjects:
            raise ValueError(f"{self.root()}: no training subjects after the split; add volumes or lower the val/test fractions")
        return subjects

    # -- loaders -------------------------------------------------------------------------------
    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        c = self.cfg
        rank, world = self._rank_world()
        epoch = self._epoch()
        epoch_seed = (self.seed * 100003 + epoch * 1009 + rank) % 2**31
        if not hasattr(self, "_train_subjects"):
            self._train_subjects = self.train_subjects()
        transform = tio.Compose([*self.base_transforms(training=True), PatchCentres(c.patch_size, c.patch_stride)])
        dataset = tio.SubjectsDataset(self._train_subjects, transform=transform)
        subject_sampler = None
        if world > 1:
            subject_sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed)
            subject_sampler.set_epoch(epoch)
        queue = SeededQueue(lambda: tio.Queue(
            dataset, max_length=c.queue_length,
            samples_per_volume=c.samples_per_volume or 1,
            sampler=tio.LabelSampler(c.patch_size, label_name=SAMPLING),
            subject_sampler=subject_sampler, shuffle_subjects=subject_sampler is None,
            num_workers=c.num_workers,
        ), epoch_seed)
        return tio.SubjectsLoader(queue, batch_size=c.batch_size, num_workers=0)

    def val_dataloader(self) -> DataLoader:
        transforms = self.base_transforms(training=False)
        if self.cfg.val_crop:
            transforms.append(CropAroundBrain(self.cfg.val_crop))
        dataset = tio.SubjectsDataset([make_subject(v) for v in self.splits["val"]], transform=tio.Compose(transforms))
        rank, world = self._rank_world()
        return DataLoader(dataset, batch_size=1, collate_fn=volume_batch, sampler=ShardSampler(len(dataset), rank, world),
                          num_workers=min(self.cfg.num_workers, 1))
