"""Inference-only rewrites of a trained generator: fold eval-mode norms into the preceding conv.

In eval mode ``BatchRenorm3d`` (and ``nn.BatchNorm3d``) is a per-channel affine map
``y = scale * x + shift`` with ``scale = weight / sqrt(running_var + eps)`` and
``shift = bias - running_mean * scale``, so ``norm(conv(x))`` is one conv with scaled weights
and a bias: the norm's pass over memory disappears. The result is a separate copy; the
original module, its ``state_dict`` keys and its training behaviour are untouched.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from models.dense_unet import DenseUNet, _DenseBlock
from models.layers import BatchRenorm3d, ConvNormAct, check_spatial_size

_CONVS = (nn.Conv3d, nn.ConvTranspose3d)


def _affine(norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(scale, shift), each (C,), of an eval-mode norm, or None when it is not a fixed affine map."""
    if isinstance(norm, BatchRenorm3d) or (
        isinstance(norm, nn.BatchNorm3d) and norm.track_running_stats and norm.running_var is not None
    ):
        scale = (norm.running_var.double() + norm.eps).rsqrt()
        if norm.weight is not None:
            scale = scale * norm.weight.double()
        shift = -norm.running_mean.double() * scale
        if norm.bias is not None:
            shift = shift + norm.bias.double()
        return scale, shift
    return None


@torch.no_grad()
def fold_conv_norm(conv: nn.Module, norm: nn.Module) -> bool:
    """Fold an eval-mode ``norm`` into ``conv`` (in place); False, and nothing changed, when it cannot."""
    affine = _affine(norm) if isinstance(conv, _CONVS) and conv.groups == 1 else None
    if affine is None:
        return False
    scale, shift = affine
    shape = [1] * conv.weight.dim()
    shape[1 if isinstance(conv, nn.ConvTranspose3d) else 0] = -1  # output-channel axis of the weight
    weight = conv.weight.double() * scale.view(shape)
    bias = shift if conv.bias is None else shift + scale * conv.bias.double()
    conv.weight.copy_(weight.to(conv.weight.dtype))
    conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)
    return True


def fold_norms(net: nn.Module, inplace_act: bool = True) -> nn.Module:
    """An eval-mode, frozen copy of ``net`` with every ``ConvNormAct`` norm folded into its conv.

    Args:
        net: a generator (any module built from ``ConvNormAct`` blocks; others are copied as they are).
        inplace_act: make the ELU/ReLU/LeakyReLU of ``ConvNormAct`` blocks in place (they act on a fresh
            conv or norm output).

    Returns:
        A deep copy in eval mode without gradients: ``(B, C, X, Y, Z) -> (B, C', X, Y, Z)`` as ``net``
        in eval mode, equal up to float rounding (about 1e-6 relative).

    Example:
        >>> from models.dense_unet import DenseUNet
        >>> net = DenseUNet(features=4, layers_per_block=2).eval()
        >>> x = torch.randn(1, 1, 32, 32, 32)
        >>> bool(torch.allclose(fold_norms(net)(x), net(x), atol=1e-4))
        True
    """
    fused = copy.deepcopy(net).eval().requires_grad_(False)
    for module in fused.modules():
        if not isinstance(module, ConvNormAct):
            continue
        if "norm" in module._modules and fold_conv_norm(module.conv, module.norm):
            module.norm = nn.Identity()
        act = module._modules.get("act")
        if inplace_act and isinstance(act, (nn.ELU, nn.ReLU, nn.LeakyReLU)):
            act.inplace = True
    return fused


def _pointwise(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1x1 conv as one GEMM on voxel-major data: ``x`` (N, C_in), rows may be strided -> (N, C_out)."""
    return F.linear(x, conv.weight.view(conv.out_channels, -1), conv.bias)


def _activate(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    act = block._modules.get("act")
    return act(x) if act is not None else x


class FastDenseUNet(nn.Module):
    """Inference-only DenseUNet: norms folded, channels-last data, dense blocks without repeated concatenation.

    ``DenseUNet`` concatenates its growing feature stack at every dense layer (a copy of all earlier
    features per layer) and, on the CPU, channels-last concatenation is a slow interleaving copy.
    Here each dense block writes into one preallocated voxel-major buffer ``(B, X, Y, Z, C_total)``:
    the 1x1x1 bottleneck reads the first ``c`` channels of it as a strided matrix (one GEMM, no copy)
    and the 3x3x3 conv's new features are written once into their channel range. Numerically the
    same network as ``fold_norms(net)`` (float rounding only).

    Args:
        net: a ``DenseUNet`` whose norms fold (batch renorm / batch norm); it is copied, not changed.

    Example:
        >>> net = DenseUNet(features=4, layers_per_block=2).eval()
        >>> x = torch.randn(2, 1, 32, 32, 32)
        >>> bool(torch.allclose(FastDenseUNet(net)(x), net(x), atol=1e-4))
        True
    """

    def __init__(self, net: DenseUNet) -> None:
        super().__init__()
        self.net = fold_norms(net).to(memory_format=torch.channels_last_3d)
        if not self.supports(self.net):
            raise ValueError("FastDenseUNet needs a DenseUNet whose norms fold into the convs (batchrenorm, batch)")

    @staticmethod
    def supports(net: nn.Module) -> bool:
        """True when ``net`` (already folded) is a DenseUNet with no remaining norms and 1x1x1 bottlenecks."""
        if not isinstance(net, DenseUNet):
            return False
        blocks = [m for m in net.modules() if isinstance(m, ConvNormAct)]
        pointwise = all(layer.bottleneck.conv.kernel_size == (1, 1, 1)
                        for m in net.modules() if isinstance(m, _DenseBlock) for layer in m)
        return pointwise and all("norm" not in b._modules or isinstance(b.norm, nn.Identity) for b in blocks)

    def _block(self, block: _DenseBlock, parts: list[torch.Tensor]) -> torch.Tensor:
        """Run a dense block on the channel concatenation of ``parts`` (each (B, C_i, X, Y, Z)).

        Returns:
            (B, C_out, X, Y, Z) channels-last view of the buffer (only the new features unless keep_input).
        """
        b, _, *size = parts[0].shape
        layers = list(block)
        growth = layers[0].conv.conv.out_channels
        total = block.in_channels + len(layers) * growth
        buffer = torch.empty(b, *size, total, dtype=parts[0].dtype, device=parts[0].device)
        c = 0
        for part in parts:
            buffer[..., c : c + part.shape[1]] = part.permute(0, 2, 3, 4, 1)
            c += part.shape[1]
        rows = buffer.view(-1, total)
        for layer in layers:
            hidden = _activate(layer.bottleneck, _pointwise(layer.bottleneck.conv, rows[:, :c]))
            hidden = hidden.view(b, *size, -1).permute(0, 4, 1, 2, 3)  # channels-last (B, C, X, Y, Z)
            new = layer.conv(hidden)  # 3x3x3 conv (+ act; dropout is off in eval)
            buffer[..., c : c + growth] = new.permute(0, 2, 3, 4, 1)
            c += growth
        out = buffer.permute(0, 4, 1, 2, 3)
        return out if block.keep_input else out[:, block.in_channels :]

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, X, Y, Z)`` -> ``(B, out_channels, X, Y, Z)`` (channels-last memory), as DenseUNet."""
        net = self.net
        check_spatial_size(x, net.size_multiple, "DenseUNet", net.in_channels)
        h = net.stem(x.contiguous(memory_format=torch.channels_last_3d))
        skips = []
        for i in range(1, 5):
            h = self._block(net.features[f"block{i}"], [h])
            skips.append(h)
            h = net.features[f"down{i}"](h)
        h = self._block(net.features["block5"], [h])
        for i in range(6, 10):
            h = net.features[f"up{i}"](h.contiguous(memory_format=torch.channels_last_3d))
            h = self._block(net.features[f"block{i}"], [h, skips.pop()])
        b, _, *size = h.shape
        rows = h.permute(0, 2, 3, 4, 1).reshape(-1, h.shape[1])
        return _pointwise(net.head, rows).view(b, *size, -1).permute(0, 4, 1, 2, 3)


def fuse_for_inference(net: nn.Module) -> nn.Module:
    """The fastest exact inference copy of ``net``: ``FastDenseUNet`` when it applies, else ``fold_norms``.

    Args:
        net: any generator; it is copied, never changed.

    Returns:
        An eval-mode module without gradients mapping ``(B, C_in, X, Y, Z) -> (B, C_out, X, Y, Z)`` as
        ``net.eval()`` does, up to float rounding.
    """
    folded = fold_norms(net)
    return FastDenseUNet(net) if FastDenseUNet.supports(folded) else folded
