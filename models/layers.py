"""Building blocks shared by the generators: batch renormalisation, norm/act factories, conv blocks.

Norms and activations are named as in MONAI: a string, or a ``(name, kwargs)`` tuple such as
``("leakyrelu", {"negative_slope": 0.1})``; ``None`` means none.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

LayerSpec = str | tuple[str, dict[str, Any]] | None


class BatchRenorm3d(nn.Module):
    """Batch renormalisation (Ioffe 2017, arXiv:1702.03275) for ``(B, C, X, Y, Z)`` tensors.

    Training mode, per channel, with batch statistics ``mu_B, sigma_B = sqrt(var_B + eps)`` and running
    ones ``mu, sigma = sqrt(running_var + eps)``::

        r = clip(sigma_B / sigma, 1 / r_max, r_max)     d = clip((mu_B - mu) / sigma, -d_max, d_max)
        y = weight * ((x - mu_B) / sigma_B * r + d) + bias

    ``r`` and ``d`` are treated as constants (no gradient flows through them); gradients do flow through
    ``mu_B`` and ``sigma_B`` as in batch norm. ``r`` and ``d`` use the running statistics from before this
    batch, which are then updated as in ``nn.BatchNorm3d`` (``running = (1 - momentum) * running +
    momentum * batch``, unbiased batch variance). Evaluation mode normalises with the running statistics.
    With ``r_max = 1, d_max = 0`` it is exactly batch norm.

    Warm-up, counted by the ``num_batches_tracked`` buffer (one per training-mode forward, so one per
    micro-batch under gradient accumulation): ``r_max`` is 1 and ``d_max`` 0 for ``warmup_steps``, then
    both grow linearly to their final values, reached at ``r_max_steps`` and ``d_max_steps``. The
    defaults are Ioffe's (1 until 5k steps, r_max 3 at 40k, d_max 5 at 25k); ``momentum=0.01`` is the
    renorm moving-average rate of Keras/TF (``renorm_momentum=0.99``), whose code base the paper used.

    Distributed training: this class deliberately does NOT subclass ``nn.modules.batchnorm._BatchNorm``,
    so ``nn.SyncBatchNorm.convert_sync_batchnorm`` (what Lightning's ``sync_batchnorm=True`` calls)
    leaves it alone instead of silently swapping it for plain synchronised batch norm. Its batch
    statistics are therefore per rank (each rank's local batch, like ``BatchNorm3d`` without sync);
    with DDP's default ``broadcast_buffers=True`` the running statistics and step count of rank 0 are
    copied to every rank before each forward, so all ranks share rank 0's estimates.

    Args:
        num_features: channels C.
        eps: added to variances before the square root.
        momentum: weight of the new batch in the running-statistics update.
        affine: learn a per-channel ``weight`` and ``bias``.
        r_max: final bound of ``r``, >= 1.
        d_max: final bound of ``|d|``, >= 0.
        warmup_steps: steps with ``r_max = 1, d_max = 0`` (plain batch norm).
        r_max_steps: step at which ``r_max`` reaches its final value.
        d_max_steps: step at which ``d_max`` reaches its final value.

    Example:
        >>> norm = BatchRenorm3d(8)
        >>> norm(torch.randn(2, 8, 4, 4, 4)).shape
        torch.Size([2, 8, 4, 4, 4])
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.01,
        affine: bool = True,
        r_max: float = 3.0,
        d_max: float = 5.0,
        warmup_steps: int = 5_000,
        r_max_steps: int = 40_000,
        d_max_steps: int = 25_000,
    ) -> None:
        super().__init__()
        if r_max < 1 or d_max < 0:
            raise ValueError(
                f"BatchRenorm3d needs r_max >= 1 and d_max >= 0, got r_max={r_max}, d_max={d_max}"
            )
        if not 0 < momentum <= 1:
            raise ValueError(f"BatchRenorm3d needs 0 < momentum <= 1, got {momentum}")
        if min(r_max_steps, d_max_steps) < warmup_steps:
            raise ValueError(
                f"BatchRenorm3d: r_max_steps ({r_max_steps}) and d_max_steps ({d_max_steps}) must be >= "
                f"warmup_steps ({warmup_steps})"
            )
        self.num_features, self.eps, self.momentum, self.affine = num_features, eps, momentum, affine
        self.r_max, self.d_max = float(r_max), float(d_max)
        self.warmup_steps, self.r_max_steps, self.d_max_steps = warmup_steps, r_max_steps, d_max_steps
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def limits(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Current ``(r_max, d_max)`` of the warm-up schedule, as 0-d tensors on the buffers' device."""
        t = self.num_batches_tracked.float()

        def ramp(end: int) -> torch.Tensor:
            return ((t - self.warmup_steps) / max(end - self.warmup_steps, 1)).clamp(0.0, 1.0)

        return 1 + (self.r_max - 1) * ramp(self.r_max_steps), self.d_max * ramp(self.d_max_steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x``.

        Args:
            x: ``(B, C, X, Y, Z)``.

        Returns:
            ``(B, C, X, Y, Z)``, same dtype as ``x``.
        """
        if x.dim() != 5 or x.shape[1] != self.num_features:
            raise ValueError(
                f"BatchRenorm3d({self.num_features}) expects (B, {self.num_features}, X, Y, Z), got {tuple(x.shape)}"
            )
        if not self.training:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        if x.numel() // x.shape[1] < 2:
            raise ValueError(
                f"BatchRenorm3d needs more than 1 value per channel in training, got {tuple(x.shape)}"
            )
        with torch.no_grad():  # r and d are constants for autograd
            var_b, mean_b = torch.var_mean(x.float(), dim=(0, 2, 3, 4), correction=0)
            std = (self.running_var + self.eps).sqrt()
            r_max, d_max = self.limits()
            r = torch.clamp((var_b + self.eps).sqrt() / std, 1 / r_max, r_max)
            d = torch.clamp((mean_b - self.running_mean) / std, -d_max, d_max)
            self.num_batches_tracked.add_(1)
        weight, bias = (self.weight * r, self.weight * d + self.bias) if self.affine else (r, d)
        # Batch norm with weight * r and bias weight * d + bias is exactly the renormalised output, with
        # gradients through the batch statistics; it also updates the running statistics as BatchNorm3d.
        return F.batch_norm(
            x, self.running_mean, self.running_var, weight, bias, True, self.momentum, self.eps
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"r_max={self.r_max}, d_max={self.d_max}, warmup_steps={self.warmup_steps}, "
            f"r_max_steps={self.r_max_steps}, d_max_steps={self.d_max_steps}"
        )


def _split(spec: LayerSpec) -> tuple[str | None, dict[str, Any]]:
    if spec is None or isinstance(spec, str):
        return (spec.lower() if spec else None), {}
    name, kwargs = spec
    return name.lower(), dict(kwargs)


_NORMS = {
    "batchrenorm": BatchRenorm3d,
    "batch": nn.BatchNorm3d,
    "instance": lambda c, **kw: nn.InstanceNorm3d(c, **{"affine": True, **kw}),
}
_ACTS = {"elu": nn.ELU, "relu": nn.ReLU, "leakyrelu": nn.LeakyReLU, "prelu": nn.PReLU}


def get_norm(spec: LayerSpec, channels: int) -> nn.Module | None:
    """A 3D normalisation layer for ``channels`` channels, or ``None`` for ``spec=None``.

    Args:
        spec: ``"batchrenorm"``, ``"batch"``, ``"instance"`` (affine) or ``None``; or ``(name, kwargs)``.
        channels: number of channels C of the ``(B, C, X, Y, Z)`` input.
    """
    name, kwargs = _split(spec)
    if name is None:
        return None
    if name not in _NORMS:
        raise ValueError(f"unknown norm {name!r}; choose one of: {', '.join(_NORMS)} or None")
    return _NORMS[name](channels, **kwargs)


def get_act(spec: LayerSpec) -> nn.Module | None:
    """An activation layer, or ``None`` for ``spec=None``.

    Args:
        spec: ``"elu"``, ``"relu"``, ``"leakyrelu"``, ``"prelu"`` or ``None``; or ``(name, kwargs)``.
    """
    name, kwargs = _split(spec)
    if name is None:
        return None
    if name not in _ACTS:
        raise ValueError(f"unknown act {name!r}; choose one of: {', '.join(_ACTS)} or None")
    return _ACTS[name](**kwargs)


class ConvNormAct(nn.Sequential):
    """3D conv (or transposed conv), then optional norm, activation and dropout.

    ``(B, in_channels, X, Y, Z) -> (B, out_channels, X', Y', Z')``: odd kernels are zero-padded to keep
    the size at stride 1; ``kernel_size=stride=2`` halves it (``transposed=True``: doubles it).
    Submodules are named ``conv``, ``norm``, ``act``, ``drop``. The conv has no bias when a norm
    follows (the norm's mean subtraction would cancel it).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        norm: LayerSpec = None,
        act: LayerSpec = None,
        dropout: float = 0.0,
        transposed: bool = False,
    ) -> None:
        super().__init__()
        norm_layer = get_norm(norm, out_channels)
        conv = nn.ConvTranspose3d if transposed else nn.Conv3d
        padding = 0 if transposed else (kernel_size - 1) // 2
        self.add_module(
            "conv", conv(in_channels, out_channels, kernel_size, stride, padding, bias=norm_layer is None)
        )
        for name, layer in (("norm", norm_layer), ("act", get_act(act))):
            if layer is not None:
                self.add_module(name, layer)
        if dropout:
            self.add_module("drop", nn.Dropout(dropout))


def check_spatial_size(x: torch.Tensor, multiple: int, name: str, in_channels: int) -> None:
    """Raise a one-line ValueError unless ``x`` is ``(B, in_channels, X, Y, Z)`` with sizes divisible by ``multiple``."""
    if x.dim() != 5 or x.shape[1] != in_channels:
        raise ValueError(f"{name} expects (B, {in_channels}, X, Y, Z), got {tuple(x.shape)}")
    sizes = tuple(x.shape[2:])
    if any(s % multiple for s in sizes):
        raise ValueError(
            f"{name} needs every spatial size to be a multiple of {multiple}, got {sizes}: "
            f"use a patch size like {max(multiple, 32 // multiple * multiple)} or pad the input"
        )
