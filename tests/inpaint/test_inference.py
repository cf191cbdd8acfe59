"""Whole-volume inference: aggregation, brain skipping, data consistency, errors, and the speed options."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from inpaint.inference import grid_locations, infer_volume, plan, tile_layout
from inpaint.system import InpaintingModule
from models.fuse import FastDenseUNet, fold_norms, fuse_for_inference


def identity(inputs: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    return inputs


def ramp(inputs: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """A patch function whose output depends on the position inside the patch: the local x index."""
    local = torch.arange(inputs.shape[2], dtype=inputs.dtype).view(1, 1, -1, 1, 1)
    return inputs * 0 + local


def ones(shape: tuple[int, int, int]) -> torch.Tensor:
    return torch.ones(shape)


def randomise_norms(net: nn.Module, seed: int = 0) -> nn.Module:
    """Give every norm non-trivial running statistics and affine parameters (as a trained net has)."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if hasattr(m, "running_var"):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
    return net.eval()


def test_identity_network_returns_the_input():
    x = torch.randn(56, 32, 32)  # two patches: every voxel is the mean of 1 or 2 equal values, exact in floats
    out = infer_volume(identity, x, torch.zeros_like(x), ones(x.shape), data_consistency=False)
    assert out.shape == (1, 56, 32, 32) and torch.equal(out[0], x)
    y = torch.randn(61, 40, 35)  # up to 3 x 2 x 2 overlaps: sums of 3+ equal floats round, so equal up to rounding
    out = infer_volume(identity, y, torch.zeros_like(y), ones(y.shape), data_consistency=False)
    assert torch.allclose(out[0], y, atol=1e-6)


def test_average_of_a_known_function():
    shape = (61, 40, 35)
    x = torch.zeros(shape)
    out = infer_volume(ramp, x, torch.zeros_like(x), ones(shape), data_consistency=False)[0]
    total, count = torch.zeros(shape), torch.zeros(shape)
    for x0, y0, z0, x1, y1, z1 in grid_locations(shape, 32, 8)[1].tolist():
        total[x0:x1, y0:y1, z0:z1] += torch.arange(32.0).view(-1, 1, 1)
        count[x0:x1, y0:y1, z0:z1] += 1
    assert torch.allclose(out, total / count, atol=1e-5)


def test_hann_differs_from_average_only_where_patches_overlap():
    shape = (56, 40, 32)
    x = torch.zeros(shape)
    args = (x, torch.zeros_like(x), ones(shape))
    average = infer_volume(ramp, *args, data_consistency=False)[0]
    hann = infer_volume(ramp, *args, aggregation="hann", data_consistency=False)[0]
    count = torch.zeros(shape)
    for x0, y0, z0, x1, y1, z1 in grid_locations(shape, 32, 8)[1].tolist():
        count[x0:x1, y0:y1, z0:z1] += 1
    differs = (hann - average).abs() > 1e-4
    assert differs.any() and not differs[count == 1].any()
    assert torch.equal(infer_volume(identity, torch.ones(shape), x, ones(shape), aggregation="hann")[0], torch.ones(shape))


def test_patches_outside_the_brain_never_reach_the_network():
    shape = (80, 80, 56)
    x = torch.randn(shape)
    mask = torch.zeros(shape)
    mask[5:10, 5:10, 5:10] = 1  # only the first patch of the grid contains brain
    seen: list[int] = []

    def counting(inputs: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        seen.append(inputs.shape[0])
        return inputs + 1

    out = infer_volume(counting, x, torch.zeros_like(x), mask, data_consistency=False)[0]
    in_brain = plan(mask)[4]
    assert sum(seen) == int(in_brain.sum()) == 1 and len(in_brain) == 3 * 3 * 2
    assert torch.allclose(out[32:], x[32:], atol=1e-6) and torch.allclose(out[:24, :24, :24], x[:24, :24, :24] + 1)


def test_data_consistency_copies_acquired_slices_exactly():
    shape = (40, 40, 40)
    x = torch.randn(shape)
    known = torch.zeros(shape, dtype=torch.uint8)
    known[..., ::5] = 1
    out = infer_volume(lambda v, k: v * 0.5 + 0.3, x, known, ones(shape))[0]
    assert torch.equal(out[known > 0], x[known > 0])
    assert torch.allclose(out[known == 0], x[known == 0] * 0.5 + 0.3, atol=1e-6)


def test_clear_errors():
    x = torch.zeros(20, 40, 40)
    with pytest.raises(ValueError, match=r"smaller than the inference patch"):
        infer_volume(identity, x, x, x + 1)
    with pytest.raises(ValueError, match="aggregation"):
        infer_volume(identity, torch.zeros(40, 40, 40), torch.zeros(40, 40, 40), ones((40, 40, 40)), aggregation="max")
    with pytest.raises(ValueError, match="multiple of 16"):
        tile_layout(ones((64, 64, 64)), 100, 8)
    with pytest.raises(ValueError, match="smaller than 16"):
        tile_layout(ones((64, 10, 64)), 64, 8)


def test_tile_layout_covers_the_brain_with_few_windows():
    mask = torch.zeros(178, 208, 152)
    mask[4:174, 4:204, 4:148] = 1
    region, window, _, locations, in_brain = plan(mask, tile=128)
    assert all(w % 16 == 0 and w <= 128 for w in window) and window == (96, 112, 80)
    assert len(locations) == 8 and in_brain.all()
    assert [(r.start, r.stop) for r in region] == [(0, 178), (0, 208), (0, 152)]
    small = torch.zeros(100, 100, 100)
    small[40:50, 40:50, 40:50] = 1  # a small brain: one window grown around it, inside the volume
    region, window = tile_layout(small, 96, 8)
    assert window == (32, 32, 32) and all(r.stop - r.start == 32 and 0 <= r.start for r in region)


def test_tile_equals_exact_for_a_pointwise_network_and_stays_close_for_a_dense_unet():
    torch.manual_seed(0)
    shape = (64, 72, 56)
    x = torch.randn(shape)
    args = (x, torch.zeros_like(x), ones(shape))
    pointwise = nn.Conv3d(1, 1, 1)  # receptive field 1: no border effects, so tiles change nothing
    with torch.no_grad():
        exact = infer_volume(lambda v, k: pointwise(v), *args)
        tiled = infer_volume(lambda v, k: pointwise(v), *args, tile=64)
    assert torch.allclose(tiled, exact, atol=1e-6)
    # a (random) DenseUNet sees more context in a tile than in a 32³ patch: close, not equal
    module = InpaintingModule({"name": "dense_unet", "features": 4, "layers_per_block": 2})
    randomise_norms(module.generator)
    exact = module.predict_volume(*(t[None, None] for t in args))
    tiled = module.predict_volume(*(t[None, None] for t in args), tile=64)
    assert tiled.shape == exact.shape and 0 < (tiled - exact).abs().mean() < 0.1 * exact.std()


@pytest.mark.parametrize("kwargs", [{"name": "dense_unet", "features": 4, "layers_per_block": 3},
                                    {"name": "dense_unet", "features": 4, "layers_per_block": 2,
                                     "upsample_new_only": False, "norm": "batch"},
                                    {"name": "unet3d", "features": (4, 8, 16), "norm": "batch"}])
def test_fused_inference_matches_the_module(kwargs):
    torch.manual_seed(0)
    module = InpaintingModule(kwargs, model={"known_channel": True, "residual": True})
    randomise_norms(module.generator)
    x = torch.randn(1, 1, 48, 40, 44)
    known = torch.zeros_like(x)
    known[..., ::5] = 1
    mask = torch.ones_like(x)
    reference = module.predict_volume(x, known, mask, fuse=False)
    assert torch.allclose(module.predict_volume(x, known, mask), reference, atol=1e-4)
    state = module.generator.state_dict()
    fused = fuse_for_inference(module.generator)
    assert isinstance(fused, FastDenseUNet) == (kwargs["name"] == "dense_unet")
    assert module.generator.state_dict().keys() == state.keys()  # the original is untouched
    assert all(torch.equal(v, state[k]) for k, v in module.generator.state_dict().items())
    bf16 = module.predict_volume(x, known, mask, bf16=True)  # CPU bf16 autocast: close, not equal
    assert (bf16 - reference).abs().mean() < 0.05 * reference.abs().mean() + 1e-3


def test_fold_norms_leaves_unfoldable_norms_and_training_uses_the_module():
    net = nn.Sequential()
    from models.layers import ConvNormAct

    net.add_module("block", ConvNormAct(1, 2, 3, norm="instance", act="elu"))
    folded = fold_norms(net)
    assert isinstance(folded.block.norm, nn.InstanceNorm3d) and not folded.training
    module = InpaintingModule({"name": "dense_unet", "features": 4, "layers_per_block": 1})
    assert module.train().inference_function() is module
    assert module.eval().inference_function() is not module
    assert InpaintingModule({"name": "linear"}).eval().inference_function() is not None


def test_patch_borders_are_the_grid_edges_inside_the_volume():
    from inpaint.inference import patch_borders

    borders = patch_borders((80, 32, 56), 32, 8)
    assert borders[1] == []  # one patch along this axis: no inner edge
    _, locations = grid_locations((80, 32, 56), 32, 8)
    starts = sorted(set(locations[:, 0].tolist()) - {0})
    assert starts and set(starts) <= set(borders[0]) and all(0 < b < 80 for b in borders[0])
