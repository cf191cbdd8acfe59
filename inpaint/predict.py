"""Restore dense volumes from sparse acquisitions, with a trained generator or a classical fill.

    python -m inpaint.predict scan.nii.gz -o dense.nii.gz                 # pretrained-thick, the scan's own grid
    python -m inpaint.predict scans/ -o dense/ --grid isotropic          # a folder, 1 mm isotropic
    python -m inpaint.predict full.nii.gz -o restored.nii.gz --simulate  # degrade a full volume, restore, score

Any slice spacing s and in-plane spacing, along the voxel axis whose spacing stands out (any direction for
linear and cubic; axial only for a network, which refuses the others). Without --checkpoint or --method a
sparse scan gets ``pretrained-thick`` (a 2D acquisition's slices are as thick as their spacing) unless a JSON
sidecar states thin slices. The fill factor is ``N = round(s / t)`` for the fill spacing t; the output grid
(``--grid``, ``inpaint.grid``) is the scan's in-plane voxels with slices at its in-plane spacing by default,
``isotropic`` at t, or ``input`` (``s / N`` slices, acquired slices copied exactly unless data consistency is
off), with voxel 0 at the first acquired slice's first voxel in world coordinates. A network restores with
the settings stored in its checkpoint (``inpaint.restore``); the flags you pass override them, and the log
says which were used; the last line of each file states the output's shape, voxel size and what was filled.
"""

from __future__ import annotations

import argparse
import json
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
from inpaint.grid import GRIDS, fill_factor, inplane_spacing, is_close, output_spacings, to_spacing
from inpaint.interpolate import METHODS, sparse_to_dense
from inpaint.metrics import volume_metrics
from inpaint.restore import SHOWN, Restorer, add_arguments, check_settings, overrides, trained_intervals
from inpaint.skull import bet_mask, head_signs, require_bet

AUTO_MASK = "auto"  # --mask auto: BET's brain mask (inpaint.skull.bet_mask)
THIN_MODEL, THICK_MODEL = "pretrained", "pretrained-thick"  # the committed models for thin and thick slices
THIN_FRACTION = 0.5  # slices thinner than this fraction of their spacing are thin (a 2D scan's are ~1: thick)
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


def stated_thickness(path: Path) -> float | None:
    """``SliceThickness`` in mm from the JSON beside a scan (``scan.nii.gz`` -> ``scan.json``, as dcm2niix and BIDS
    write it), or None when there is none."""
    sidecar = path.with_name(volume_stem(path) + ".json")
    try:
        value = json.loads(sidecar.read_text()).get("SliceThickness")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def thin_slices(path: Path) -> bool | None:
    """Whether a sparse scan's slices are thin (True), thick (False) or unknown (None: no ``SliceThickness``)."""
    thickness = stated_thickness(path)
    if thickness is None:
        return None
    spacing = float(max(nib.load(str(path)).header.get_zooms()[:3]))
    return thickness < THIN_FRACTION * spacing


def default_model(args: argparse.Namespace, inputs: list[Path]) -> tuple[str, str]:
    """The committed model for ``inputs`` when neither --checkpoint nor --method is given, and why.

    With --simulate, the one for the slices simulated; for sparse scans ``pretrained-thick`` (a 2D acquisition's slices
    are as thick as their spacing), unless every scan's sidecar states thin slices.
    """
    if args.simulate:
        return (THICK_MODEL, "--thick-slices") if args.thick_slices else (THIN_MODEL, "thin slices simulated")
    if inputs and all(thin_slices(p) for p in inputs):
        return THIN_MODEL, "every input's JSON sidecar states slices thinner than half their spacing"
    return THICK_MODEL, ("sparse scans: a 2D acquisition's slices are as thick as their spacing (pass --checkpoint "
                         f"{THIN_MODEL} for thin ones)")


def check_slices(path: Path, restorer: Restorer, source: str) -> None:
    """Warn when a sparse scan's stated slice thickness (its JSON sidecar) is not the kind the network learnt."""
    thin = None if restorer.classical else thin_slices(path)
    if thin is None or thin == (not restorer.settings["thick_slices"]):
        return
    learnt, suits = ("thick", THIN_MODEL) if thin else ("thin", THICK_MODEL)
    log.warning("%s: its sidecar states %.3g mm thick slices, but the model learnt %s slices; --checkpoint %s suits it",
                source, stated_thickness(path), learnt, suits)


def fill_spacing(restorer: Restorer, args: argparse.Namespace, affine: np.ndarray, axis: int) -> float:
    """The fill spacing t in mm (``N = round(s / t)``): ``--target-spacing``; else a network's own slice spacing (the
    interval it learnt); else, for a classical fill, the scan's in-plane spacing (``inplane``, ``input``) or 1 mm."""
    if args.target_spacing:
        return args.target_spacing
    trained = (restorer.info.get("spacing") or [None])[-1]
    if trained is None and args.grid != "isotropic":
        return inplane_spacing(affine, axis)
    return trained or 1.0


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
    target = fill_spacing(restorer, args, affine, axis)
    slice_spacing = spacing_slice_last(affine, axis)[2]
    try:
        n = fill_factor(slice_spacing, target)
    except ValueError as error:
        raise InputError(f"{source}: {error}") from None
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


def saved_mask_path(output: Path) -> Path:
    """Where ``--save-mask`` writes the mask of ``dense.nii.gz``: ``dense_mask.nii.gz`` beside it."""
    return output.with_name(volume_stem(output) + "_mask.nii.gz")


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
    if args.save_mask:
        write_volume(mask.to(torch.uint8), affine, saved_mask_path(output), overwrite=args.overwrite, dtype=np.uint8,
                     description="inpaint --mask auto (BET) brain mask")
    if args.simulate:
        degraded, grid_mask, grid_affine = restorer.degrade(volume, affine, source), mask, affine
    else:
        degraded, grid_mask, grid_affine = sparse_input(volume, mask, affine, restorer, args, source)
    if mask is None:
        check_skull(volume, restorer, affine, degraded.axis, source)
    if not args.simulate:
        check_slices(path, restorer, source)
    filled = restorer(degraded, grid_mask, spacing_slice_last(grid_affine, degraded.axis), source, strip=mask is not None,
                      affine=grid_affine)
    filled_spacing = float(voxel_sizes(grid_affine)[degraded.axis])
    fill_spacing_mm = None if args.simulate else fill_spacing(restorer, args, affine, degraded.axis)
    if not args.simulate:
        filled, grid_affine = to_spacing(filled, grid_affine, output_spacings(args.grid, affine, degraded.axis,
                                                                              fill_spacing_mm))
    write_volume(filled, grid_affine, output, overwrite=args.overwrite, dtype=np.float32,
                 description=provenance.description(restorer, args.checkpoint))
    provenance.write_sidecar(output, provenance.record(path, output, restorer, args.checkpoint, options(restorer, args, fill_spacing_mm),
                                                       tuple(filled.shape), grid_affine, args.command), args.overwrite)
    log.info("%s", what_was_written(output, filled.shape, grid_affine, degraded, filled_spacing, args))
    if not args.simulate:
        return None
    return volume_metrics(filled, volume, brain_mask(volume, mask, source), degraded.known)


def what_was_written(output: Path, shape: tuple[int, ...], affine: np.ndarray, degraded: Degraded,
                     filled_spacing: float, args: argparse.Namespace) -> str:
    """The last log line of a file: output shape, voxel size, grid and what was filled, e.g. ``dense.nii.gz:
    40x44x31 voxels of 1x1x1 mm (grid inplane); 8 acquired slices 4.4 mm apart, 3 filled between neighbours
    (4-fold, 1.1 mm), slice axis then resampled to 1 mm``."""
    zooms = voxel_sizes(affine)
    head = f"{output}: {'x'.join(map(str, shape))} voxels of {'x'.join(f'{z:.4g}' for z in zooms)} mm"
    n = degraded.interval
    if args.simulate:
        return (f"{head} (the input's grid); simulated: {degraded.kept.numel()} slices kept (1 in {n}, offset "
                f"{degraded.offset}), the others filled")
    spacing = filled_spacing * n
    resampled = "" if is_close(float(zooms[degraded.axis]), filled_spacing) else \
        f", slice axis then resampled to {zooms[degraded.axis]:.4g} mm"
    return (f"{head} (grid {args.grid}); {degraded.kept.numel()} acquired slices {spacing:.4g} mm apart, {n - 1} "
            f"filled between neighbours ({n}-fold, {filled_spacing:.4g} mm){resampled}")


def options(restorer: Restorer, args: argparse.Namespace, fill_spacing_mm: float | None) -> dict[str, tuple[object, str]]:
    """predict's own settings for the sidecar: name -> (value, where it came from)."""
    spacing_source = ("command line" if args.target_spacing else
                      "checkpoint slice spacing" if restorer.info.get("spacing") else
                      "the input's in-plane spacing" if args.grid != "isotropic" else "default")
    return {"model": (args.checkpoint or args.method, args.model_source),
            "simulate": (bool(args.simulate), "command line" if args.simulate else "default"),
            "grid": (None if args.simulate else args.grid, args.grid_source),
            "fill_spacing_mm": (fill_spacing_mm, spacing_source),
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
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--checkpoint", help="trained model: a .ckpt from python -m inpaint.fit, or a committed one: "
                                          f"'{THIN_MODEL}' (thin slices), '{THICK_MODEL}' (thick slices: real 2D "
                                          "scans), 'pretrained-slice-resnet' (small, fast), 'pretrained-dense-unet' "
                                          f"(default: {THICK_MODEL} for sparse scans, unless a JSON sidecar beside every "
                                          f"scan states thin slices (SliceThickness); with --simulate {THIN_MODEL}, or "
                                          f"{THICK_MODEL} with --thick-slices)")
    how.add_argument("--method", choices=METHODS, help="classical fill along the slice axis")
    parser.add_argument("--grid", choices=GRIDS,
                        help="output grid of a sparse input: 'inplane' (default), the scan's in-plane voxels with "
                             "slices at its in-plane spacing; 'isotropic', every axis at --target-spacing (default "
                             "with --target-spacing); 'input', the scan's in-plane voxels with N - 1 slices filled "
                             "between acquired ones (slice spacing s / N, no resampling: acquired slices copied exactly "
                             "unless data consistency is off)")
    parser.add_argument("--target-spacing", type=float, metavar="MM",
                        help="with --grid isotropic or input: spacing t in mm, N = round(slice spacing / t) (default: "
                             "a network's own slice spacing, 1 mm for the committed models; for a classical fill the "
                             "scan's in-plane spacing with --grid input, 1 mm with --grid isotropic)")
    parser.add_argument("--mask", type=mask_option, metavar="FILE|auto",
                        help="brain mask on the input's grid (one input file), or 'auto': BET's (the skull extra): the "
                             "network sees and fills the brain, linear interpolation the rest; metrics of --simulate in it")
    parser.add_argument("--save-mask", action="store_true",
                        help="with --mask auto: also write BET's brain mask of each input beside its output as "
                             "NAME_mask.nii.gz (on the input's grid: reuse it with --mask FILE)")
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
    written = (provenance.sidecar_path, *([saved_mask_path] if args.save_mask else []))
    existing = [p for _, out in pairs for p in (out, *(path(out) for path in written)) if p.exists()]
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
    if args.grid == GRIDS[0] and args.target_spacing:
        parser.error(f"--grid {GRIDS[0]} takes the scan's in-plane spacing; --target-spacing goes with --grid isotropic "
                     "or input")
    args.grid_source = "command line" if args.grid else "--target-spacing" if args.target_spacing else "default"
    args.grid = args.grid or ("isotropic" if args.target_spacing else GRIDS[0])
    if args.save_mask and args.mask != AUTO_MASK:
        parser.error("--save-mask writes the mask that --mask auto makes; give --mask auto (a --mask FILE is yours already)")
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
        args.model_source = "command line"
        if not (args.method or args.checkpoint):
            args.checkpoint, why = default_model(args, [p for p, _ in pairs])
            args.model_source = f"default: {why}"
            log.info("model: %s (%s)", args.checkpoint, why)
        restorer = Restorer(args.method or load_module(args.checkpoint, args.device), overrides(args))
        if not (args.simulate or restorer.classical or restorer.settings["thick_slices"]) and \
                any(thin_slices(p) is None for p, _ in pairs):
            log.warning("%s learnt thin slices (every N-th slice of a 3D scan); a 2D acquisition's slices are usually "
                        "as thick as their spacing: --checkpoint %s suits those", args.checkpoint, THICK_MODEL)
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
