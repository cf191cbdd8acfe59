"""The training queue through many refills: every subject gives exactly its patches, at any queue length."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import torchio as tio
from torch.utils.data import DistributedSampler

from inpaint.config import load
from inpaint.constants import NAME
from inpaint.data.module import InpaintDataModule, lattice_count
from inpaint.data.queue import LatticeQueue


def tiny_subjects(counts: list[int]) -> tio.SubjectsDataset:
    subjects = [tio.Subject(t1=tio.ScalarImage(tensor=torch.rand(1, 12, 12, 12)), name=f"s{i}", num_samples=n)
                for i, n in enumerate(counts)]
    return tio.SubjectsDataset(subjects)


def one_pass(queue: LatticeQueue) -> Counter:
    return Counter(queue[i][NAME] for i in range(len(queue)))


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("max_length", [1, 5, 7, 64])
def test_each_subject_gives_its_num_samples_per_pass_whatever_the_queue_length(workers, max_length):
    counts = [23, 4, 17, 1]  # remainders far beyond 2 x max_length: TorchIO 1.2's _fill raised ValueError here
    queue = LatticeQueue(tiny_subjects(counts), max_length=max_length, samples_per_volume=1,
                         sampler=tio.UniformSampler(4), num_workers=workers)
    assert len(queue) == sum(counts)
    for _ in range(2):  # two passes: the second starts where the first ended
        assert one_pass(queue) == {f"s{i}": n for i, n in enumerate(counts)}
        assert len(queue.patches_list) <= max_length


def test_ddp_shares_each_give_their_subjects_patches():
    counts = [30, 9, 21, 2, 13]
    dataset = tiny_subjects(counts)
    drawn: Counter = Counter()
    for rank in range(2):
        sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=0)
        queue = LatticeQueue(dataset, max_length=6, samples_per_volume=1, sampler=tio.UniformSampler(4),
                             subject_sampler=sampler, shuffle_subjects=False)
        assert len(queue) == sum(counts[i] for i in sampler)
        drawn += one_pass(queue)
    repeated = Counter(i for rank in range(2) for i in DistributedSampler(dataset, 2, rank, seed=0))
    assert drawn == {f"s{i}": counts[i] * repeated[i] for i in range(len(counts))}


@pytest.mark.realdata
def test_paper_queue_refills_on_real_volumes(shared_data, tmp_path):
    """experiment=dense_unet_paper's data (samples_per_volume null: ~500 lattice patches a subject) through
    a queue of 64: many refills, each subject exactly its lattice count in one epoch."""
    split = tmp_path / "split.tsv"
    split.write_text("subject\tsplit\nsub-02\ttrain\nsub-04\ttrain\nsub-03\tval\n")
    cfg = load("dense_unet_paper", [f"data.root={shared_data}", f"data.split={split}", "data.queue_length=64",
                                    "data.num_workers=1", "data.test_fraction=0"])
    datamodule = InpaintDataModule(cfg.data, cfg.seed)
    datamodule.setup()
    datamodule.splits["train"] = [v for v in datamodule.splits["train"] if v.name in ("sub-02", "sub-04")]
    expected = {v.name: lattice_count(v, 32, 16) for v in datamodule.splits["train"]}
    assert min(expected.values()) > 2 * 64
    loader = datamodule.train_dataloader()
    drawn: Counter = Counter()
    for batch in loader:
        assert batch["input"]["data"].shape[1:] == (1, 32, 32, 32)
        drawn.update(batch[NAME])
    assert drawn == expected


def test_the_bundled_data_note_is_logged_once(tmp_path, caplog):
    from omegaconf import OmegaConf

    from inpaint.config import DataConfig
    from inpaint.data.module import InpaintDataModule

    data = OmegaConf.structured(DataConfig(demo_subjects=2, demo_dir=str(tmp_path)))
    module = InpaintDataModule(data)
    with caplog.at_level("INFO", logger="inpaint"):
        module.prepare_data()
        module.prepare_data()  # fit calls it, then the Trainer
    assert sum("no data.root given" in r.getMessage() for r in caplog.records) == 1
