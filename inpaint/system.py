"""One LightningModule that wraps any generator of the zoo: loss terms, data consistency, validation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
import torchio as tio
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchmetrics import MeanMetric

from inpaint.config import MEAN_GAIN, AugmentConfig, InferenceConfig, LossConfig, ModelConfig, OptimConfig
from inpaint.constants import (
    ACQUIRED,
    GAPS,
    INPUT,
    INTERVAL,
    KNOWN,
    MASK,
    MASK_GIVEN,
    NAME,
    OFFSET,
    SLICE_AXIS,
    TARGET,
    THICK,
)
from inpaint.data.site import SiteShift
from inpaint.geometry import spacing_slice_last
from inpaint.inference import infer_acquired, infer_volume
from inpaint.metrics import volume_metrics
from inpaint.restore import Restorer, degraded_from_mask
from models import GENERATORS, acquired_grid
from models.fuse import fuse_for_inference

LossFunction = Callable[[torch.Tensor, torch.Tensor, dict], torch.Tensor]
METRICS = ("psnr", "ssim", "hfen", "psnr_missing")

VAL_GROUPS = ("val", "val_shifted")  # validation loader index -> the logged prefix


def patch_count(batch: dict[str, Any]) -> int:
    """Patches in a training batch, of either grid."""
    return int((batch[INPUT] if INPUT in batch else batch[ACQUIRED])[tio.DATA].shape[0])


def zero_output_layer(generator: nn.Module) -> None:
    """Zero the last convolution, so a residual generator starts exactly at the interpolation."""
    convs = [m for m in generator.modules() if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))]
    if convs:
        nn.init.zeros_(convs[-1].weight)
        if convs[-1].bias is not None:
            nn.init.zeros_(convs[-1].bias)


class InpaintingModule(L.LightningModule):
    """Builds ``generator`` by name from the registry; trains on patches, validates on whole volumes.

    Args:
        generator: ``{"name": ..., **kwargs}`` for ``models.GENERATORS``.
        model: ``data_consistency``, ``known_channel``, ``residual`` (see inpaint.config.ModelConfig).
        loss: ``{"l1": weight}``; further terms come from callbacks through ``add_loss_term``.
        optim: Adam ``lr, betas, weight_decay`` and step decay ``step_epochs, gamma``.
        inference: whole-volume settings (patch_size, overlap, aggregation, batch_size, bf16, and the speed
            options ``fuse`` and ``tile``; see ``predict_volume`` and ``inpaint.inference.infer_volume``).
        config: the full resolved run config (kept in the checkpoint, not used here).
        data_info: facts about the training data (voxel spacing, interval) for ``inpaint.predict``.
        augment: site shifts of the training patches (``inpaint.config.AugmentConfig``; acquired-grid generators).

    Example:
        >>> module = InpaintingModule({"name": "linear"})
        >>> module(torch.zeros(1, 1, 8, 8, 8), torch.zeros(1, 1, 8, 8, 8)).shape
        torch.Size([1, 1, 8, 8, 8])
    """

    def __init__(self, generator: dict, model: dict | None = None, loss: dict | None = None,
                 optim: dict | None = None, inference: dict | None = None, config: dict | None = None,
                 data_info: dict | None = None, augment: dict | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model_cfg = {**asdict(ModelConfig()), **(model or {})}
        self.loss_cfg = {**asdict(LossConfig()), **(loss or {})}
        self.optim_cfg = {**asdict(OptimConfig()), **(optim or {})}
        self.inference_cfg = {**asdict(InferenceConfig()), **(inference or {})}
        self.augment_cfg = {**asdict(AugmentConfig()), **(augment or {})}
        kwargs = dict(generator)
        name = kwargs.pop("name")
        self.acquired_grid = acquired_grid(name)
        if self.acquired_grid and (self.model_cfg["known_channel"] or self.model_cfg["residual"]):
            raise ValueError(f"generator {name!r} computes on the acquired slices and corrects linear interpolation by "
                             "construction; drop model.known_channel and model.residual")
        if self.augment_cfg["p"] > 0 and not self.acquired_grid:
            raise ValueError(f"augment.p={self.augment_cfg['p']}: site shifts apply to acquired-slice generators "
                             f"(slice_resnet), not {name!r}; drop augment.p")
        self.site_shift = SiteShift(**self.augment_cfg) if self.augment_cfg["p"] > 0 else None
        self.thick_slices = bool((data_info or {}).get("thick_slices", False))
        in_channels = 2 if self.model_cfg["known_channel"] else 1
        if kwargs.setdefault("in_channels", in_channels) != in_channels:
            raise ValueError(f"generator.in_channels={kwargs['in_channels']} but model.known_channel="
                             f"{self.model_cfg['known_channel']} needs {in_channels}; drop generator.in_channels")
        self.generator = GENERATORS.build(name, **kwargs)
        if self.model_cfg["residual"]:
            zero_output_layer(self.generator)
        self.loss_terms: dict[str, tuple[LossFunction, float]] = {}
        # validation means per loader: "val" (the val subjects) and "val_shifted" (data.val_shifted); not in state_dict
        self.val_means = nn.ModuleDict({group: nn.ModuleDict({f"{prefix}{m}": MeanMetric() for m in (*METRICS, "psnr_gain")
                                                              for prefix in ("", "linear_") if prefix + m != "linear_psnr_gain"})
                                        for group in VAL_GROUPS})

    def configure_model(self) -> None:
        """Speed options of ``model``.

        ``channels_last``: the generator's weights (so its activations) in channels-last 3D memory
        format, the layout cuDNN's and oneDNN's fastest 3D conv kernels use; ``compile``:
        ``nn.Module.compile()`` (torch.compile of the forward, state-dict keys unchanged).
        """
        if self.model_cfg["channels_last"]:
            self.generator.to(memory_format=torch.channels_last_3d)
        if self.model_cfg["compile"] and getattr(self.generator, "_compiled_call_impl", None) is None:
            self.generator.compile()

    def on_fit_start(self) -> None:
        """On CUDA, let cuDNN pick the fastest conv algorithms (fixed 32³ patches) unless determinism is asked."""
        if self.device.type == "cuda" and not torch.are_deterministic_algorithms_enabled():
            torch.backends.cudnn.benchmark = True

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.generator.parameters())

    def add_loss_term(self, name: str, fn: LossFunction, weight: float) -> None:
        """Register ``weight * fn(pred, target, batch)`` to be added to the loss in every training step."""
        if name in self.loss_terms or name == "l1":
            raise ValueError(f"loss term {name!r} is registered twice")
        if self.acquired_grid:
            raise ValueError(f"loss term {name!r} needs full-resolution patches, but generator "
                             f"{self.hparams['generator']['name']!r} trains on the acquired-slice grid; remove it")
        self.loss_terms[name] = (fn, float(weight))

    def forward(self, inputs: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """(B, 1, X, Y, Z) interpolated input and acquired-slice mask -> (B, 1, X, Y, Z) prediction."""
        return self.run_generator(self.generator, inputs, known)

    def run_generator(self, generator: nn.Module, inputs: torch.Tensor, known: torch.Tensor,
                      data_consistency: bool | None = None) -> torch.Tensor:
        """``forward`` with ``generator`` in place of ``self.generator`` (e.g. a fused inference copy).

        ``data_consistency`` overrides ``model.data_consistency`` (whole-volume inference applies it
        itself, once, as asked, so its patch functions pass False).
        """
        x = torch.cat([inputs, known.to(inputs.dtype)], 1) if self.model_cfg["known_channel"] else inputs
        out = generator(x)
        if self.model_cfg["residual"]:
            out = out + inputs
        if self.model_cfg["data_consistency"] if data_consistency is None else data_consistency:
            known = known.to(out.dtype)
            out = known * inputs + (1 - known) * out
        return out

    # -- training ------------------------------------------------------------------------------
    def acquired_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """L1 on the missing slices of acquired-grid patches (``inpaint.data.acquired``), normalised units.

        The mean over each patch's target slots, then over patches: a patch at interval 8 (7 missing slices
        per gap) weighs as much as one at interval 2 (1). A patch has K acquired slices (B, 1, P, P, K) and
        gap targets (B, S, P, P, K); slot m of slice j is a target when m < interval, j < K - 1 (the last
        slice's gap leaves the patch) and m >= 1, or m = 0 for thick slices (the acquired position is then
        predicted too).
        """
        slices, gaps = batch[ACQUIRED][tio.DATA].float(), batch[GAPS][tio.DATA].float()
        interval = torch.as_tensor(batch[INTERVAL], device=slices.device).view(-1)
        if self.site_shift is not None and self.training:
            slices, gaps = self.site_shift(slices, gaps, interval, generator=self.shift_generator(slices.device))
        if self.model_cfg["channels_last"]:
            slices = slices.contiguous(memory_format=torch.channels_last_3d)
        thick = torch.as_tensor(batch[THICK], device=slices.device).view(-1).bool()
        first, last = (0 if bool(thick.any()) else 1), int(interval.max())
        slots = torch.arange(first, last, device=slices.device)
        t = slots[None].float() / interval[:, None].float()
        valid = (slots[None] < interval[:, None]) & ((slots[None] >= 1) | thick[:, None])  # (B, S')
        valid = valid[:, :, None, None, None] & (torch.arange(slices.shape[-1], device=slices.device) < slices.shape[-1] - 1)
        pred = self.generator(slices, interval.float(), t.clamp(max=1))[:, 0].permute(0, 4, 1, 2, 3)  # (B, S', P, P, K)
        valid = valid.expand_as(pred).to(pred.dtype)
        error = ((pred - gaps[:, first:last]).abs() * valid).flatten(1).sum(1) / valid.flatten(1).sum(1)
        return {"l1": self.loss_cfg["l1"] * error.mean()}  # each patch counts alike, whatever its interval

    def shift_generator(self, device: torch.device) -> torch.Generator:
        """The site shifts' random numbers, seeded by (seed, rank, step): each rank its own (the global seed is the same
        on every rank), and a resumed run draws what the uninterrupted one would have."""
        seed = (torch.initial_seed() * 1_000_003 + self.global_rank * 7919 + self.global_step) % 2**63
        return torch.Generator(device=device).manual_seed(seed)

    def model_step(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        inputs, known, target = (batch[k][tio.DATA].float() for k in (INPUT, KNOWN, TARGET))
        if self.model_cfg["channels_last"]:
            inputs = inputs.contiguous(memory_format=torch.channels_last_3d)
        pred = self(inputs, known)
        terms = {"l1": self.loss_cfg["l1"] * F.l1_loss(pred, target)}
        for name, (fn, weight) in self.loss_terms.items():
            terms[name] = weight * fn(pred, target, batch)
        return pred, terms

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        terms = self.acquired_step(batch) if self.acquired_grid else self.model_step(batch)[1]
        loss = torch.stack(list(terms.values())).sum()
        batch_size = patch_count(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        for name, value in terms.items():
            self.log(f"train/{name}", value, batch_size=batch_size)
            if name != "l1":
                self.log(f"train/{name}_ratio", value.detach() / terms["l1"].detach().clamp_min(1e-12), batch_size=batch_size)
        return loss

    # -- validation: whole volumes, original units ---------------------------------------------
    def inference_function(self, fuse: bool = True) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The patch function of whole-volume inference, ``(inputs, known) -> pred`` (B, 1, X, Y, Z) each.

        ``fuse=True`` runs an eval-mode copy of the generator with its norms folded into the convs
        (``models.fuse``: the DenseUNet also without repeated concatenation, channels-last): equal to
        ``self(inputs, known)`` in eval mode up to float rounding, and ~2x faster on the CPU. The copy is
        made per call, so it always has the current weights; ``fuse=False`` (or a parameter-free
        generator) runs ``self.generator`` itself. Neither copies acquired slices back: ``infer_volume``
        does that once for the whole volume when asked. In training mode this is ``self``.
        """
        if self.training:
            return self
        generator = fuse_for_inference(self.generator) if fuse and self.trainable else self.generator
        return lambda inputs, known: self.run_generator(generator, inputs, known, data_consistency=False)

    def predict_volume(self, inputs: torch.Tensor, known: torch.Tensor, mask: torch.Tensor, **overrides) -> torch.Tensor:
        """Whole normalised (1, 1, X, Y, Z) volume -> (1, X, Y, Z) normalised prediction (CPU).

        ``overrides`` replace the ``inference`` settings: those of ``inpaint.inference.infer_volume``
        plus ``fuse`` (see ``inference_function``).
        """
        settings = {**self.inference_cfg, **overrides}
        settings.setdefault("data_consistency", self.model_cfg["data_consistency"])
        if self.acquired_grid:
            return infer_acquired(self.generator, inputs, known, mask, predict_acquired=self.thick_slices,
                                  data_consistency=settings["data_consistency"], device=self.device,
                                  bf16=settings["bf16"], tile=settings["tile"], heap=settings["heap"])
        fn = self.inference_function(bool(settings.pop("fuse")))
        if settings.get("tile") is not None:
            settings.setdefault("multiple", int(getattr(self.generator, "size_multiple", 16)))
        if self.device.type == "cuda" and not torch.are_deterministic_algorithms_enabled():
            torch.backends.cudnn.benchmark = True
        return infer_volume(fn, inputs, known, mask, device=self.device, **settings)

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        """Restore one whole volume (file voxel order, original units) as ``inpaint.evaluate`` does, and score it
        (``dataloader_idx`` 1: a ``data.val_shifted`` volume)."""
        inputs, known, mask, target = (batch[k][0, 0].cpu() for k in (INPUT, KNOWN, MASK, TARGET))
        degraded = degraded_from_mask(inputs.float(), known, batch[SLICE_AXIS], batch[INTERVAL], batch[OFFSET])
        spacing = spacing_slice_last(batch["affine"], batch[SLICE_AXIS])  # resampled as evaluate would
        pred = Restorer(self)(degraded, mask > 0 if batch[MASK_GIVEN] else None, spacing, source=str(batch[NAME]),
                              affine=batch["affine"])
        reference, flags = target.double(), (mask > 0, known > 0)
        ours = volume_metrics(pred.double(), reference, *flags)
        baseline = volume_metrics(inputs.double(), reference, *flags)
        means = self.val_means[VAL_GROUPS[dataloader_idx]]
        for m in METRICS:
            means[m].update(ours[m])
            means[f"linear_{m}"].update(baseline[m])
        means["psnr_gain"].update(ours["psnr"] - baseline["psnr"])
        return {"pred": pred[None]}

    def on_validation_epoch_end(self) -> None:
        """Logs ``{group}/{metric}`` per validation loader and, with both, ``val_mean/psnr_gain`` (their mean gain)."""
        gains = []
        for group, means in self.val_means.items():
            for key, metric in means.items():
                if metric.update_called:
                    value = metric.compute()
                    self.log(f"{group}/{key}", value, prog_bar=key in ("psnr", "psnr_gain"), sync_dist=False)
                    gains += [value] if key == "psnr_gain" else []
                metric.reset()
        if len(gains) == len(VAL_GROUPS):
            self.log(MEAN_GAIN, torch.stack(gains).mean(), sync_dist=False)

    # -- optimisation --------------------------------------------------------------------------
    def configure_optimizers(self) -> dict:
        c = self.optim_cfg
        optimizer = torch.optim.Adam(self.generator.parameters(), lr=c["lr"], betas=tuple(c["betas"]),
                                     weight_decay=c["weight_decay"])
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=c["step_epochs"], gamma=c["gamma"])
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Resuming (``ckpt_path``) with other ``optim`` settings than the checkpoint's: this run's settings win.

        Lightning restores the optimiser and scheduler states after this hook, from this same dict, so a
        resume with e.g. ``optim.lr=1.5e-4`` continues at that rate (a cool-down; StepLR's decays so far
        are applied to it) instead of silently keeping the old one. Unchanged settings: the dict is not touched.
        """
        c = self.optim_cfg
        if {**asdict(OptimConfig()), **(checkpoint.get("hyper_parameters", {}).get("optim") or {})} == c:
            return
        for scheduler in checkpoint.get("lr_schedulers", []):
            lr = c["lr"] * c["gamma"] ** (scheduler["last_epoch"] // c["step_epochs"])
            groups = len(scheduler["base_lrs"])
            scheduler.update(step_size=c["step_epochs"], gamma=c["gamma"], base_lrs=[c["lr"]] * groups,
                             _last_lr=[lr] * groups)
            for optimizer in checkpoint.get("optimizer_states", []):
                for group in optimizer["param_groups"]:
                    group.update(lr=lr, initial_lr=c["lr"], betas=tuple(c["betas"]), weight_decay=c["weight_decay"])
            rank_zero_info(f"resumed with this run's optim settings (lr now {lr:g}), not the checkpoint's")
