"""Run-time callbacks: per-rank subject records (DDP check), throughput, validation slice panels, W&B notes.

``inpaint.fit`` adds them: ``SubjectRecorder`` with ``data.record_subjects=true``, ``PatchThroughput`` and
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
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

from inpaint.constants import INPUT, KNOWN, MASK, SLICE_AXIS, TARGET
from inpaint.data.io import atomic_write
from inpaint.data.normalise import acquired_scale, normalise
from inpaint.data.transforms import slice_last_permutation
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


def _volume(x: torch.Tensor, perm: list[int]) -> np.ndarray:
    """(1, 1, X, Y, Z), (1, X, Y, Z) or (X, Y, Z) -> float32 (X, Y, Z) array, axes in ``perm`` order."""
    x = x.detach().float().cpu()
    while x.ndim > 3:
        x = x[0]
    return x.permute(*perm).numpy()


def panel_image(batch: dict[str, Any], pred: torch.Tensor | None = None) -> np.ndarray:
    """Slices of one whole validation volume, grey levels scaled as the networks see them ([-1, 1] from the acquired slices).

    Rows: reference, linear input, prediction (when given); columns: axial (through the missing slice
    nearest the brain centre), coronal and sagittal (through the brain centre), slice axis last.

    Args:
        batch: a validation batch (``volume_batch``): ``target``, ``input``, ``known``, ``mask`` (1, 1, X, Y, Z)
            in file voxel order and the input's units, and ``slice_axis`` (default 2).
        pred: the prediction (1, X, Y, Z), same units, or None.

    Returns:
        An RGB uint8 image (H, W, 3).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    perm = slice_last_permutation(int(batch.get(SLICE_AXIS, 2)))
    mask, known = _volume(batch[MASK], perm) > 0, _volume(batch[KNOWN], perm) > 0
    linear = _volume(batch[INPUT], perm)
    low, high = acquired_scale(torch.from_numpy(linear), torch.from_numpy(known), torch.from_numpy(mask), "panel")
    rows = [("reference", _volume(batch[TARGET], perm)), ("linear input", linear)]
    if pred is not None:
        rows.append(("prediction", _volume(pred, perm)))
    rows = [(label, normalise(volume, (low, high))) for label, volume in rows]
    centre = np.argwhere(mask).mean(0).round().astype(int) if mask.any() else np.array(mask.shape) // 2
    missing = np.flatnonzero(~known.any(axis=(0, 1)))
    z = int(missing[np.abs(missing - centre[2]).argmin()]) if missing.size else int(centre[2])
    planes = [(f"axial z={z}", lambda v: v[:, :, z]), (f"coronal y={centre[1]}", lambda v: v[:, centre[1], :]),
              (f"sagittal x={centre[0]}", lambda v: v[centre[0], :, :])]
    figure = Figure(figsize=(2.4 * len(planes), 2.4 * len(rows)), dpi=80)
    canvas = FigureCanvasAgg(figure)
    axes = figure.subplots(len(rows), len(planes), squeeze=False)
    for i, (label, volume) in enumerate(rows):
        for j, (title, cut) in enumerate(planes):
            ax = axes[i, j]
            ax.imshow(cut(volume).T, cmap="gray", vmin=-1, vmax=1, origin="lower", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=9)
            if j == 0:
                ax.set_ylabel(label, fontsize=9)
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


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
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if self.monitor in metrics:
            self.epochs.append({"epoch": trainer.current_epoch, **metrics})

    def best(self) -> dict[str, float]:
        """The validation with the highest ``monitor`` ({} if none ran)."""
        return max(self.epochs, key=lambda m: m[self.monitor], default={})
