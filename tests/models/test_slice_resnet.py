"""SliceResNet: the acquired-slice generator's contract (shapes, start at linear, any interval, gradients)."""

from __future__ import annotations

import pytest
import torch

from inpaint.inference import infer_acquired, receptive_radius
from models import GENERATORS
from models.slice_resnet import SliceResNet, depth_to_space, space_to_depth

SMALL = {"features": 8, "blocks": 1, "head_features": 8}


def trained_like(net: SliceResNet) -> SliceResNet:
    """Random non-zero output weights, as after training (the output layer starts at zero)."""
    torch.manual_seed(1)
    torch.nn.init.normal_(net.readout[-1].weight, std=0.1)
    return net


def test_registered_as_an_acquired_slice_generator():
    net = GENERATORS.build("slice_resnet", **SMALL)
    assert isinstance(net, SliceResNet) and net.grid == "acquired"


@pytest.mark.parametrize("gap", [2.0, 5.0, 8.0, 4.4])
def test_one_network_serves_any_gap_and_starts_as_linear_interpolation(gap):
    net = SliceResNet(**SMALL).eval()
    slices = torch.randn(2, 1, 12, 10, 6)
    t = torch.tensor([[0.0, 0.25, 0.5, 0.75]] * 2)
    out = net(slices, torch.full((2,), gap), t)
    assert out.shape == (2, 1, 12, 10, 6, 4)
    for s, frac in enumerate(t[0].tolist()):
        expected = (1 - frac) * slices[..., :5] + frac * slices[..., 1:]
        torch.testing.assert_close(out[..., :5, s], expected)


def test_the_correction_depends_on_position_and_gap():
    net = trained_like(SliceResNet(**SMALL)).eval()
    slices = torch.randn(1, 1, 8, 8, 5)
    a = net(slices, torch.tensor([5.0]), torch.tensor([[0.2, 0.4]]))
    b = net(slices, torch.tensor([3.0]), torch.tensor([[0.2, 0.4]]))
    assert not torch.allclose(a[..., 0], a[..., 1]) and not torch.allclose(a, b)


def test_every_parameter_gets_a_gradient():
    net = trained_like(SliceResNet(**SMALL)).train()
    out = net(torch.randn(2, 1, 8, 8, 5), torch.tensor([5.0, 3.0]), torch.tensor([[0.2, 0.4], [1 / 3, 2 / 3]]))
    out.square().mean().backward()
    assert not [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]


def test_kernel_must_be_three_odd_sizes():
    with pytest.raises(ValueError, match="3 odd sizes"):
        SliceResNet(kernel=(3, 3, 2))
    assert SliceResNet(kernel=(3, 3, 1), **SMALL)(torch.randn(1, 1, 6, 6, 4), torch.tensor([2.0]),
                                                  torch.tensor([[0.5]])).shape == (1, 1, 6, 6, 4, 1)


def test_whole_volume_inference_fills_every_gap_and_tiles_give_the_same_answer():
    net = trained_like(SliceResNet(**SMALL)).eval()
    volume, known = torch.randn(30, 28, 21), torch.zeros(30, 28, 21)
    known[..., ::5] = 1
    mask = torch.zeros_like(volume)
    mask[5:25, 4:24, :] = 1
    whole = infer_acquired(net, volume, known, mask)[0]
    tiled = infer_acquired(net, volume, known, mask, tile=7)[0]
    torch.testing.assert_close(whole, tiled, atol=1e-5, rtol=1e-5)
    assert torch.equal(whole[..., ::5], volume[..., ::5])  # thin slices: acquired slices exact
    halo = receptive_radius(net)
    assert halo == 4 and torch.equal(whole[:5 - halo], volume[:5 - halo])  # far from the brain: the input
    assert not torch.allclose(whole[10:20, 10:20, 1:4], volume[10:20, 10:20, 1:4])
    with torch.no_grad():
        direct = net(volume[None, None, ..., ::5], torch.tensor([5.0]), torch.tensor([[0.4]]))[0, 0, ..., 0]
    torch.testing.assert_close(whole[10:20, 10:20, 2:18:5], direct[10:20, 10:20, :4])


def test_thick_slice_models_also_predict_the_acquired_positions():
    net = trained_like(SliceResNet(**SMALL)).eval()
    volume, known = torch.randn(16, 16, 21), torch.zeros(16, 16, 21)
    known[..., ::5] = 1
    mask = torch.ones_like(volume)
    thin = infer_acquired(net, volume, known, mask)[0]
    thick = infer_acquired(net, volume, known, mask, predict_acquired=True, data_consistency=False)[0]
    assert torch.equal(thin[..., ::5], volume[..., ::5]) and not torch.allclose(thick[..., ::5], volume[..., ::5])
    torch.testing.assert_close(thick[..., 1::5], thin[..., 1::5])  # the missing slices are the same either way


def test_space_to_depth_is_undone_by_depth_to_space():
    x = torch.randn(2, 3, 8, 6, 5)
    folded = space_to_depth(x, 2)
    assert folded.shape == (2, 12, 4, 3, 5)
    torch.testing.assert_close(folded[:, :4, 1, 2], x[:, 0, 2:4, 4:6].reshape(2, 4, 5))  # one cell's 4 voxels
    assert torch.equal(depth_to_space(folded, 2), x)


@pytest.mark.parametrize("size", [(12, 10), (11, 9)])  # odd sizes are padded to the cell grid and cropped back
def test_an_unshuffled_trunk_keeps_the_contract(size):
    net = SliceResNet(**SMALL, unshuffle=2).eval()
    slices = torch.randn(1, 1, *size, 5)
    out = net(slices, torch.tensor([5.0]), torch.tensor([[0.0, 0.4]]))
    assert out.shape == (1, 1, *size, 5, 2)
    torch.testing.assert_close(out[..., :4, 1], 0.6 * slices[..., :4] + 0.4 * slices[..., 1:])  # starts as linear
    trained = trained_like(SliceResNet(**SMALL, unshuffle=2)).train()
    trained(slices, torch.tensor([5.0]), torch.tensor([[0.4]])).square().mean().backward()
    assert not [n for n, p in trained.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    with pytest.raises(ValueError, match="unshuffle"):
        SliceResNet(unshuffle=0)


def test_an_unshuffled_trunk_reaches_no_further_than_its_radius_and_tiles_agree():
    net = trained_like(SliceResNet(**SMALL, unshuffle=2)).eval()
    radius = receptive_radius(net)
    assert radius == net.receptive_radius and radius % 2 == 0 and radius > receptive_radius(SliceResNet(**SMALL))
    slices = torch.randn(1, 1, 40, 8, 5)
    changed = slices.clone()
    changed[:, :, 39] += 5.0  # one in-plane row at the far edge
    gap, t = torch.tensor([5.0]), torch.tensor([[0.4]])
    with torch.no_grad():
        a, b = net(slices, gap, t), net(changed, gap, t)
    differs = (a - b).abs().amax(dim=(0, 1, 3, 4, 5)) > 0
    assert differs[39] and not differs[: 39 - radius].any()  # nothing beyond the radius moves
    volume, known = torch.randn(30, 28, 21), torch.zeros(30, 28, 21)
    known[..., ::5] = 1
    mask = torch.zeros_like(volume)
    mask[5:25, 4:24, :] = 1
    torch.testing.assert_close(infer_acquired(net, volume, known, mask)[0],
                               infer_acquired(net, volume, known, mask, tile=7)[0], atol=1e-5, rtol=1e-5)
