"""The generator contract, for every registered full-resolution generator (MONAI test_basic_unet.py style).

Acquired-slice generators (``grid = "acquired"``) have their own contract: tests/models/test_slice_resnet.py.
"""

from __future__ import annotations

import pytest
import torch

from models import GENERATORS, acquired_grid
from models.dense_unet import DenseUNet, _DenseBlock
from models.summary import main, measure
from models.unet3d import UNet3D

# Small widths so that every test runs in well under a second on a CPU; every generator needs one.
SMALL = {
    "dense_unet": {"features": 4, "layers_per_block": 2},
    "linear": {},
    "unet3d": {"features": (4, 8, 16, 32, 64)},
}
FULL = [name for name in GENERATORS.names() if not acquired_grid(name)]
TRAINABLE = [name for name in FULL if name != "linear"]

CASES = []
for _name in FULL:
    _kw = SMALL.get(_name, {})
    CASES += [
        (_name, _kw, (2, 1, 32, 32, 32), (2, 1, 32, 32, 32)),
        (_name, {**_kw, "in_channels": 2}, (1, 2, 16, 32, 48), (1, 1, 16, 32, 48)),
    ]


def test_every_full_resolution_generator_has_a_small_config():
    assert set(FULL) == set(SMALL) and "slice_resnet" not in FULL


@pytest.mark.parametrize(("name", "kwargs", "in_shape", "out_shape"), CASES)
def test_shape(name, kwargs, in_shape, out_shape):
    net = GENERATORS.build(name, **kwargs).eval()
    with torch.no_grad():
        out = net(torch.randn(in_shape))
    assert out.shape == out_shape
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", FULL)
def test_odd_size_works_or_says_what_to_do(name):
    net = GENERATORS.build(name, **SMALL[name]).eval()
    assert isinstance(type(net).size_multiple, int)
    x = torch.randn(2, 1, 33, 34, 35)
    if net.size_multiple == 1:
        assert net(x).shape == (2, 1, 33, 34, 35)
        return
    with pytest.raises(
        ValueError, match=rf"multiple of {net.size_multiple}, got \(33, 34, 35\): use a patch size"
    ):
        net(x)


@pytest.mark.parametrize("name", TRAINABLE)
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    net = GENERATORS.build(name, **SMALL[name]).train()
    x, target = torch.randn(2, 1, 32, 32, 32), torch.randn(2, 1, 32, 32, 32)
    (net(x) - target).square().mean().backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead


def test_linear_is_the_input_and_has_no_parameters():
    net = GENERATORS.build("linear", in_channels=2)
    x = torch.randn(1, 2, 5, 6, 7)
    assert list(net.parameters()) == []
    torch.testing.assert_close(net(x), x[:, :1])


def test_registry_errors_name_the_choices():
    with pytest.raises(KeyError, match="dense_unet, linear, slice_resnet, unet3d"):
        GENERATORS.get("densenet")
    with pytest.raises(ValueError, match=r"unknown argument\(s\) growth.*valid: .*layers_per_block"):
        GENERATORS.build("dense_unet", growth=8)
    assert GENERATORS.get("dense_unet") is DenseUNet and GENERATORS.get("unet3d") is UNet3D


def test_dense_blocks_follow_eq_1():
    net = DenseUNet(features=4, layers_per_block=3, growth_scale=2.0)
    blocks = {n: m for n, m in net.features.items() if isinstance(m, _DenseBlock)}
    assert list(blocks) == [f"block{i}" for i in range(1, 10)]
    growths = {n: b.layer1.conv.conv.out_channels for n, b in blocks.items()}
    assert list(growths.values()) == [4, 8, 16, 32, 64, 32, 16, 8, 4]  # features * growth_scale**level
    for name, block in blocks.items():
        for i, layer in enumerate(block.children()):  # layer i sees the block input and i earlier outputs
            assert layer.bottleneck.conv.in_channels == block.in_channels + i * growths[name]
            assert layer.bottleneck.conv.out_channels == 4 * growths[name]  # bn_size * growth
        x = torch.randn(2, block.in_channels, 2, 2, 2)
        assert block(x).shape[1] == block.out_channels
    assert blocks["block1"].out_channels == 4 + 3 * 4  # encoder blocks keep their input
    assert blocks["block6"].out_channels == 3 * 32  # blocks 5-8 pass on only their new features
    assert blocks["block9"].in_channels == blocks["block8"].out_channels + blocks["block1"].out_channels
    assert "features.block1.layer1.bottleneck.conv.weight" in net.state_dict()
    assert "features.block9.layer3.conv.norm.running_var" in net.state_dict()


def test_dense_unet_layer_order_and_options():
    layer = DenseUNet(features=4, layers_per_block=1).features.block1.layer1
    assert [type(m).__name__ for m in layer.modules()][2:] == [
        "Conv3d",
        "BatchRenorm3d",
        "ELU",
        "ConvNormAct",
        "Conv3d",
        "BatchRenorm3d",
        "ELU",
    ]
    net = DenseUNet(features=4, layers_per_block=2, upsample_new_only=False, norm="batch", act="relu").eval()
    assert net(torch.randn(1, 1, 16, 16, 16)).shape == (1, 1, 16, 16, 16)


def test_unet3d_options():
    net = UNet3D(features=(4, 8, 16), norm="batch", dropout=0.5)
    assert net.size_multiple == 4
    assert net(torch.randn(2, 1, 8, 12, 16)).shape == (2, 1, 8, 12, 16)
    assert "encoder.level3.conv2.norm.running_mean" in net.state_dict()
    assert UNet3D(features=(4, 8)).encoder.level1.conv1.conv.bias is not None  # no norm: biased convs
    with pytest.raises(ValueError, match="at least 2"):
        UNet3D(features=(4,))


def test_paper_sizes():
    with torch.device("meta"):  # built, never run: no memory, no time
        dense, unet = DenseUNet(), UNet3D()
    dense_params = sum(p.numel() for p in dense.parameters())
    unet_params = sum(p.numel() for p in unet.parameters())
    assert 1e6 < dense_params <= 10e6
    assert 85e6 < unet_params < 95e6  # the 2D U-Net's ~31 M, with 3x3x3 instead of 3x3 kernels
    assert len([m for m in dense.modules() if type(m).__name__ == "_DenseLayer"]) == 45  # 9 blocks x 5


def test_summary_counts_flops():
    params, flops = measure("dense_unet")
    assert 20e9 < flops < 40e9 and params < 10e6  # ~28 GFLOP per 32^3 patch
    assert measure("linear") == (0, 0)
    params, flops = measure("slice_resnet")  # per 32^3 of output at interval 5: a fraction of the DenseUNet's
    assert 300e3 < params < 450e3 and 2e9 < flops < 10e9
    assert measure("unet3d", {"features": (4, 8, 16, 32, 64)}, patch_size=16)[1] > 0


def test_summary_cli(capsys):
    main([])
    out = capsys.readouterr().out
    assert all(name in out for name in ("dense_unet", "unet3d", "linear", "GFLOP per 32^3 patch"))
    main(["--generator", "unet3d", "features=(4,8,16)", "norm=batch"])
    assert "features=(4, 8, 16) norm=batch" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--generator", "dense_unet", "growth=8"])
