"""Distributed training: a real 2-process CPU (gloo) DDP run of the CLI, plus the run-folder rules.

Lightning's ``ddp`` launcher re-executes the current command for rank 1, so the run goes through a
subprocess (inside pytest it would re-run pytest).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch

from inpaint.config import ConfigError, load
from inpaint.data.module import InpaintDataModule, ShardSampler
from inpaint.fit import run_directory
from inpaint.system import InpaintingModule
from tests.conftest import REPO, phantom, quick_overrides, write_nifti


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def validate_alone(run: Path) -> dict[str, float]:
    """The metrics of one process validating the run's last checkpoint on all its validation subjects."""
    cfg = load(str(run / "config.yaml"))
    datamodule = InpaintDataModule(cfg.data, cfg.seed)
    datamodule.setup("fit")
    module = InpaintingModule.load_from_checkpoint(run / "checkpoints" / "last.ckpt", map_location="cpu")
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, use_distributed_sampler=False)
    return trainer.validate(module, datamodule=datamodule, verbose=False)[0]


@pytest.mark.parametrize("pipeline", ["torchio", "resident"])
def test_two_process_ddp_shards_subjects_and_writes_once(tiny_root, tmp_path, pipeline):
    # 6 subjects: 2 validation (one per rank), 4 training (two per rank and epoch)
    args = [*quick_overrides(tiny_root, tmp_path), f"data.pipeline={pipeline}", "logger=csv", "trainer.strategy=ddp", "trainer.devices=2",
            "trainer.max_epochs=2", "trainer.limit_train_batches=null", "trainer.log_every_n_steps=2",
            "trainer.sync_batchnorm=true", "data.record_subjects=true", "data.max_val_subjects=null",
            "data.val_fraction=0.34", "data.test_fraction=0"]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WANDB_MODE": "disabled"}
    env.pop("INPAINT_RUN_DIR", None)
    out = subprocess.run([sys.executable, "-m", "inpaint.fit", "experiment=debug", *args], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=240)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]

    runs = list((tmp_path / "runs" / "debug").iterdir())
    assert len(runs) == 1, runs
    run = runs[0]
    for name in ("config.yaml", "result.json", "last.ckpt", "best.ckpt", "metrics.csv"):
        assert len(list(tmp_path.rglob(name))) == 1, name
    # 4 training subjects x 4 patches, 2 a batch on each of 2 ranks: 4 steps an epoch, not 8
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 2 * 4
    assert log.count("== debug: validation on 2 subject(s)") == 1  # only rank 0 reports and writes result.json
    assert log.count("BatchRenorm3d layers of dense_unet are deliberately not converted") == 1

    result = json.loads((run / "result.json").read_text())
    train = {f"sub-{i:02d}" for i in range(6)} - set(result["val_subjects"])
    assert len(train) == 4
    for epoch in (0, 1):
        ranks = [set((run / "subjects" / f"epoch{epoch}_rank{r}.txt").read_text().split()) for r in (0, 1)]
        assert ranks[0] and ranks[1] and not ranks[0] & ranks[1], ranks
        assert ranks[0] | ranks[1] == train
    assert not list((run / "subjects").glob("*rank2*"))

    # the metrics averaged across ranks are those of one process validating every subject
    alone = validate_alone(run)  # last.ckpt
    for key, value in result["last_metrics"].items():
        assert value == pytest.approx(alone[key], rel=1e-5, abs=1e-6), key
    header = (run / "logs" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"lr-Adam", "train/patches_per_s", "val/psnr"} <= set(header)


def test_torchrun_processes_share_one_run_folder(tiny_root, tmp_path):
    # torchrun starts every rank itself (no INPAINT_RUN_DIR): the folder comes from its rendezvous id
    args = [*quick_overrides(tiny_root, tmp_path), "logger=csv", "trainer.strategy=ddp", "trainer.devices=2",
            "data.record_subjects=true"]
    env = {k: v for k, v in os.environ.items() if k != "INPAINT_RUN_DIR"} | {"WANDB_MODE": "disabled"}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                          "-m", "inpaint.fit", "experiment=debug", *args], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    (run,) = (tmp_path / "runs" / "debug").iterdir()
    assert run.name.startswith("torchrun-")
    assert sorted(p.name for p in (run / "subjects").iterdir()) == ["epoch0_rank0.txt", "epoch0_rank1.txt"]
    assert (run / "result.json").is_file() and (run / "checkpoints" / "last.ckpt").is_file()


def test_ranks_take_disjoint_subjects_and_the_same_number_of_patches(tmp_path):
    # subjects of different sizes: different numbers of lattice patches per subject (samples_per_volume=null)
    for i, shape in enumerate([(40, 44, 36), (56, 44, 36), (40, 60, 36), (56, 60, 44), (64, 48, 40)]):
        write_nifti(tmp_path / f"sub-{i:02d}" / "anat" / f"sub-{i:02d}_T1w.nii.gz", phantom(shape, seed=i))
    cfg = load("debug", [f"data.root={tmp_path}", "data.samples_per_volume=null", "data.patch_size=16",
                         "data.patch_stride=8", "data.val_fraction=0.2", "data.test_fraction=0",
                         "data.queue_length=400"])
    for epoch in (0, 1):
        loaders = []
        for rank in (0, 1):
            datamodule = InpaintDataModule(cfg.data, cfg.seed)
            datamodule.setup("fit")
            datamodule.trainer = SimpleNamespace(global_rank=rank, world_size=2, current_epoch=epoch)
            loaders.append(datamodule.train_dataloader())
        names = [volume.name for volume in datamodule.splits["train"]]
        subjects = [{names[i] for i in loader.dataset.queue.subject_sampler} for loader in loaders]
        assert not subjects[0] & subjects[1] and len(subjects[0] | subjects[1]) == 4
        shares = [loader.dataset.queue.iterations_per_epoch for loader in loaders]
        assert shares[0] != shares[1]  # the subjects differ in size...
        assert len(loaders[0].dataset) == len(loaders[1].dataset) == min(shares)  # ...the steps do not
        assert len(loaders[0]) == len(loaders[1])


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("length", [0, 1, 2, 3, 5, 8])
def test_validation_shards_are_even_nonempty_and_count_every_subject_equally(length, world):
    shards = [list(ShardSampler(length, rank, world)) for rank in range(world)]
    assert len({len(s) for s in shards}) == 1
    every = [i for s in shards for i in s]
    assert sorted(set(every)) == list(range(length))
    assert len({every.count(i) for i in range(length)}) <= 1  # each subject equally often: exact mean
    if length:
        assert all(shards)
    if length % world == 0:
        assert len(every) == length  # no repeats when the ranks divide the subjects


@pytest.fixture
def no_launcher(monkeypatch):
    for key in ("INPAINT_RUN_DIR", "LOCAL_RANK", "WORLD_SIZE", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS",
                "SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_JOB_NAME"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def test_run_dir_is_taken_as_given(no_launcher, tmp_path):
    cfg = load("debug", [f"run_dir={tmp_path / 'mine'}"])
    assert run_directory(cfg, None) == tmp_path / "mine"


def test_torchrun_and_slurm_processes_agree_on_the_run_dir(no_launcher, tmp_path):
    cfg = load("debug", [f"output_dir={tmp_path}"])
    no_launcher.setenv("TORCHELASTIC_RUN_ID", "job/42")
    no_launcher.setenv("WORLD_SIZE", "8")
    for rank in ("0", "3"):
        no_launcher.setenv("LOCAL_RANK", rank)
        assert run_directory(cfg, None) == tmp_path / "debug" / "torchrun-job_42"
    no_launcher.delenv("TORCHELASTIC_RUN_ID")
    no_launcher.setenv("SLURM_NTASKS", "8")
    no_launcher.setenv("SLURM_JOB_ID", "1234")
    no_launcher.setenv("SLURM_STEP_ID", "0")
    assert run_directory(cfg, None) == tmp_path / "debug" / "slurm-1234.0"


def test_multi_node_without_a_shared_run_dir_is_an_error(no_launcher, tmp_path):
    with pytest.raises(ConfigError, match="run_dir=PATH"):
        run_directory(load("debug", [f"output_dir={tmp_path}", "trainer.num_nodes=2"]), None)
