"""SOUP-GAN (``KevinSR`` 0.1.20) on FOLDER/sparse.nii.gz -> FOLDER/output.nii.gz; run by ``inpaint.peers``.

``KevinSR.SOUP_GAN(stack, factor, prep_type=1)``: the thin-to-thin model, slices on the last axis, intensities
rescaled by the package to [0, 10000] (we map them back); it upsamples the slice axis with ``scipy.ndimage.zoom``
(corners aligned) before its network, so the output spans the first to the last acquired slice. The package looks
for its models in the working directory and downloads any that is missing: it runs here in a scratch folder with its
own ``Thin-to-thin`` linked in and an empty ``Thick-to-thin`` (never loaded with ``prep_type=1``), so nothing is
fetched.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from adapter_common import fail, read_request, stretched_affine, write_output  # noqa: E402

SCALE = 10000.0  # KevinSR's rescale_img maximum


def main(folder: Path) -> int:
    request, data, affine, axis = read_request(folder)
    if request["thick"]:
        fail("SOUP-GAN's thick-to-thin model is downloaded at run time by the package: not available offline")
    import tensorflow as tf  # imported only here

    tf.config.threading.set_intra_op_parallelism_threads(int(request.get("threads", 2)))
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import KevinSR
    from KevinSR import SOUP_GAN

    models = Path(KevinSR.__file__).resolve().parent
    if not (models / "Thin-to-thin" / "saved_model.pb").is_file():
        fail(f"{models / 'Thin-to-thin' / 'saved_model.pb'} is missing (the sdist ships it); reinstall KevinSR==0.1.20")
    stack = np.moveaxis(data, axis, -1)
    low, high = float(stack.min()), float(stack.max())
    here = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="soup_gan_") as work:
        os.symlink(models / "Thin-to-thin", Path(work) / "Thin-to-thin")
        (Path(work) / "Thick-to-thin").mkdir()
        os.chdir(work)
        try:
            out = SOUP_GAN(stack, int(request["interval"]), prep_type=1)
        finally:
            os.chdir(here)
    out = np.asarray(out, dtype=np.float64) / SCALE * (high - low) + low
    write_output(folder, np.moveaxis(out, -1, axis), stretched_affine(affine, axis, stack.shape[-1], out.shape[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
