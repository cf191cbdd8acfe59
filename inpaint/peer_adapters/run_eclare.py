"""ECLARE (``eclare`` 1.0.1) on FOLDER/sparse.nii.gz -> FOLDER/output.nii.gz; run by ``inpaint.peers``.

``run-eclare`` trains a WDSR network on the volume's own in-plane patches and writes the volume with the slice axis
upsampled by the slice separation, with its own affine. The slice profile is given, not estimated (ESPRESO
skipped), as a Gaussian FWHM in in-plane voxels: a thin slice is one reference slice thick (the separation / the
interval), a thick one spans the whole separation. ``n_patches`` (the training budget: the default of 1 M is a GPU job), ``batch_size`` and the CPU
threads come from ``request.json``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from adapter_common import read_request, write_output  # noqa: E402


def main(folder: Path) -> int:
    request, _, affine, axis = read_request(folder)
    import torch  # the peer's own torch
    from eclare.main import main as run_eclare

    torch.set_num_threads(int(request.get("threads", 2)))
    sizes = np.linalg.norm(affine[:3, :3], axis=0)
    separation = sizes[axis] / min(s for a, s in enumerate(sizes) if a != axis)
    # FWHM in in-plane voxels: a slab spans the separation; a thin slice is one reference slice (separation / interval)
    thickness = separation if request["thick"] else separation / int(request["interval"])
    with tempfile.TemporaryDirectory(prefix="eclare_") as work:
        run_eclare(["--in-fpath", str(folder / "sparse.nii.gz"), "--out-dir", work, "--gpu-id", "-1",
                    "--n-patches", str(request["n_patches"]), "--batch-size", str(request["batch_size"]),
                    "--relative-slice-thickness", f"{thickness:.4f}"])
        found = sorted(Path(work).glob("*_eclare.nii*"))
        if not found:
            print("error: run-eclare wrote no *_eclare.nii.gz", file=sys.stderr)
            return 2
        image = nib.load(str(found[0]))
        write_output(folder, np.asanyarray(image.dataobj), image.affine)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
