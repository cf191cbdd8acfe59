"""The training patch queue: TorchIO's ``Queue`` with whole-subject refills, run under its own seeded RNG."""

from __future__ import annotations

import random
from collections.abc import Callable
from itertools import islice
from typing import Any

import numpy as np
import torch
import torchio as tio
from torch.utils.data import Dataset

from inpaint.constants import NAME


class LatticeQueue(tio.Queue):
    """``tio.Queue`` whose refills never overshoot ``max_length``, whatever a subject's ``num_samples``.

    TorchIO 1.2's ``Queue._fill`` appends the whole remainder of a subject that did not fit into the
    previous fill; when that remainder is larger than ``max_length`` the next ``islice`` gets a negative
    count and raises ``ValueError`` (a subject with more lattice patches than twice the queue, as the
    paper's ``samples_per_volume: null`` gives on real volumes). Here a fill takes at most the free
    slots from each subject, the remainder carried over to the next fills. Every subject still
    contributes exactly its ``num_samples`` patches per pass, so ``len(queue)`` patches are one pass.
    """

    def _fill(self) -> None:
        assert self.sampler is not None
        while len(self.patches_list) < self.max_length:
            if self._incomplete_subject is not None:
                subject, wanted = self._incomplete_subject, self._num_patches_incomplete
            elif self._num_sampled_subjects >= self.num_subjects and self.patches_list:
                break  # this pass's subjects are all drawn: the next fill starts the next pass
            else:
                subject = self._get_next_subject()
                wanted = int(self._get_subject_num_samples(subject))
                self._num_sampled_subjects += 1
            taken = min(wanted, self.max_length - len(self.patches_list))
            self.patches_list.extend(islice(self.sampler(subject), taken))
            left = wanted - taken
            self._incomplete_subject = subject if left else None
            self._num_patches_incomplete = left
        if self.shuffle_patches:
            self._shuffle_patches_list()


class SeededQueue(Dataset):
    """A ``tio.Queue`` that runs under its own RNG state (torch, numpy, random), seeded once.

    Subject order, patch positions, worker seeds and patch shuffling then depend only on ``seed``
    (seed, epoch, rank), not on what else draws random numbers in between: this is what makes a
    resumed run draw exactly the patches of an uninterrupted one.

    Args:
        make_queue: builds the queue (called once, under the private RNG state).
        seed: seeds the private RNG state.
        length: patches per epoch if not all of the queue's (DDP: every rank must take as many steps).

    ``drawn`` collects the names of the subjects whose patches were taken (``data.record_subjects``).
    """

    def __init__(self, make_queue: Callable[[], tio.Queue], seed: int, length: int | None = None) -> None:
        self._states = (torch.Generator().manual_seed(seed).get_state(), np.random.RandomState(seed).get_state(),
                        random.Random(seed).getstate())
        self.queue = self._isolated(make_queue)
        self.length = len(self.queue) if length is None else length
        self.drawn: set[str] = set()

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
        return self.length

    def __getitem__(self, index: int) -> tio.Subject:
        patch = self._isolated(self.queue.__getitem__, index)
        self.drawn.add(patch[NAME])
        return patch


