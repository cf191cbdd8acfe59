from __future__ import annotations

import math
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from inpaint.geometry import kept_indices, known_mask, slice_axis
from inpaint.interpolate import fill_missing
from inpaint.metrics import hfen, psnr, ssim, volume_metrics

SHARED_DATA = Path(
    os.environ.get(
        "INPAINT_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ds002748"
    )
)


def pair(shape=(30, 28, 26), seed=0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A smooth positive reference, a noisy estimate and an off-centre ball mask.

    The ball reaches the array border along the last axis and stays more than the filter radius
    away from it elsewhere, so both the border handling and the crop to the mask are exercised.
    """
    rng = np.random.default_rng(seed)
    ref = ndimage.gaussian_filter(rng.uniform(0, 1000, shape), 2) + 50 * rng.normal(size=shape) + 400
    x = ref + 30 * rng.normal(size=shape) + 10
    grid = np.indices(shape)
    centre = np.array(shape)[:, None, None, None] * np.array([0.4, 0.6, 0.2])[:, None, None, None]
    mask = ((grid - centre) ** 2).sum(0) < 7.5**2
    return x, ref, mask


def scipy_ssim(x: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    """PROTOCOL.md's SSIM written with scipy: Gaussian sigma 1.5 truncated to an 11^3 window."""
    c1, c2 = (0.01 * ref[mask].max()) ** 2, (0.03 * ref[mask].max()) ** 2

    def blur(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(a, 1.5, truncate=5 / 1.5, mode="nearest")

    mx, my = blur(x), blur(ref)
    vx, vy, cxy = blur(x * x) - mx**2, blur(ref * ref) - my**2, blur(x * ref) - mx * my
    ssim_map = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(ssim_map[mask].mean())


def scipy_hfen(x: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    def log(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_laplace(a, 1.5, truncate=7 / 1.5, mode="nearest")

    return float(np.linalg.norm((log(x) - log(ref))[mask]) / np.linalg.norm(log(ref)[mask]))


def test_identical_volumes():
    _, ref, mask = pair()
    ref_t, mask_t = torch.from_numpy(ref), torch.from_numpy(mask)
    assert psnr(ref_t, ref_t, mask_t) == math.inf
    assert ssim(ref_t, ref_t, mask_t) == 1.0
    assert hfen(ref_t, ref_t, mask_t) == 0.0
    known = known_mask(ref.shape[2], 5).view(1, 1, -1)
    assert volume_metrics(ref_t, ref_t, mask_t, known) == {
        "psnr": math.inf,
        "ssim": 1.0,
        "hfen": 0.0,
        "psnr_missing": math.inf,
    }


def test_psnr_is_the_protocol_formula():
    x, ref, mask = pair(seed=1)
    assert ref.max() > ref[mask].max()  # L is taken in the mask
    expected = 10 * np.log10(ref[mask].max() ** 2 / np.mean((x[mask] - ref[mask]) ** 2))
    assert psnr(torch.from_numpy(x), torch.from_numpy(ref), torch.from_numpy(mask)) == pytest.approx(
        expected, abs=1e-10
    )
    # float32 and TorchIO-style (1, X, Y, Z) tensors are accepted and computed in float64
    x32, ref32 = x.astype(np.float32), ref.astype(np.float32)
    diff = x32.astype(np.float64) - ref32.astype(np.float64)
    expected32 = 10 * np.log10(float(ref32[mask].max()) ** 2 / np.mean(diff[mask] ** 2))
    ours = psnr(*(torch.from_numpy(a)[None] for a in (x32, ref32, mask)))
    assert ours == pytest.approx(expected32, abs=1e-10)


def test_ssim_of_constant_volumes_is_the_hand_formula_with_l_from_the_mask():
    a, b = 100.0, 160.0
    ref = torch.full((30, 30, 30), a, dtype=torch.float64)
    ref[15, 15, 15] = 5000.0  # bright voxel outside the mask: L = max(ref[mask]) = a, not 5000
    x = torch.full_like(ref, b)
    mask = torch.zeros_like(ref, dtype=torch.bool)
    mask[2:8, 2:8, 2:8] = mask[22:28, 22:28, 22:28] = True  # every 11^3 window misses it: sigmas are 0
    c1 = (0.01 * a) ** 2
    assert ssim(x, ref, mask) == pytest.approx((2 * a * b + c1) / (a**2 + b**2 + c1), abs=1e-9)
    assert ssim(x, ref, mask) == pytest.approx(scipy_ssim(x.numpy(), ref.numpy(), mask.numpy()), abs=1e-12)


def test_ssim_matches_scipy_gaussian_filter():
    x, ref, mask = pair(seed=2)
    ours = ssim(torch.from_numpy(x), torch.from_numpy(ref), torch.from_numpy(mask))
    assert ours == pytest.approx(scipy_ssim(x, ref, mask), abs=1e-10)
    assert 0.3 < ours < 0.999


def test_hfen_matches_scipy_gaussian_laplace():
    x, ref, mask = pair(seed=3)
    ours = hfen(torch.from_numpy(x), torch.from_numpy(ref), torch.from_numpy(mask))
    assert ours == pytest.approx(scipy_hfen(x, ref, mask), abs=1e-10)
    assert ours == pytest.approx(
        hfen(torch.from_numpy(3 * x), torch.from_numpy(3 * ref), torch.from_numpy(mask))
    )


def test_volume_metrics_missing_slices_and_known_layouts():
    x, ref, mask = pair(seed=4)
    tensors = [torch.from_numpy(a) for a in (x, ref, mask)]
    known_line = known_mask(ref.shape[1], 4, 1)
    full = known_line.view(1, -1, 1).expand(ref.shape)
    result = volume_metrics(*tensors, known_line.view(1, -1, 1))
    assert result == volume_metrics(*tensors, full[None].to(torch.uint8))
    for key, metric in (("psnr", psnr), ("ssim", ssim), ("hfen", hfen)):
        assert result[key] == pytest.approx(metric(*tensors), abs=1e-12)
    assert result["psnr_missing"] == pytest.approx(
        psnr(tensors[0], tensors[1], tensors[2] & ~full), abs=1e-12
    )
    assert math.isnan(volume_metrics(*tensors, torch.ones(1, dtype=torch.bool))["psnr_missing"])


def test_bad_inputs_are_clear_errors():
    x, ref, mask = (torch.from_numpy(a) for a in pair())
    with pytest.raises(ValueError, match="mask is empty"):
        psnr(x, ref, torch.zeros_like(mask))
    with pytest.raises(ValueError, match="shapes differ"):
        ssim(x[:-1], ref, mask)
    with pytest.raises(ValueError, match="positive data range"):
        hfen(x, -ref, mask)
    with pytest.raises(ValueError, match="must be a 3-D volume"):
        psnr(x[0], ref[0], mask[0])
    with pytest.raises(ValueError, match="does not broadcast"):
        volume_metrics(x, ref, mask, torch.ones(5, dtype=torch.bool))


# Golden values of PROTOCOL.md (interval 5, offset 0) and their tolerances.
GOLDEN = {
    ("sub-02", "linear"): (30.823, 0.8576, 0.5559, 29.854),
    ("sub-03", "linear"): (30.438, 0.8547, 0.5641, 29.467),
    ("sub-04", "linear"): (25.852, 0.8269, 0.5596, 24.883),
    ("sub-02", "cubic"): (30.763, 0.8587, 0.5630, 29.793),
    ("sub-03", "cubic"): (30.345, 0.8565, 0.5722, 29.375),
    ("sub-04", "cubic"): (25.755, 0.8278, 0.5689, 24.786),
}
TOLERANCE = {"psnr": 0.05, "ssim": 0.003, "hfen": 0.005, "psnr_missing": 0.05}


@pytest.fixture(scope="module")
def real_volumes() -> dict[str, tuple[torch.Tensor, int]]:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set INPAINT_SHARED_DATA to the ds002748 folder)")
    volumes = {}
    for subject in sorted({s for s, _ in GOLDEN}):
        image = nib.load(str(SHARED_DATA / f"{subject}_T1w.nii.gz"))
        reference = torch.from_numpy(np.asanyarray(image.dataobj).astype(np.float64))
        volumes[subject] = reference, slice_axis(image.affine, image.get_filename())
    return volumes


@pytest.mark.realdata
class TestGoldenTable:
    @pytest.mark.parametrize("subject, method", list(GOLDEN))
    def test_protocol_reproduces_the_golden_values(self, real_volumes, subject, method):
        reference, axis = real_volumes[subject]
        n = reference.shape[axis]
        filled = fill_missing(reference, axis, kept_indices(n, 5, 0), method)
        view = [1, 1, 1]
        view[axis] = n
        result = volume_metrics(filled, reference, reference > 0, known_mask(n, 5, 0).view(view))
        for (key, tolerance), golden in zip(TOLERANCE.items(), GOLDEN[subject, method], strict=True):
            assert result[key] == pytest.approx(golden, abs=tolerance), f"{subject} {method} {key}"


def test_seam_ratio_sees_steps_at_patch_edges_only():
    from inpaint.metrics import seam_ratio

    smooth = torch.linspace(0, 1, 40).view(40, 1, 1).expand(40, 30, 30).contiguous() + 1
    mask = torch.ones(40, 30, 30, dtype=torch.bool)
    borders = [[10, 20], [], []]
    assert seam_ratio(smooth, mask, borders) == pytest.approx(1.0, abs=1e-4)
    seams = smooth.clone()
    seams[20:] += 0.5  # a step where two patches meet
    assert seam_ratio(seams, mask, borders) > 10
    off_edge = smooth.clone()
    off_edge[25:] += 0.5  # the same step away from every patch edge lowers the ratio
    assert seam_ratio(off_edge, mask, borders) < 1
