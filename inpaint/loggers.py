"""Experiment loggers chosen by name; wandb is imported only when it is chosen."""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger

log = logging.getLogger(__name__)


def wandb_logged_in() -> bool:
    """True when an API key is in the environment or in ~/.netrc (what `wandb login` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def make_logger(name: str, run_dir: Path, config: dict[str, Any], wandb_cfg: Any = None,
                version: str = "") -> Logger | None:
    """``csv`` (run_dir/logs/[version/]metrics.csv), ``wandb`` (offline unless logged in), ``tensorboard`` or ``none``.

    A resumed run passes its own ``version`` so the earlier run's logs are kept, not overwritten.
    """
    if name == "none":
        return None
    if name == "csv":
        return CSVLogger(save_dir=str(run_dir), name="logs", version=version)
    if name == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        return TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=version)
    if name == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        mode = (wandb_cfg.mode if wandb_cfg is not None else None) or ("online" if wandb_logged_in() else "offline")
        if mode == "offline":
            log.info("W&B runs offline (no login found); sync later with `wandb sync %s/wandb/offline-run-*`", run_dir)
        return WandbLogger(project=getattr(wandb_cfg, "project", "inpaint"), entity=getattr(wandb_cfg, "entity", None),
                           save_dir=str(run_dir), mode=mode, config=config, tags=config.get("tags") or None,
                           name=f"{config.get('experiment')}-{run_dir.name}", log_model=mode == "online")
    raise ValueError(f"logger {name!r} is not one of csv, wandb, tensorboard, none")
