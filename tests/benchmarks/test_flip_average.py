"""benchmarks/flip_average.py: the flip-averaged fill is the mean of the mirrored passes."""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.flip_average import FlipAveraged, gains
from inpaint.checkpoint import load_module
from inpaint.restore import Restorer
from tests.conftest import phantom

AFFINE = np.array([[-1.0, 0, 0, 70.0], [0, 1.0, 0, -90.0], [0, 0, 1.0, -50.0], [0, 0, 0, 1]])


def test_a_left_right_average_is_the_mean_of_the_plain_and_the_mirrored_fill():
    module = load_module("pretrained")
    reference = torch.from_numpy(phantom(seed=2)).float()
    plain = Restorer(module)
    degraded = plain.degrade(reference, AFFINE)
    mirrored = plain.degrade(reference.flip(0), AFFINE)
    expected = (plain(degraded, affine=AFFINE) + plain(mirrored, affine=AFFINE).flip(0)) / 2
    averaged = FlipAveraged(module, [(), (0,)])(degraded, affine=AFFINE)
    torch.testing.assert_close(averaged, expected, atol=1e-3, rtol=1e-5)  # float32 of values ~1000
    assert FlipAveraged(module, [()])(degraded, affine=AFFINE).equal(plain(degraded, affine=AFFINE))
    result = gains(module, reference, AFFINE, "phantom")
    assert list(result) == ["plain", "left-right", "left-right + front-back"]
    assert all(np.isfinite(g) and s > 0 for g, s in result.values())
