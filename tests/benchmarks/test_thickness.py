"""benchmarks.thickness: the cubes where DiReCT and the distance thickness are compared."""

from __future__ import annotations

import numpy as np

from benchmarks.thickness import cubes


def test_cubes_lie_inside_the_volume_and_are_centred_on_grey_matter():
    gm = np.zeros((40, 50, 30), bool)
    gm[5:35, 20:22, 10:20] = True
    found = cubes(gm, 5, 16, seed=0)
    assert len(found) == 5 and found == cubes(gm, 5, 16, seed=0)
    for cube in found:
        assert all(0 <= s.start and s.stop <= n and s.stop - s.start == 16 for s, n in zip(cube, gm.shape, strict=True))
        assert gm[tuple(s.start + 8 for s in cube)]
