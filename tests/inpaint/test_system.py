from __future__ import annotations

import pytest
import torch
import torchio as tio

from inpaint.system import InpaintingModule

SMALL = {"name": "dense_unet", "features": 4, "layers_per_block": 2}


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 1, 32, 32, 32, generator=g)
    known = torch.zeros_like(x)
    known[..., ::5] = 1
    return x, known


def test_residual_generator_starts_exactly_at_the_interpolation():
    module = InpaintingModule(SMALL, model={"residual": True}).eval()
    x, known = inputs()
    torch.testing.assert_close(module(x, known), x)
    plain = InpaintingModule(SMALL).eval()
    assert not torch.allclose(plain(x, known), x)


def test_data_consistency_copies_acquired_slices():
    module = InpaintingModule(SMALL, model={"data_consistency": True}).eval()
    x, known = inputs(1)
    out = module(x, known)
    torch.testing.assert_close(out[..., ::5], x[..., ::5], rtol=0, atol=0)
    assert not torch.allclose(out[..., 1::5], x[..., 1::5])


def test_known_channel_feeds_a_second_input_channel():
    module = InpaintingModule(SMALL, model={"known_channel": True})
    assert module.generator.stem.conv.in_channels == 2
    x, known = inputs()
    assert module(x, known).shape == x.shape
    with pytest.raises(ValueError, match="model.known_channel"):
        InpaintingModule({**SMALL, "in_channels": 1}, model={"known_channel": True})


def test_loss_terms_register_once():
    module = InpaintingModule(SMALL)
    module.add_loss_term("extra", lambda p, t, b: (p - t).pow(2).mean(), 0.5)
    with pytest.raises(ValueError, match="registered twice"):
        module.add_loss_term("extra", lambda p, t, b: p.sum(), 1.0)


def test_unknown_generator_lists_the_choices():
    with pytest.raises(KeyError, match="dense_unet, linear, slice_resnet, unet3d"):
        InpaintingModule({"name": "transformer"})


def test_inference_can_switch_off_the_data_consistency_a_model_was_trained_with():
    torch.manual_seed(0)
    module = InpaintingModule(SMALL, model={"data_consistency": True}).eval()
    x = torch.rand(1, 1, 32, 32, 32)
    known = torch.zeros_like(x)
    known[..., ::4] = 1
    mask = torch.ones_like(x)
    on, off = (module.predict_volume(x, known, mask, data_consistency=dc) for dc in (True, False))
    torch.testing.assert_close(on[0][..., ::4], x[0, 0][..., ::4])
    assert not torch.allclose(off[0][..., ::4], x[0, 0][..., ::4])
    torch.testing.assert_close(on[0][..., 1::4], off[0][..., 1::4])  # missing slices are the network's either way


def test_acquired_grid_loss_counts_each_patch_alike_and_only_its_missing_slices():
    from inpaint.constants import ACQUIRED, GAPS, INTERVAL, THICK

    module = InpaintingModule({"name": "slice_resnet", "features": 4, "blocks": 1, "head_features": 4})
    slices = torch.zeros(2, 1, 4, 4, 3)
    gaps = torch.zeros(2, 8, 4, 4, 3)
    gaps[0, 1:2] = 1.0  # interval 2: its one missing slot per gap is off by 1
    gaps[1, 1:5] = 3.0  # interval 5: its four missing slots are off by 3
    gaps[:, 0] = 100.0  # the acquired positions (thin slices): never a target
    gaps[:, :, ..., -1] = 100.0  # the last slice's gap leaves the patch: never a target
    gaps[0, 2:] = gaps[1, 5:] = 100.0  # beyond each interval
    batch = {ACQUIRED: {tio.DATA: slices}, GAPS: {tio.DATA: gaps}, INTERVAL: torch.tensor([2, 5]),
             THICK: torch.tensor([False, False])}
    assert module.acquired_step(batch)["l1"].item() == pytest.approx((1.0 + 3.0) / 2)  # an untrained net is linear (0)
