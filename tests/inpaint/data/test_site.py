"""Site shifts of acquired-grid training patches: a shifted patch is the patch of a shifted volume."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from inpaint.config import AugmentConfig
from inpaint.data.site import SiteShift, blur_in_plane


def volume_patches(batch=3, size=12, slices=4, interval=3, seed=0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full-resolution patches (B, 1, P, P, K*interval) in normalised units with background, and their acquired slices
    (B, 1, P, P, K) and gap slots (B, interval, P, P, K) cut as inpaint.data.acquired cuts them."""
    g = torch.Generator().manual_seed(seed)
    full = torch.rand(batch, 1, size, size, slices * interval, generator=g) * 1.6 - 0.6
    full[:, :, :2] = -1.2  # a strip of background (u < 0)
    gaps = torch.stack([full[:, 0, :, :, m::interval] for m in range(interval)], dim=1)
    return full, full[..., ::interval], gaps


def test_acquired_and_missing_slices_are_shifted_alike():
    interval = 3
    full, slices, gaps = volume_patches(interval=interval)
    shift = SiteShift(**{**dataclasses.asdict(AugmentConfig()), "p": 1.0, "noise": 0.0})
    draws = shift.draw(full.shape[0], full.device, torch.Generator().manual_seed(1))
    assert draws.on.all() and (draws.blur > 0).all() and not torch.allclose(draws.gamma, torch.ones(3))
    got_slices, got_gaps = shift(slices, gaps, torch.full((3,), interval), draws=draws)
    z = torch.arange(full.shape[-1]).float().view(1, 1, -1)
    shifted = shift.apply(full, z, torch.full((3, 1, 1), float(full.shape[-1])), draws)
    torch.testing.assert_close(got_slices, shifted[..., ::interval])
    for m in range(interval):
        torch.testing.assert_close(got_gaps[:, m], shifted[:, 0, :, :, m::interval])
    assert (got_slices - slices).abs().max() > 0.05  # it did shift
    torch.testing.assert_close(shifted[:, :, :2], full[:, :, :2])  # the background is left as it is


def test_noise_and_the_chance_of_a_shift():
    full, slices, gaps = volume_patches(batch=64)
    interval = torch.full((64,), 3)
    quiet = SiteShift(p=1.0, gamma=0.0, bias=0.0, bias_gradient=0.0, noise=0.05, blur=0.0)
    got, _ = quiet(slices, gaps, interval, generator=torch.Generator().manual_seed(0))
    brain = (slices + 1) / 2 > 1e-3
    residual = ((got - slices) / 2)[brain]  # in u units
    assert 0.005 < residual.std() < 0.05 and ((got - slices)[~brain] == 0).all()
    half = SiteShift(**{**dataclasses.asdict(AugmentConfig()), "p": 0.5})
    got, _ = half(slices, gaps, interval, generator=torch.Generator().manual_seed(0))
    unchanged = (got == slices).flatten(1).all(1)
    assert 16 < int(unchanged.sum()) < 48  # about half the patches untouched
    assert SiteShift(p=0.0, gamma=0.5, bias=0.45, bias_gradient=0.2, noise=0.05, blur=0.8)(
        slices, gaps, interval)[1].equal(gaps)


def test_blur_in_plane_keeps_a_constant_and_each_patch_has_its_own_sigma():
    u = torch.zeros(2, 1, 9, 9, 3)
    u[:, :, 4, 4] = 1.0
    out = blur_in_plane(u, torch.tensor([0.0, 1.0]))
    assert out[0].equal(u[0]) and out[1, 0, 4, 4, 0] < 0.3 and float(out[1].sum()) == pytest.approx(float(u[1].sum()), rel=1e-4)
    assert torch.equal(out[..., 0], out[..., 1])  # along X and Y only
    flat = torch.full((2, 1, 9, 9, 3), 0.7)
    torch.testing.assert_close(blur_in_plane(flat, torch.tensor([0.5, 0.8])), flat)


def test_site_shifts_are_for_acquired_grid_generators_only():
    from inpaint.system import InpaintingModule

    with pytest.raises(ValueError, match="augment.p=0.5: site shifts apply to acquired-slice generators"):
        InpaintingModule({"name": "unet3d", "features": [4, 8, 16, 32, 64]}, augment={"p": 0.5})
    module = InpaintingModule({"name": "slice_resnet", "features": 4, "blocks": 1, "head_features": 8}, augment={"p": 0.5})
    assert module.site_shift is not None and module.site_shift.p == 0.5
