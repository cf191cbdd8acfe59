"""Train (or, for parameter-free generators, just validate) one experiment.

    python -m inpaint.fit experiment=dense_unet data.root=/path/to/niftis trainer.max_epochs=2
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from omegaconf import DictConfig

from inpaint import config as configuration
from inpaint.data.module import InpaintDataModule
from inpaint.data.subjects import subject_name
from inpaint.loggers import make_logger
from inpaint.system import InpaintingModule

log = logging.getLogger("inpaint")
RUN_DIR_ENV = "INPAINT_RUN_DIR"  # shared with the processes Lightning's DDP launcher starts
QUICK_VAL_CROP = 64


def find_last_checkpoint(cfg: DictConfig) -> Path:
    candidates = sorted(Path(cfg.output_dir, cfg.experiment).glob("*/checkpoints/last.ckpt"))
    if not candidates:
        raise FileNotFoundError(f"resume=true: no {cfg.output_dir}/{cfg.experiment}/*/checkpoints/last.ckpt; "
                                "start a run first or give ckpt_path=PATH")
    return candidates[-1]


def run_directory(cfg: DictConfig, ckpt_path: Path | None) -> Path:
    """The resumed run's folder, the one the DDP launcher passed down, or a new timestamped one."""
    if ckpt_path is not None and ckpt_path.parent.name == "checkpoints":
        return ckpt_path.parent.parent
    if os.environ.get(RUN_DIR_ENV) and os.environ.get("LOCAL_RANK", "0") != "0":
        return Path(os.environ[RUN_DIR_ENV])
    base = Path(cfg.output_dir, cfg.experiment)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir, n = base / stamp, 1
    while run_dir.exists():
        run_dir, n = base / f"{stamp}-{n}", n + 1
    return run_dir


def data_info(datamodule: InpaintDataModule) -> dict[str, Any]:
    """Voxel spacing of the first training volume (slice axis last) and the interval trained at."""
    import nibabel as nib

    from inpaint.interpolate import slice_axis

    volumes = datamodule.splits["train"] or datamodule.splits["val"]
    image = nib.load(str(volumes[0].image))
    zooms = [float(z) for z in image.header.get_zooms()[:3]]
    axis = slice_axis(image.affine, str(volumes[0].image))
    spacing = [z for a, z in enumerate(zooms) if a != axis] + [zooms[axis]]
    return {"spacing": spacing, "interval": int(datamodule.cfg.interval), "skull_stripped": True}


def build_trainer(cfg: DictConfig, run_dir: Path, config: dict, trainable: bool, resumed: bool = False) -> L.Trainer:
    trainer_cfg = {k: v for k, v in configuration.to_container(cfg.trainer).items() if v is not None}
    callbacks: list[L.Callback] = []
    if trainable:
        callbacks.append(ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor="val/psnr",
                                         mode="max", save_last=True, auto_insert_metric_name=False))
    if cfg.callbacks.perceptual is not None:
        from inpaint.perceptual import PerceptualLoss

        callbacks.append(PerceptualLoss(**configuration.to_container(cfg.callbacks.perceptual)))
    logger = make_logger(cfg.logger, run_dir, config, cfg.wandb, time.strftime("resumed-%Y%m%d-%H%M%S") if resumed else "")
    if logger is not None and trainable:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    return L.Trainer(**trainer_cfg, default_root_dir=str(run_dir), logger=logger if logger else False,
                     callbacks=callbacks, use_distributed_sampler=False, reload_dataloaders_every_n_epochs=1,
                     num_sanity_val_steps=0)


def fit(cfg: DictConfig) -> dict[str, Any]:
    """Run one experiment; returns the run folder, checkpoint paths and the final validation metrics."""
    ckpt_path = Path(cfg.ckpt_path) if cfg.ckpt_path else (find_last_checkpoint(cfg) if cfg.resume else None)
    if cfg.trainer.fast_dev_run:  # keep validation quick: one subject, cropped
        cfg.data.max_val_subjects = 1 if cfg.data.max_val_subjects is None else min(1, cfg.data.max_val_subjects)
        cfg.data.val_crop = cfg.data.val_crop or QUICK_VAL_CROP
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    run_dir = run_directory(cfg, ckpt_path)
    os.environ[RUN_DIR_ENV] = str(run_dir)
    datamodule = InpaintDataModule(cfg.data, cfg.seed)
    datamodule.prepare_data()
    datamodule.setup("fit")
    config = configuration.to_container(cfg)
    module = InpaintingModule(generator=config["generator"], model=config["model"], loss=config["loss"],
                              optim=config["optim"], inference=config["inference"], config=config,
                              data_info=data_info(datamodule))
    train = module.trainable and cfg.train
    trainer = build_trainer(cfg, run_dir, config, train, resumed=ckpt_path is not None)
    if trainer.is_global_zero:
        configuration.save(cfg, run_dir / "config.yaml")
    if train:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    else:
        metrics = {k: float(v) for k, v in trainer.validate(module, datamodule=datamodule)[0].items()}
    checkpoint = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    result = {"run_dir": str(run_dir), "metrics": metrics,
              "best_checkpoint": checkpoint.best_model_path if checkpoint else "",
              "last_checkpoint": checkpoint.last_model_path if checkpoint else "",
              "val_subjects": [subject_name(v.name) for v in datamodule.splits["val"]]}
    if trainer.is_global_zero:
        tmp = run_dir / ".result.json.tmp"
        tmp.write_text(json.dumps(result, indent=2))
        tmp.replace(run_dir / "result.json")
        report(result, cfg)
    return result


def report(result: dict[str, Any], cfg: DictConfig) -> None:
    m = result["metrics"]
    print(f"\n== {cfg.experiment}: validation on {len(result['val_subjects'])} subject(s), interval {cfg.data.interval}")
    if "val/psnr" in m:
        print(f"   {cfg.generator.name:>12}: PSNR {m['val/psnr']:.2f} dB  SSIM {m['val/ssim']:.4f}  HFEN "
              f"{m['val/hfen']:.4f}  missing-slice PSNR {m['val/psnr_missing']:.2f} dB")
        print(f"   {'linear':>12}: PSNR {m['val/linear_psnr']:.2f} dB  SSIM {m['val/linear_ssim']:.4f}  HFEN "
              f"{m['val/linear_hfen']:.4f}  missing-slice PSNR {m['val/linear_psnr_missing']:.2f} dB")
    run_dir = Path(result["run_dir"])
    print(f"   run folder:  {run_dir}\n   config:      {run_dir / 'config.yaml'}")
    if result["best_checkpoint"]:
        print(f"   checkpoint:  {result['best_checkpoint']} (best val/psnr); last: {result['last_checkpoint']}")
    if cfg.logger == "csv" and not cfg.trainer.fast_dev_run:
        logs = sorted((run_dir / "logs").rglob("metrics.csv"), key=lambda p: p.stat().st_mtime)
        print(f"   metrics log: {logs[-1] if logs else run_dir / 'logs'}")
    elif cfg.logger == "wandb":
        print(f"   W&B run:     {run_dir / 'wandb'}")
    print(f"   summary:     {run_dir / 'result.json'}")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        cfg = configuration.from_argv(argv)
        fit(cfg)
    except (configuration.ConfigError, ValueError, FileNotFoundError, FileExistsError, KeyError) as error:
        if os.environ.get("INPAINT_DEBUG"):
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
