"""Run-time callbacks: per-rank subject records (DDP check), throughput, validation slice panels, W&B notes.

``inpaint.fit`` adds them: ``SubjectRecorder`` with ``data.record_subjects=true``, ``PatchThroughput``, ``WorkMeter`` and
``SlicePanels`` whenever a logger is on, ``CheckpointArtifactNote`` with ``logger=wandb``. Importing this module
does not import wandb (Lightning's ``WandbLogger`` imports it when a run starts).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

from inpaint.constants import INPUT, INTERVAL, KNOWN, MASK, NAME, OFFSET, TARGET
from inpaint.data.io import atomic_write
from inpaint.system import patch_count

log = logging.getLogger(__name__)
PANEL_KEY = "val/panel"


def _step(trainer: L.Trainer) -> int:
    """The step Lightning itself logs metrics at (as ``LearningRateMonitor`` does), so the curves line up."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped


class SubjectRecorder(L.Callback):
    """Writes ``run_dir/subjects/epoch{e}_rank{r}.txt``: the training subjects this rank drew patches from.

    One name a line, sorted. Under DDP the files of one epoch are disjoint and together cover the
    training split (``DistributedSampler`` over subjects); ``tests/inpaint/test_ddp.py`` checks it.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.folder = Path(run_dir) / "subjects"

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        queue = getattr(trainer.datamodule, "train_queue", None)
        if queue is None:
            return
        path = self.folder / f"epoch{trainer.current_epoch}_rank{trainer.global_rank}.txt"
        text = "".join(f"{name}\n" for name in sorted(queue.drawn))
        atomic_write(path, text)


class PatchThroughput(L.Callback):
    """Logs ``train/patches_per_s``: patches of all ranks per second of wall time.

    Measured over windows of ``trainer.log_every_n_steps`` batches (and the rest of each epoch), so it
    includes data loading (the queue filling up), not validation. Assumes every rank takes the same
    batch size, which ``InpaintDataModule`` guarantees.
    """

    def __init__(self) -> None:
        self._reset()  # a run resumed from a last.ckpt written at an epoch's end starts with on_train_epoch_end

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset()

    def _reset(self) -> None:
        self.start, self.batches, self.patches = time.perf_counter(), 0, 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.batches += 1
        self.patches += patch_count(batch) * trainer.world_size
        if self.batches >= max(1, trainer.log_every_n_steps):
            self._log(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.batches:
            self._log(trainer)

    def _log(self, trainer: L.Trainer) -> None:
        rate = self.patches / max(time.perf_counter() - self.start, 1e-9)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics({"train/patches_per_s": rate}, step=_step(trainer))
        self._reset()


class TextProgress(L.Callback):
    """Plain lines for output that is not a terminal: every ``trainer.log_every_n_steps`` steps (step, loss,
    patches/s, time left), every validation volume (k of n) and every validation's result.

    Lightning's progress bar redraws one terminal line; written to a file or a pipe (``make demo > log``)
    it shows nothing useful, so ``inpaint.fit`` uses this instead there.
    """

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.train_start: tuple[float, int] | None = None  # (time, global step) when training (re)started
        self.patches = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.train_start, self.patches = (time.perf_counter(), trainer.global_step), 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.patches += patch_count(batch)
        step = trainer.global_step
        if trainer.is_global_zero and step % max(1, trainer.log_every_n_steps) == 0:
            loss = trainer.callback_metrics.get("train/loss")
            total = trainer.num_training_batches
            began, first_step = self.train_start or (self.start, 0)
            elapsed = max(time.perf_counter() - began, 1e-9)
            left = time_left(trainer, batch_idx, (step - first_step) / elapsed)
            print(f"epoch {trainer.current_epoch} batch {batch_idx + 1}/{total} step {step}"
                  + (f" loss {float(loss):.4f}" if loss is not None else "")
                  + f" {self.patches / elapsed:.1f} patches/s"
                  + (f", ~{left / 60:.0f} min of training left" if left is not None else "")
                  + f" ({time.perf_counter() - self.start:.0f} s)", flush=True)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking:
            counts = trainer.num_val_batches
            total = counts[dataloader_idx] if isinstance(counts, list) else counts
            which = "shifted validation" if dataloader_idx else "validation"
            print(f"epoch {trainer.current_epoch} {which} volume {batch_idx + 1}/{total} "
                  f"({time.perf_counter() - self.start:.0f} s)", flush=True)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        if trainer.is_global_zero and not trainer.sanity_checking and "val/psnr" in metrics:
            shifted = (f", shifted val {float(metrics['val_shifted/psnr_gain']):+.3f} dB"
                       if "val_shifted/psnr_gain" in metrics else "")
            print(f"epoch {trainer.current_epoch} validation: PSNR {float(metrics['val/psnr']):.2f} dB, gain over linear "
                  f"{float(metrics.get('val/psnr_gain', float('nan'))):+.3f} dB{shifted} "
                  f"({time.perf_counter() - self.start:.0f} s)", flush=True)


def time_left(trainer: L.Trainer, batch_idx: int, steps_per_s: float) -> float | None:
    """Seconds of training left: the nearest of ``max_steps``, ``max_epochs`` (at the measured step rate) and
    ``max_time`` (Lightning's Timer); None when no limit is set or no rate is known yet. Validation not included."""
    if steps_per_s <= 0:
        return None
    limits = []
    if trainer.max_steps and trainer.max_steps > 0:
        limits.append((trainer.max_steps - trainer.global_step) / steps_per_s)
    if trainer.max_epochs and trainer.max_epochs > 0 and trainer.num_training_batches != float("inf"):
        steps = (trainer.max_epochs - trainer.current_epoch) * trainer.num_training_batches - (batch_idx + 1)
        limits.append(max(steps, 0) / steps_per_s)
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    if timer is not None and timer.time_remaining() is not None:
        limits.append(max(timer.time_remaining(), 0.0))
    return min(limits) if limits else None


class WorkMeter(L.Callback):
    """Logs the work a run has done so far, so learning curves of different generators compare honestly.

    ``work/patches_seen`` (training patches of all ranks), ``work/cpu_hours`` (CPU time of this process, all
    its threads, training and validation; data-loader worker processes are not counted) and
    ``work/wall_hours``, at every validation and with the throughput. The totals are saved in the
    checkpoint, so a resumed run continues counting.
    """

    def __init__(self) -> None:
        self.patches, self.cpu, self.wall = 0, 0.0, 0.0
        self._mark()

    def _mark(self) -> None:
        self._cpu0, self._wall0 = time.process_time(), time.perf_counter()

    def totals(self) -> dict[str, float]:
        cpu, wall = self.cpu + time.process_time() - self._cpu0, self.wall + time.perf_counter() - self._wall0
        return {"work/patches_seen": float(self.patches), "work/cpu_hours": cpu / 3600, "work/wall_hours": wall / 3600}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.patches += patch_count(batch) * trainer.world_size

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            logger.log_metrics(self.totals(), step=_step(trainer))

    def state_dict(self) -> dict[str, float]:
        totals = self.totals()
        return {"patches": self.patches, "cpu": totals["work/cpu_hours"] * 3600, "wall": totals["work/wall_hours"] * 3600}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.patches, self.cpu, self.wall = int(state["patches"]), float(state["cpu"]), float(state["wall"])
        self._mark()


def panel_image(batch: dict[str, Any], pred: torch.Tensor | None = None) -> np.ndarray:
    """``inpaint.figures.slice_panel`` of one validation volume: reference, linear input and the prediction.

    Args:
        batch: a validation batch (``volume_batch``): ``target``, ``input``, ``known``, ``mask`` (1, 1, X, Y, Z)
            in file voxel order and the input's units, ``affine`` (default identity), ``name``, ``interval``, ``offset``.
        pred: the prediction (1, X, Y, Z), same units, or None.

    Returns:
        An RGB uint8 image (H, W, 3).
    """
    from inpaint.figures import slice_panel

    volumes = {k: batch[k].detach().float().cpu().reshape(batch[k].shape[-3:]) for k in (TARGET, INPUT, KNOWN, MASK)}
    predictions = {"linear": volumes[INPUT]}
    if pred is not None:
        predictions["prediction"] = pred.detach().float().cpu().reshape(pred.shape[-3:])
    data = {"reference": volumes[TARGET], "mask": volumes[MASK], "known": volumes[KNOWN],
            "affine": np.asarray(batch.get("affine", np.eye(4))), "subject": str(batch.get(NAME, "validation")),
            "predictions": predictions}
    return slice_panel(data, [], None, int(batch.get(INTERVAL, 5)), int(batch.get(OFFSET, 0)))


class SlicePanels(L.Callback):
    """One slice panel (``panel_image``) of the first validation subject per validation, on global rank 0.

    W&B: ``WandbLogger.log_image("val/panel")``; TensorBoard: ``add_image``; CSV: a PNG in
    ``run_dir/panels/``. The prediction is ``validation_step``'s output ``{"pred": (1, X, Y, Z)}``;
    without it the panel shows reference and input only.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.folder = Path(run_dir) / "panels"

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_idx or dataloader_idx or trainer.sanity_checking or not trainer.is_global_zero:
            return
        pred = outputs.get("pred") if isinstance(outputs, dict) else None
        self.log_panel(trainer, panel_image(batch, pred))

    def log_panel(self, trainer: L.Trainer, image: np.ndarray) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=PANEL_KEY, images=[image], step=_step(trainer),
                                 caption=[f"epoch {trainer.current_epoch}"])
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(PANEL_KEY, image, _step(trainer), dataformats="HWC")
            elif isinstance(logger, CSVLogger):
                import matplotlib.image

                path = self.folder / f"epoch{trainer.current_epoch:03d}.png"
                atomic_write(path, lambda tmp: matplotlib.image.imsave(tmp, image, format="png"))


class CheckpointArtifactNote(L.Callback):
    """W&B: online, ``WandbLogger(log_model=True)`` uploads the best and last checkpoints as an artifact at the
    end of training; offline (or disabled) runs log one line saying the artifact is skipped."""

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and (mode := logger.experiment.settings.mode) != "online":
                best = getattr(trainer.checkpoint_callback, "best_model_path", "") or "none"
                log.info("W&B %s: checkpoint artifact skipped (best checkpoint: %s)", mode, best)


class ValidationHistory(L.Callback):
    """Keeps every validation's metrics, so a run can report the epoch its best checkpoint holds."""

    def __init__(self, monitor: str = "val/psnr") -> None:
        self.monitor = monitor
        self.epochs: list[dict[str, float]] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("val/", "val_shifted/", "val_mean/"))}
        if self.monitor in metrics:
            self.epochs.append({"epoch": trainer.current_epoch, **metrics})

    def best(self) -> dict[str, float]:
        """The validation with the highest ``monitor`` ({} if none ran)."""
        return max(self.epochs, key=lambda m: m[self.monitor], default={})
