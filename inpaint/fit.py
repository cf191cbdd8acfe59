"""Train (or, for parameter-free generators, just validate) one experiment.

    python -m inpaint.fit experiment=dense_unet data.root=/path/to/niftis trainer.max_epochs=2

Distributed (Lightning DDP; ``trainer.*`` keys go to ``L.Trainer`` as they are):

    python -m inpaint.fit experiment=dense_unet trainer.strategy=ddp trainer.devices=4     # one machine
    torchrun --nnodes=2 --nproc-per-node=4 --rdzv-id=$JOB_ID --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 \
        -m inpaint.fit experiment=dense_unet trainer.strategy=ddp trainer.devices=4 trainer.num_nodes=2
    srun python -m inpaint.fit experiment=dense_unet trainer.strategy=ddp trainer.devices=4 trainer.num_nodes=2

- ``data.batch_size`` is per device: the global batch is batch_size x devices x num_nodes. Each rank
  draws patches from its own share of the training subjects (``DistributedSampler``, reshuffled each
  epoch) with its own queue of ``data.queue_length`` patches; every rank takes the same number of steps.
  Validation subjects are split across ranks and the metrics averaged over all of them.
- The run folder: every process must write to the same one. With Lightning's own launcher
  (``trainer.devices=N``) the started processes inherit it (env ``INPAINT_RUN_DIR``); under torchrun it is
  ``output_dir/experiment/torchrun-RDZV_ID`` and under SLURM ``output_dir/experiment/slurm-JOBID[.STEP]``,
  both the same on every process (and again after a restart or requeue, so Lightning's SLURM auto-resume
  finds its checkpoint). ``run_dir=PATH`` overrides all of these; give it for any other multi-node
  launch (a multi-node run without it, a torchrun ``--rdzv-id`` or SLURM is an error).
- Only global rank 0 writes config.yaml, result.json, checkpoints and logs.
- ``trainer.sync_batchnorm=true`` synchronises ``nn.BatchNorm*`` layers only: ``BatchRenorm3d`` (DenseUNet)
  is deliberately not converted and keeps per-rank batch statistics (its running statistics are rank 0's,
  broadcast by DDP): a warning says so.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from omegaconf import DictConfig

from inpaint import config as configuration
from inpaint.callbacks import (
    CheckpointArtifactNote,
    PatchThroughput,
    SlicePanels,
    SubjectRecorder,
    TextProgress,
    ValidationHistory,
    WorkMeter,
)
from inpaint.checkpoint import inherited_subjects, is_pretrained_name, load_module
from inpaint.data.io import atomic_write
from inpaint.data.module import InpaintDataModule
from inpaint.data.subjects import subject_name
from inpaint.errors import report as report_error
from inpaint.loggers import make_logger
from inpaint.system import InpaintingModule
from models import acquired_grid
from models.layers import BatchRenorm3d

log = logging.getLogger("inpaint")
# Lightning warns each epoch that an IterableDataset with __len__ may repeat data across workers: our queues split
# subjects across workers and ranks themselves (inpaint/data/queue.py, resident.py; tested), so it never applies.
warnings.filterwarnings("ignore", message=r".*Your `IterableDataset` has `__len__` defined.*")
RUN_DIR_ENV = "INPAINT_RUN_DIR"  # shared with the processes Lightning's DDP launcher starts
QUICK_VAL_CROP = 64
# A short CPU run of a full-resolution network (trainer.max_time <= SHORT_RUN_S or 0 < trainer.max_steps <= SHORT_STEPS)
# validates one subject cropped to SHORT_VAL_CROP unless data.max_val_subjects / data.val_crop are given: a whole
# DenseUNet validation of 4 volumes takes ~9 minutes on 2 cores.
SHORT_RUN_S, SHORT_STEPS, SHORT_VAL_CROP = 3600, 200, 96


def find_last_checkpoint(cfg: DictConfig) -> Path:
    candidates = sorted(Path(cfg.output_dir, cfg.experiment).glob("*/checkpoints/last.ckpt"),
                        key=lambda p: p.stat().st_mtime)  # run folders may be timestamps, torchrun-ID, slurm-ID
    if not candidates:
        raise FileNotFoundError(f"resume=true: no {cfg.output_dir}/{cfg.experiment}/*/checkpoints/last.ckpt; "
                                "start a run first or give ckpt_path=PATH")
    return candidates[-1]


def launcher_run_name() -> str | None:
    """A folder name that every process of one torchrun / SLURM job derives alike; None outside them."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")
    if run_id != "none" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return "torchrun-" + re.sub(r"[^\w.-]", "_", run_id)
    if SLURMEnvironment.detect() and int(os.environ.get("SLURM_NTASKS", "1")) > 1:  # not an interactive shell
        step = os.environ.get("SLURM_STEP_ID")
        return f"slurm-{os.environ['SLURM_JOB_ID']}" + (f".{step}" if step else "")
    return None


def run_directory(cfg: DictConfig, ckpt_path: Path | None) -> Path:
    """The resumed run's folder, ``run_dir``, the one the DDP launcher passed down, the launcher's job
    folder (torchrun, SLURM), or a new timestamped one."""
    if ckpt_path is not None and ckpt_path.parent.name == "checkpoints":
        return ckpt_path.parent.parent
    if cfg.run_dir:
        return Path(cfg.run_dir)
    if os.environ.get(RUN_DIR_ENV) and os.environ.get("LOCAL_RANK", "0") != "0":
        return Path(os.environ[RUN_DIR_ENV])
    base = Path(cfg.output_dir, cfg.experiment)
    if (name := launcher_run_name()) is not None:
        return base / name
    if cfg.trainer.num_nodes > 1:
        raise configuration.ConfigError(
            f"trainer.num_nodes={cfg.trainer.num_nodes}: the processes cannot agree on a run folder; "
            "pass run_dir=PATH (the same on every node), or launch with torchrun --rdzv-id=ID or SLURM srun")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir, n = base / stamp, 1
    while run_dir.exists():
        run_dir, n = base / f"{stamp}-{n}", n + 1
    return run_dir


def data_info(datamodule: InpaintDataModule) -> dict[str, Any]:
    """Voxel spacing and orientation of the first training volume (slice axis last), the intervals and slices trained
    at, and the subjects it trains and validates on (``inpaint.evaluate`` refuses to score it on them)."""
    import nibabel as nib

    from inpaint.geometry import slice_axis, slice_last_permutation

    volumes = datamodule.splits["train"] or datamodule.splits["val"]
    image = nib.load(str(volumes[0].image))
    zooms = [float(z) for z in image.header.get_zooms()[:3]]
    axis = slice_axis(image.affine, str(volumes[0].image))
    spacing = [zooms[a] for a in slice_last_permutation(axis)]
    codes = nib.aff2axcodes(image.affine)
    return {"spacing": spacing, "orientation": "".join(codes[a] for a in slice_last_permutation(axis)),
            "interval": int(datamodule.cfg.interval), "skull_stripped": True,
            "intervals": [int(i) for i in datamodule.cfg.intervals] or [int(datamodule.cfg.interval)],
            "thick_slices": bool(datamodule.cfg.thick_slices),
            "subjects": {split: [v.name for v in datamodule.splits[split]] for split in ("train", "val")}}


def build_trainer(cfg: DictConfig, run_dir: Path, config: dict, trainable: bool, resumed: bool = False) -> L.Trainer:
    trainer_cfg = {k: v for k, v in configuration.to_container(cfg.trainer).items() if v is not None}
    callbacks: list[L.Callback] = [SubjectRecorder(run_dir)] if cfg.data.record_subjects else []
    if trainable:
        callbacks.append(ValidationHistory(cfg.select))
        # best.ckpt: the best cfg.select (val/psnr); last.ckpt: every epoch (Lightning's save_last writes it only when a
        # best checkpoint was saved in the same step, so a run whose validation stalls would resume from far back)
        callbacks.append(ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=cfg.select,
                                         mode="max", auto_insert_metric_name=False))
        callbacks.append(ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", monitor=None, save_top_k=1,
                                         auto_insert_metric_name=False, enable_version_counter=False,
                                         save_on_train_epoch_end=True))  # also on epochs without validation
    if cfg.callbacks.perceptual is not None:
        from inpaint.perceptual import PerceptualLoss

        callbacks.append(PerceptualLoss(**configuration.to_container(cfg.callbacks.perceptual)))
    logger = make_logger(cfg.logger, run_dir, config, cfg.wandb, time.strftime("resumed-%Y%m%d-%H%M%S") if resumed else "")
    if logger is not None:
        callbacks.append(SlicePanels(run_dir))
        if trainable:
            callbacks += [LearningRateMonitor(logging_interval="epoch"), PatchThroughput(), WorkMeter()]
        if cfg.logger == "wandb":
            callbacks.append(CheckpointArtifactNote())
    if trainer_cfg.get("enable_progress_bar", True) and not sys.stdout.isatty():
        trainer_cfg["enable_progress_bar"] = False  # a redrawn bar says nothing in a file or a pipe
        callbacks.append(TextProgress())
    return L.Trainer(**trainer_cfg, default_root_dir=str(run_dir), logger=logger if logger else False,
                     callbacks=callbacks, use_distributed_sampler=False, reload_dataloaders_every_n_epochs=1,
                     num_sanity_val_steps=0)


def warn_batch_renorm_sync(cfg: DictConfig, module: InpaintingModule) -> None:
    """sync_batchnorm converts nn.BatchNorm* only; say that BatchRenorm3d keeps per-rank statistics."""
    if cfg.trainer.sync_batchnorm and any(isinstance(m, BatchRenorm3d) for m in module.generator.modules()):
        log.warning("trainer.sync_batchnorm=true: BatchRenorm3d layers of %s are deliberately not converted to "
                    "SyncBatchNorm; their batch statistics stay per rank (data.batch_size=%d patches each), their "
                    "running statistics are rank 0's (broadcast by DDP)", cfg.generator.name, cfg.data.batch_size)


def initialise(module: InpaintingModule, spec: str) -> None:
    """Copy the generator weights of checkpoint ``spec`` (a path or a pretrained name) into ``module`` (fine-tuning)."""
    source = load_module(spec)
    try:
        module.generator.load_state_dict({k: v.float() for k, v in source.generator.state_dict().items()})
    except RuntimeError as error:
        raise configuration.ConfigError(f"init_from={spec}: its generator does not fit this experiment's "
                          f"({' '.join(str(error).split())[:160]}); give a checkpoint of the same generator") from None
    log.info("generator weights from %s (init_from; optimiser and schedule start afresh)", source.checkpoint_path)


def short_cpu_run(cfg: DictConfig) -> bool:
    """A full-resolution network trained briefly on the CPU (see SHORT_RUN_S): its validation would outlast it."""
    on_cpu = cfg.trainer.accelerator == "cpu" or (cfg.trainer.accelerator == "auto" and not torch.cuda.is_available())
    full_resolution = cfg.generator.name != "linear" and not acquired_grid(cfg.generator.name)
    max_time = cfg.trainer.max_time
    seconds = None
    if max_time and re.fullmatch(r"\d+:\d+:\d+:\d+", str(max_time)):
        days, hours, minutes, secs = (int(v) for v in str(max_time).split(":"))
        seconds = ((days * 24 + hours) * 60 + minutes) * 60 + secs
    short = (seconds is not None and seconds <= SHORT_RUN_S) or 0 < cfg.trainer.max_steps <= SHORT_STEPS
    return on_cpu and full_resolution and short and cfg.train


def fit(cfg: DictConfig) -> dict[str, Any]:
    """Run one experiment; returns the run folder, checkpoint paths and the final validation metrics."""
    ckpt_path = Path(cfg.ckpt_path) if cfg.ckpt_path else (find_last_checkpoint(cfg) if cfg.resume else None)
    if cfg.trainer.fast_dev_run:  # keep validation quick: one subject, cropped
        cfg.data.max_val_subjects = 1 if cfg.data.max_val_subjects is None else min(1, cfg.data.max_val_subjects)
        cfg.data.val_crop = cfg.data.val_crop or QUICK_VAL_CROP
    elif short_cpu_run(cfg) and cfg.data.max_val_subjects is None and cfg.data.val_crop is None:
        cfg.data.max_val_subjects, cfg.data.val_crop = 1, SHORT_VAL_CROP
        log.info("a short CPU run of a full-resolution network: validation on 1 subject cropped to %d^3 (set "
                 "data.max_val_subjects / data.val_crop to choose)", SHORT_VAL_CROP)
    if cfg.init_from and not (is_pretrained_name(cfg.init_from) or Path(cfg.init_from).is_file()):
        raise configuration.ConfigError(f"init_from={cfg.init_from}: no such checkpoint file; give a .ckpt path or "
                                        "a pretrained model name")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    run_dir = run_directory(cfg, ckpt_path)
    os.environ[RUN_DIR_ENV] = str(run_dir)
    datamodule = InpaintDataModule(cfg.data, cfg.seed, acquired_grid(cfg.generator.name))
    datamodule.prepare_data()
    datamodule.setup("fit")
    config = configuration.to_container(cfg)
    info = data_info(datamodule)
    info["subjects"] = inherited_subjects(info["subjects"], [str(p) for p in (ckpt_path, cfg.init_from) if p])
    module = InpaintingModule(generator=config["generator"], model=config["model"], loss=config["loss"],
                              optim=config["optim"], inference=config["inference"], config=config, data_info=info,
                              augment=config["augment"])
    if cfg.init_from and ckpt_path is None:
        initialise(module, cfg.init_from)
    train = module.trainable and cfg.train
    trainer = build_trainer(cfg, run_dir, config, train, resumed=ckpt_path is not None)
    if trainer.is_global_zero:
        configuration.save(cfg, run_dir / "config.yaml")
        warn_batch_renorm_sync(cfg, module)
    if train:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None)
        history = next(c for c in trainer.callbacks if isinstance(c, ValidationHistory))
        metrics = dict(history.best())  # the epoch best.ckpt holds
        best_epoch = metrics.pop("epoch", None)
        last = {k: v for k, v in (history.epochs[-1] if history.epochs else {}).items() if k != "epoch"}
    else:
        metrics = {k.split("/dataloader_idx_")[0]: float(v)  # one dict per validation loader (data.val_shifted: 2)
                   for loader in trainer.validate(module, datamodule=datamodule) for k, v in loader.items()}
        last, best_epoch = metrics, None
    best_saver, last_saver = ([c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)] + [None, None])[:2]
    result = {"run_dir": str(run_dir), "metrics": metrics, "best_epoch": best_epoch, "last_metrics": last,
              "best_checkpoint": best_saver.best_model_path if best_saver else "",
              "last_checkpoint": last_saver.best_model_path if last_saver else "",
              "val_subjects": [subject_name(v.name) for v in datamodule.splits["val"]]}
    if trainer.is_global_zero:
        atomic_write(run_dir / "result.json", json.dumps(result, indent=2))
        report(result, cfg)
        if cfg.logger == "wandb":
            import wandb

            wandb.finish()  # flush the run; a next fit() in this process starts its own
    return result


def report(result: dict[str, Any], cfg: DictConfig) -> None:
    m, last = result["metrics"], result.get("last_metrics", {})
    epoch = result.get("best_epoch")
    when = f", epoch {epoch} (best {cfg.select}; last epoch {last['val/psnr']:.2f} dB)" if epoch is not None else ""
    print(f"\n== {cfg.experiment}: validation on {len(result['val_subjects'])} subject(s), interval {cfg.data.interval}{when}")
    if "val/psnr" in m:
        print(f"   {cfg.generator.name:>12}: PSNR {m['val/psnr']:.2f} dB  SSIM {m['val/ssim']:.4f}  HFEN "
              f"{m['val/hfen']:.4f}  missing-slice PSNR {m['val/psnr_missing']:.2f} dB")
        if cfg.generator.name != "linear":
            print(f"   {'linear':>12}: PSNR {m['val/linear_psnr']:.2f} dB  SSIM {m['val/linear_ssim']:.4f}  HFEN "
                  f"{m['val/linear_hfen']:.4f}  missing-slice PSNR {m['val/linear_psnr_missing']:.2f} dB")
        if "val_shifted/psnr_gain" in m:
            kept = m["val_shifted/psnr_gain"] / m["val/psnr_gain"] if m.get("val/psnr_gain", 0) > 0 else float("nan")
            print(f"   shifted val ({cfg.data.val_shifted}): gain over linear {m['val_shifted/psnr_gain']:+.2f} dB against "
                  f"{m['val/psnr_gain']:+.2f} on the plain val subjects ({kept:.0%} kept)")
    else:
        print("   no validation ran: the run stopped before its first epoch ended (trainer.max_steps / max_time); "
              "validate a checkpoint with inpaint.evaluate --checkpoint NAME=PATH")
    run_dir = Path(result["run_dir"])
    print(f"   run folder:  {run_dir}\n   config:      {run_dir / 'config.yaml'}")
    if result["best_checkpoint"]:
        print(f"   checkpoint:  {result['best_checkpoint']} (best {cfg.select}); last: {result['last_checkpoint']}")
    elif result["last_checkpoint"]:
        print(f"   checkpoint:  {result['last_checkpoint']} (last; no best without validation)")
    if cfg.logger == "csv" and not cfg.trainer.fast_dev_run:
        logs = sorted((run_dir / "logs").rglob("metrics.csv"), key=lambda p: p.stat().st_mtime)
        print(f"   metrics log: {logs[-1] if logs else run_dir / 'logs'}")
    elif cfg.logger == "wandb":
        print(f"   W&B run:     {run_dir / 'wandb'}")
    print(f"   summary:     {run_dir / 'result.json'}")


def usage() -> str:
    """``--help``: the module docstring's usage, the experiments and the config sections."""
    keys = [f.name + (".*" if f.name == "generator" or dataclasses.is_dataclass(f.default_factory) else "")
            for f in dataclasses.fields(configuration.Config) if f.name != "experiment"]
    return (f"usage: python -m inpaint.fit experiment=NAME [key=value ...]\n\n{__doc__.strip()}\n\n"
            f"experiments: {', '.join(configuration.experiment_names())} (or a path to a YAML file)\n"
            f"keys: {', '.join(keys)} (every key with its default: inpaint/config.py)\n")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help", "help") for a in args):
        print(usage(), end="")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        cfg = configuration.from_argv(args)
        fit(cfg)
    except (configuration.ConfigError, ValueError, FileNotFoundError, FileExistsError, KeyError) as error:
        if os.environ.get("INPAINT_DEBUG"):
            raise
        return report_error(error.args[0] if isinstance(error, KeyError) and error.args else error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
