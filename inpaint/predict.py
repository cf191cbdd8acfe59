"""Restore dense volumes from sparse axial acquisitions, with a classical fill or a trained generator.

    python -m inpaint.predict sparse.nii.gz -o dense.nii.gz --checkpoint runs/.../best.ckpt
    python -m inpaint.predict sparse_folder/ -o dense_folder/ --method cubic
    python -m inpaint.predict full.nii.gz -o restored.nii.gz --method linear --simulate --interval 5

Any slice spacing s and in-plane spacing, along the voxel axis whose spacing stands out (any direction for
linear and cubic; axial only for a network, which refuses the others): the fill factor is ``N = round(s / t)`` for the output
spacing t (``--target-spacing``, else the checkpoint's slice spacing, else 1 mm). The output is float32,
by default isotropic at t, with voxel 0 at the first acquired slice's first voxel in world
coordinates; ``--grid input`` keeps the input's in-plane spacing and writes the ``(n - 1) N + 1``
slices at ``s / N`` with the ``n`` acquired slices at ``0, N, 2N, ...``, copied exactly unless data
consistency is off (``pretrained-thick``, whose thick slice is not a thin one, or ``--data-consistency off``) (``inpaint.grid``). A network
restores with the settings stored in its checkpoint (``inpaint.restore``); the flags you pass override
them, and the log says which were used.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from tqdm.auto import tqdm

from inpaint import provenance
from inpaint.checkpoint import load_module
from inpaint.data.degrade import Degraded
from inpaint.data.io import (
    WRITTEN_SUFFIXES,
    InputError,
    is_volume_file,
    read_volume,
    volume_stem,
    write_volume,
)
from inpaint.data.transforms import brain_mask
from inpaint.errors import EXIT_ERROR, report
from inpaint.geometry import (
    acquisition_plane,
    find_slice_axis,
    kept_indices,
    known_volume,
    slice_axis,
    slice_last_permutation,
    spacing_slice_last,
    sparse_axis,
    voxel_sizes,
)
from inpaint.grid import GRIDS, fill_factor, is_close, to_spacing
from inpaint.interpolate import METHODS, sparse_to_dense
from inpaint.metrics import volume_metrics
from inpaint.restore import SHOWN, Restorer, add_arguments, check_settings, overrides, trained_intervals
from inpaint.skull import bet_mask, head_signs, require_bet

AUTO_MASK = "auto"  # --mask auto: BET's brain mask (inpaint.skull.bet_mask)
log = logging.getLogger("inpaint")


def check_skull(volume: torch.Tensor, restorer: Restorer, affine: np.ndarray, axis: int, source: str) -> None:
    """Warn if the checkpoint learnt skull-stripped brains and this volume looks like a whole head (``inpaint.skull``)."""
    if not restorer.info.get("skull_stripped"):
        return
    signs = head_signs(volume.permute(*slice_last_permutation(axis)), spacing_slice_last(affine, axis))
    if signs:
        log.warning("%s: looks like a whole head (%s), but the checkpoint was trained on skull-stripped brains; pass "
                    "--mask BRAIN_MASK or --mask auto (BET; the network fills the brain, linear the rest) or skull-strip "
                    "the input (e.g. SynthStrip, HD-BET)", source, "; ".join(signs))


def output_spacing(restorer: Restorer, args: argparse.Namespace) -> float:
    """The output spacing t in mm: ``--target-spacing``, else the checkpoint's slice spacing, else 1 mm."""
    return args.target_spacing or (restorer.info.get("spacing") or [1.0])[-1]


def acquisition_axis(affine: np.ndarray, restorer: Restorer, source: str) -> int:
    """The voxel axis of the acquired slices: the one with the large spacing, whatever its direction.

    A classical fill works along any axis. A network learnt axial (S/I) slices: a sagittal, coronal or oblique
    acquisition is refused with a one-line error that names the axis and why.
    """
    sparse = sparse_axis(affine)
    if sparse is None:  # no axis stands out: the S/I one (fill_factor then says there is nothing to fill)
        return find_slice_axis(affine, source)
    if restorer.classical:
        return sparse
    zooms = voxel_sizes(affine)
    what = (f"its slices are stacked along voxel axis {sparse} ({nib.aff2axcodes(affine)[sparse]}, "
            f"{zooms[sparse]:.3g} mm apart against {max(np.delete(zooms, sparse)):.3g} mm in-plane)")
    try:
        axial = slice_axis(affine, source)
    except ValueError as error:  # e.g. an oblique S/I axis
        raise InputError(f"{error}; {what}: the networks learnt axial slices, fill it with --method linear or cubic") from None
    if axial != sparse:
        raise InputError(f"{source}: a {acquisition_plane(affine, sparse)} acquisition: {what}; the networks learnt "
                         "axial (S/I) slices and do not restore it: fill it with --method linear or cubic, or "
                         "reslice it to axial slices")
    return axial


def sparse_input(volume: torch.Tensor, mask: torch.Tensor | None, affine: np.ndarray, restorer: Restorer,
                 args: argparse.Namespace, source: str) -> tuple[Degraded, torch.Tensor | None, np.ndarray]:
    """A sparse acquisition (X, Y, K) on the fill grid: its linear fill, its brain mask's, the fill grid's affine."""
    axis = acquisition_axis(affine, restorer, source)
    target = output_spacing(restorer, args)
    slice_spacing = spacing_slice_last(affine, axis)[2]
    try:
        n = fill_factor(slice_spacing, target)
    except ValueError as error:
        raise InputError(f"{source}: {error}") from None
    if not is_close(slice_spacing / n, target):
        log.info("%s: slice spacing %.4g mm = %d x %.4g mm: %d-fold fill%s", source, slice_spacing, n,
                 slice_spacing / n, n, f", then resampled to {target:.4g} mm" if args.grid == "isotropic" else "")
    trained = [] if restorer.classical else trained_intervals(restorer.method)
    if trained and n not in trained:
        log.warning("%s: needs %d-fold upsampling; the checkpoint was trained at interval(s) %s", source, n,
                    ", ".join(map(str, trained)))
    try:
        dense = sparse_to_dense(volume, axis, n, "linear")
    except ValueError as error:
        raise InputError(f"{source}: {error}") from None
    dense_mask = None if mask is None else sparse_to_dense(mask.float(), axis, n, "linear") > 0.5
    kept = kept_indices(dense.shape[axis], n)
    fill_affine = np.array(affine, dtype=np.float64)
    fill_affine[:3, axis] /= n
    degraded = Degraded(dense, known_volume(tuple(dense.shape), axis, kept).bool(), axis, kept, n, 0)
    return degraded, dense_mask, fill_affine


def mask_option(text: str) -> Path | str:
    """``--mask``: a file, or ``auto``."""
    return AUTO_MASK if text == AUTO_MASK else Path(text)


def check_mask_grid(mask: Path, image: Path) -> None:
    """The mask file exists and lies on the image's grid: shape and affine (headers only: before any work)."""
    if not mask.is_file():
        raise InputError(f"{mask}: no such mask file; give the brain mask of {image.name} (or leave out --mask)")
    try:
        headers = [nib.load(str(p)) for p in (mask, image)]
    except Exception:  # unreadable files are reported by read_volume, with their cause
        return
    shapes = [tuple(n for i, n in enumerate(h.shape) if i < 3 or n != 1) for h in headers]
    if shapes[0] != shapes[1]:
        raise InputError(f"{mask}: mask shape {shapes[0]} != {image} shape {shapes[1]}; give the brain mask on the "
                         "input's grid")
    if not np.allclose(headers[0].affine, headers[1].affine, atol=1e-3):
        raise InputError(f"{mask}: its affine differs from {image}'s (another orientation or position); resample the "
                         "mask onto the input's grid (e.g. nearest neighbour)")


def read_mask(path: Path, volume: torch.Tensor, source: str) -> torch.Tensor:
    """A brain mask file on the input's grid -> (X, Y, Z) bool; one-line InputError otherwise."""
    mask = read_volume(path)[0][0]
    if mask.shape != volume.shape:
        raise InputError(f"{path}: mask shape {tuple(mask.shape)} != {source} shape {tuple(volume.shape)}; give the "
                         "brain mask on the input's grid")
    if not (mask > 0).any():
        raise InputError(f"{path}: the mask is empty; give a brain mask with brain voxels > 0")
    return mask > 0


def input_mask(option: Path | str | None, volume: torch.Tensor, affine: np.ndarray, source: str) -> torch.Tensor | None:
    """The brain mask of ``--mask`` on the input's (X, Y, Z) grid: a file's, BET's (``auto``) or none."""
    if option is None:
        return None
    return bet_mask(volume, affine, source) if option == AUTO_MASK else read_mask(option, volume, source)


def predict_file(path: Path, output: Path, restorer: Restorer, args: argparse.Namespace) -> dict[str, float] | None:
    """Restore one file and write it (float32, atomically).

    Args:
        path: a sparse acquisition (or, with ``--simulate``, a full volume) of shape (X, Y, Z).
        output: the NIfTI to write: on the grid of ``--grid`` (``inpaint.grid``), or the input's with ``--simulate``.
        restorer: the method with its settings (``inpaint.restore.Restorer``).
        args: the parsed command line (simulate, mask, target_spacing, grid, overwrite).

    Returns:
        With ``--simulate`` the PROTOCOL.md metrics against the input, else None.
    """
    source = str(path)
    data, affine = read_volume(path)
    volume = data[0]
    mask = input_mask(args.mask, volume, affine, source)
    if args.simulate:
        degraded, grid_mask, grid_affine = restorer.degrade(volume, affine, source), mask, affine
    else:
        degraded, grid_mask, grid_affine = sparse_input(volume, mask, affine, restorer, args, source)
    if mask is None:
        check_skull(volume, restorer, affine, degraded.axis, source)
    filled = restorer(degraded, grid_mask, spacing_slice_last(grid_affine, degraded.axis), source, strip=mask is not None,
                      affine=grid_affine)
    if not args.simulate and args.grid == "isotropic":
        filled, grid_affine = to_spacing(filled, grid_affine, dict.fromkeys(range(3), output_spacing(restorer, args)))
    write_volume(filled, grid_affine, output, overwrite=args.overwrite, dtype=np.float32,
                 description=provenance.description(restorer, args.checkpoint))
    provenance.write_sidecar(output, provenance.record(path, output, restorer, args.checkpoint, options(restorer, args),
                                                       tuple(filled.shape), grid_affine, args.command), args.overwrite)
    spacing = "x".join(f"{z:.3g}" for z in voxel_sizes(grid_affine))
    log.info("%s: %s voxels of %s mm, %s", output, "x".join(map(str, filled.shape)), spacing,
             "simulated from the full input" if args.simulate else f"{degraded.kept.numel()} acquired slices filled")
    if not args.simulate:
        return None
    return volume_metrics(filled, volume, brain_mask(volume, mask, source), degraded.known)


def options(restorer: Restorer, args: argparse.Namespace) -> dict[str, tuple[object, str]]:
    """predict's own settings for the sidecar: name -> (value, where it came from)."""
    spacing_source = ("command line" if args.target_spacing else
                      "checkpoint slice spacing" if restorer.info.get("spacing") else "default")
    return {"simulate": (bool(args.simulate), "command line" if args.simulate else "default"),
            "grid": (None if args.simulate else args.grid, args.grid_source),
            "target_spacing_mm": (None if args.simulate else output_spacing(restorer, args), spacing_source),
            "mask": (str(args.mask) if args.mask else "input > 0", "command line" if args.mask else "default"),
            "device": (args.device, "as run")}


def format_metrics(m: dict[str, float]) -> str:
    return (f"PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}, HFEN {m['hfen']:.4f}, "
            f"missing-slice PSNR {m['psnr_missing']:.2f} dB")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inpaint.predict", description=__doc__.split("\nAny slice spacing")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog="The output is float32 (interpolated and predicted values are not integers); acquired slices are "
               "copied exactly on the input's slice grid (--grid input, or no resampling needed), unless data "
               "consistency is off (pretrained-thick, or --data-consistency off). Errors are one "
               "line and exit with code 2; nothing is half-written.")
    parser.add_argument("input", type=Path, help="sparse NIfTI or MGZ (any slice and in-plane spacing), or a folder of them")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output file (a folder if INPUT is a folder)")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--checkpoint", help="trained model: a .ckpt from python -m inpaint.fit, or a committed one: "
                                          "'pretrained' (thin slices), 'pretrained-thick' (thick slices: real 2D "
                                          "scans), 'pretrained-dense-unet'")
    how.add_argument("--method", choices=METHODS, help="classical fill along the slice axis")
    parser.add_argument("--target-spacing", type=float, metavar="MM",
                        help="output spacing t in mm; N = round(slice spacing / t) (default: the checkpoint's, else 1.0)")
    parser.add_argument("--grid", choices=GRIDS,
                        help="output grid of a sparse input: 'isotropic' at t (default), or 'input', the input's "
                             "in-plane spacing with slices at slice spacing / N (no resampling; acquired slices copied "
                             "exactly unless data consistency is off)")
    parser.add_argument("--mask", type=mask_option, metavar="FILE|auto",
                        help="brain mask on the input's grid (one input file), or 'auto': BET's (the skull extra): the "
                             "network sees and fills the brain, linear interpolation the rest; metrics of --simulate in it")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where the network runs (default: cuda if available)")
    parser.add_argument("--simulate", action="store_true",
                        help="INPUT is a full volume: keep every --interval-th axial slice, restore on its grid, print metrics")
    add_arguments(parser, simulate="with --simulate: ")
    return parser


def check_options(args: argparse.Namespace) -> None:
    """Values in range, before any file is read (one-line InputError each; the device: ``load_module``)."""
    if args.target_spacing is not None and not args.target_spacing > 0:
        raise InputError(f"--target-spacing {args.target_spacing}: must be a positive spacing in mm, e.g. 1.0")
    check_settings(overrides(args))


def nifti_name(path: Path) -> str:
    """The output name for an input file in a folder: its stem as ``.nii.gz`` (an ``.mgz`` input too)."""
    return path.name if path.name.lower().endswith(WRITTEN_SUFFIXES) else volume_stem(path) + ".nii.gz"


def check_output(output: Path) -> None:
    """A NIfTI name in a folder that can be written (or created), before any inference."""
    if not output.name.lower().endswith(WRITTEN_SUFFIXES):
        raise InputError(f"{output}: name the output .nii.gz or .nii (the format is taken from the name)")
    folder = next(p for p in (output.parent, *output.parent.parents) if p.exists())
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{output}: cannot write in {folder}; choose an output in a writable folder")


def jobs(args: argparse.Namespace) -> list[tuple[Path, Path]]:
    """(input, output) pairs; refuses existing outputs and unwritable or non-NIfTI ones up front."""
    if args.input.is_dir():
        files = sorted(p for p in args.input.rglob("*") if is_volume_file(p) and "mask" not in p.name)
        if not files:
            raise InputError(f"{args.input}: no .nii/.nii.gz/.mgz files in this folder; give a file or a folder of them")
        if args.output.exists() and not args.output.is_dir():
            raise InputError(f"{args.output}: is a file, but INPUT is a folder; give an output folder")
        pairs = [(p, args.output / p.relative_to(args.input).with_name(nifti_name(p))) for p in files]
    elif not args.input.exists():
        raise InputError(f"{args.input}: no such file or folder; give a NIfTI file or a folder of them")
    else:
        pairs = [(args.input, args.output / nifti_name(args.input) if args.output.is_dir() else args.output)]
    for _, out in pairs:
        check_output(out)
    existing = [p for _, out in pairs for p in (out, provenance.sidecar_path(out)) if p.exists()]
    if existing and not args.overwrite:
        more = f" ({len(existing)} outputs exist)" if len(existing) > 1 else ""
        raise InputError(f"{existing[0]} exists{more}; pass --overwrite or choose another output")
    return pairs


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command = ["python", "-m", "inpaint.predict", *(sys.argv[1:] if argv is None else argv)]
    if not args.simulate and (args.interval is not None or args.offset is not None or args.thick_slices is not None):
        parser.error("--interval/--offset/--thick-slices apply only with --simulate; for a sparse input N comes from "
                     "its slice spacing (see --target-spacing)")
    if args.simulate and (args.grid or args.target_spacing):
        parser.error("--grid/--target-spacing apply to sparse inputs; with --simulate the output is on the input's grid")
    args.grid_source = "command line" if args.grid else "default"
    args.grid = args.grid or GRIDS[0]
    if args.mask not in (None, AUTO_MASK) and args.input.is_dir():
        parser.error("--mask FILE goes with one input file; for a folder, predict each file with its own mask (or "
                     "--mask auto)")
    failed = 0
    try:
        check_options(args)
        pairs = jobs(args)
        if args.mask == AUTO_MASK:
            require_bet()
        elif args.mask:
            check_mask_grid(args.mask, args.input)
        restorer = Restorer(args.method or load_module(args.checkpoint, args.device), overrides(args))
        shown = SHOWN if args.simulate else ("overlap", "aggregation", "data_consistency")  # else N: the file's spacing
        log.info("restoring with %s", restorer.describe(shown))
        for path, output in tqdm(pairs, desc="volumes", unit="vol", disable=len(pairs) == 1):
            if len(pairs) == 1:
                log.info("restoring %s -> %s", path, output)
            try:
                metrics = predict_file(path, output, restorer, args)
            except (InputError, FileExistsError) as error:
                report(error)
                failed += 1
                continue
            print(f"wrote {output}" + (f" | vs input: {format_metrics(metrics)}" if metrics else ""))
    except (InputError, FileExistsError) as error:
        return report(error)
    if failed and len(pairs) > 1:
        report(f"{failed} of {len(pairs)} volume(s) failed (see above); the others were written")
    return EXIT_ERROR if failed else 0


if __name__ == "__main__":
    sys.exit(main())
