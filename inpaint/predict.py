"""Restore dense volumes from sparse axial acquisitions, with a classical fill or a trained generator.

    python -m inpaint.predict sparse.nii.gz -o dense.nii.gz --checkpoint runs/.../best.ckpt
    python -m inpaint.predict sparse_folder/ -o dense_folder/ --method cubic
    python -m inpaint.predict full.nii.gz -o restored.nii.gz --method linear --simulate --interval 5

The output is float32 on the fine grid: the ``n`` acquired slices sit at indices ``0, N, 2N, ...``
(``(n - 1) N + 1`` slices) and the affine is scaled along the slice axis only, so every acquired
slice lies exactly where it was in world coordinates. ``fill`` and ``load_module`` are the shared
"method on one volume" helpers that ``inpaint.evaluate`` uses too.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from inpaint.classical import CLASSICAL, Degraded, brain_mask, classical_fill, degrade, find_slice_axis
from inpaint.data.degrade import known_volume
from inpaint.data.io import InputError, is_volume_file, read_volume, write_volume
from inpaint.data.normalise import acquired_scale, denormalise, normalise
from inpaint.data.transforms import slice_last_permutation
from inpaint.interpolate import kept_indices, sparse_to_dense
from inpaint.metrics import volume_metrics

log = logging.getLogger("inpaint")
PRETRAINED = Path(__file__).resolve().parent / "assets" / "pretrained"
SPACING_TOLERANCE = 0.02  # slice spacing / target spacing must be this close to an integer (relative)
INPLANE_TOLERANCE = 0.10  # resample in-plane when the spacing differs from the checkpoint's by more
CONSISTENCY = {"trained": None, "on": True, "off": False}  # --data-consistency -> network_fill's argument
BORDER_NONZERO = 0.2  # warn about skull when this fraction of the in-plane border is nonzero


def load_module(spec: str, device: str | torch.device = "cpu") -> Any:
    """An ``InpaintingModule`` in eval mode from a checkpoint path (or ``pretrained``), with one-line errors."""
    if spec == "pretrained":
        found = sorted(PRETRAINED.glob("*.ckpt"), key=lambda p: p.name != "dense_unet.ckpt")
        if not found:
            raise InputError(f"no pretrained model in {PRETRAINED} (installed without package data?); reinstall "
                             "inpaint or pass a checkpoint path, e.g. runs/dense_unet/<run>/checkpoints/best.ckpt")
        spec = str(found[0])
    path = Path(spec)
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint file; give a .ckpt written by python -m inpaint.fit")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # pickle, zip and torch errors alike
        raise InputError(f"{path}: not a PyTorch checkpoint ({type(error).__name__}); "
                         "give a .ckpt written by python -m inpaint.fit") from None
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not isinstance(hparams, dict) or "generator" not in hparams or "state_dict" not in checkpoint:
        raise InputError(f"{path}: not an inpaint checkpoint (no generator in its hyper-parameters); "
                         "give a .ckpt written by python -m inpaint.fit")
    from inpaint.system import InpaintingModule

    try:
        module = InpaintingModule.load_from_checkpoint(path, map_location=torch.device(device))
    except Exception as error:
        detail = " ".join(str(error).split())[:200]
        raise InputError(f"{path}: its weights do not build generator {hparams['generator'].get('name')!r} of this "
                         f"inpaint version ({detail}); use a checkpoint trained with this version") from None
    module.checkpoint_path = str(path)
    return module.eval()


def data_info(module: Any) -> dict[str, Any]:
    """The checkpoint's facts about its training data: spacing [x, y, slice], interval, skull_stripped."""
    return dict(module.hparams.get("data_info") or {})


def _inplane_size(shape: tuple[int, ...], spacing: list[float] | None, module: Any, source: str) -> list[int] | None:
    """New in-plane size (slice axis last) if the checkpoint's in-plane spacing differs by > 10 %, else None."""
    trained = data_info(module).get("spacing")
    if not spacing or not trained:
        return None
    ratios = [s / t for s, t in zip(spacing[:2], trained[:2], strict=True)]
    if all(abs(r - 1) <= INPLANE_TOLERANCE for r in ratios):
        return None
    size = [max(1, round(n * r)) for n, r in zip(shape[:2], ratios, strict=True)]
    log.info("%s: in-plane spacing %.3g x %.3g mm differs from the checkpoint's %.3g x %.3g mm; "
             "resampling %s -> %s for the network and back", source, *spacing[:2], *trained[:2], list(shape[:2]), size)
    return size


def _resize(x: torch.Tensor, size: list[int], mode: str) -> torch.Tensor:
    """(X, Y, Z) -> (size[0], size[1], Z)."""
    kwargs = {"align_corners": False} if mode == "trilinear" else {}
    return F.interpolate(x[None, None].float(), size=[*size, x.shape[2]], mode=mode, **kwargs)[0, 0]


def network_fill(module: Any, degraded: Degraded, mask: torch.Tensor, *, spacing: list[float] | None = None,
                 overlap: int = 8, aggregation: str = "average", data_consistency: bool | None = None,
                 source: str = "volume") -> torch.Tensor:
    """Fill ``degraded`` with a trained generator, in the input's units.

    Normalises with the acquired slices only, moves the slice axis last, resamples in-plane to the
    checkpoint's spacing when it differs by more than 10 %, runs ``module.predict_volume`` and undoes it all.

    Args:
        module: an ``InpaintingModule`` (see :func:`load_module`).
        degraded: the linearly filled input with its acquired-slice mask (file voxel order).
        mask: ``(X, Y, Z)`` brain mask: the scale's voxels and the patches the network runs on.
        spacing: voxel spacing ``[a, b, slice]`` in mm with the slice axis last (None: no resampling).
        overlap, aggregation: whole-volume patch settings (``inpaint.inference.infer_volume``).
        data_consistency: copy the acquired slices back exactly; None = as the checkpoint was trained.
        source: file name for error messages.

    Returns:
        ``(X, Y, Z)`` float32 volume.
    """
    if data_consistency is None:
        data_consistency = bool(module.model_cfg["data_consistency"])
    scale = acquired_scale(degraded.input, degraded.known, mask, source)
    perm = slice_last_permutation(degraded.axis)
    x, known, brain = (t.permute(*perm) for t in (normalise(degraded.input, scale), degraded.known, mask))
    size = _inplane_size(tuple(x.shape), spacing, module, source)
    if size is not None:
        x, known, brain = _resize(x, size, "trilinear"), _resize(known, size, "nearest"), _resize(brain, size, "nearest")
    try:
        pred = module.predict_volume(x[None, None], known[None, None], brain[None, None], overlap=overlap,
                                     aggregation=aggregation, data_consistency=data_consistency)[0]
    except ValueError as error:
        raise InputError(f"{source}: {error}") from None
    if size is not None:
        pred = _resize(pred, list(degraded.input.permute(*perm).shape[:2]), "trilinear")
    out = denormalise(pred.double(), scale).float().permute(*np.argsort(perm).tolist()).contiguous()
    if data_consistency:
        out[degraded.known] = degraded.input[degraded.known]
    return out


def fill(method: str | Any, degraded: Degraded, mask: torch.Tensor, source: str = "volume",
         **settings: Any) -> torch.Tensor:
    """Fill ``degraded`` with a classical method name or a loaded module; (X, Y, Z) float32."""
    if isinstance(method, str):
        return classical_fill(degraded, method, source)
    return network_fill(method, degraded, mask, source=source, **settings)


def spacing_slice_last(affine: np.ndarray, axis: int) -> list[float]:
    zooms = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    return [float(zooms[a]) for a in slice_last_permutation(axis)]


def upsampling_factor(slice_spacing: float, target: float, source: str) -> int:
    """N = slice spacing / target spacing, which must be within 2 % of an integer >= 2."""
    ratio = slice_spacing / target
    n = round(ratio)
    if n < 1 or abs(ratio / n - 1) > SPACING_TOLERANCE:
        raise InputError(f"{source}: slice spacing {slice_spacing:.4g} mm is not a whole multiple of the target "
                         f"{target:.4g} mm (ratio {ratio:.3f}); pass --target-spacing {slice_spacing / max(n, 1):.4g} "
                         "or another divisor of the slice spacing")
    if n == 1:
        raise InputError(f"{source}: slice spacing {slice_spacing:.4g} mm is already the target spacing; nothing to "
                         "fill (use --simulate to degrade and restore a full volume)")
    return n


def check_skull(volume: torch.Tensor, module: Any, axis: int, source: str) -> None:
    """Warn if the checkpoint learnt skull-stripped brains and this volume's in-plane border is mostly nonzero."""
    if module is None or not data_info(module).get("skull_stripped"):
        return
    border = torch.zeros(volume.shape, dtype=torch.bool)
    for a in (a for a in range(3) if a != axis):
        width = max(2, volume.shape[a] // 20)
        edges = torch.cat([torch.arange(width), torch.arange(volume.shape[a] - width, volume.shape[a])])
        border.index_fill_(a, edges, True)
    fraction = float((volume[border] != 0).float().mean())
    if fraction > BORDER_NONZERO:
        log.warning("%s: %.0f%% of the voxels near the in-plane border are nonzero, but the checkpoint was trained "
                    "on skull-stripped brains; skull-strip the input (e.g. SynthStrip, HD-BET) for reliable output",
                    source, 100 * fraction)


def predict_file(path: Path, output: Path, method: str | Any, args: argparse.Namespace) -> dict[str, float] | None:
    """Restore one file and write it (float32, atomically).

    Args:
        path: a sparse acquisition (or, with ``--simulate``, a full volume) of shape (X, Y, Z).
        output: the NIfTI to write: (X, Y, (n - 1) N + 1) along the slice axis, or the input's grid with ``--simulate``.
        method: ``"linear"``/``"cubic"`` or a module from :func:`load_module`.
        args: the parsed command line (simulate, interval, offset, target_spacing, overlap, aggregation, overwrite).

    Returns:
        With ``--simulate`` the PROTOCOL.md metrics against the input, else None.
    """
    source = str(path)
    data, affine = read_volume(path)
    volume = data[0]
    settings = {"overlap": args.overlap, "aggregation": args.aggregation,
                "data_consistency": CONSISTENCY[args.data_consistency]}
    info = data_info(method) if not isinstance(method, str) else {}
    if args.simulate:
        thick = args.thick_slices or bool(info.get("thick_slices"))
        degraded = degrade(volume, affine, args.interval or info.get("interval", 5), args.offset, source, thick)
        out_affine, mask = affine, degraded.input > 0  # the network never sees the missing slices
    else:
        axis = find_slice_axis(affine, source)
        slice_spacing = spacing_slice_last(affine, axis)[2]
        n = upsampling_factor(slice_spacing, args.target_spacing or (info.get("spacing") or [1.0])[-1], source)
        if info.get("interval") and info["interval"] != n:
            log.warning("%s: needs %d-fold upsampling; the checkpoint was trained at interval %d", source, n,
                        info["interval"])
        try:
            dense = sparse_to_dense(volume, axis, n, "linear")
        except ValueError as error:
            raise InputError(f"{source}: {error}") from None
        kept = kept_indices(dense.shape[axis], n)
        degraded = Degraded(dense, known_volume(tuple(dense.shape), axis, kept).bool(), axis, kept, n, 0)
        out_affine = np.array(affine, dtype=np.float64)
        out_affine[:3, axis] /= n
        mask = dense > 0
    check_skull(volume, None if isinstance(method, str) else method, degraded.axis, source)
    filled = fill(method, degraded, mask, source, spacing=spacing_slice_last(affine, degraded.axis), **settings)
    write_volume(filled, out_affine, output, overwrite=args.overwrite, dtype=np.float32)
    if not args.simulate:
        return None
    return volume_metrics(filled, volume, brain_mask(volume, None, source), degraded.known)


def format_metrics(m: dict[str, float]) -> str:
    return (f"PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}, HFEN {m['hfen']:.4f}, "
            f"missing-slice PSNR {m['psnr_missing']:.2f} dB")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inpaint.predict", description=__doc__.split("\nThe output")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog="The output is float32 (interpolated and predicted values are not integers); acquired slices are "
               "copied exactly. Errors are one line and exit with code 2; nothing is half-written.")
    parser.add_argument("input", type=Path, help="sparse NIfTI (slice spacing a multiple of the target), or a folder of them")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output file (a folder if INPUT is a folder)")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--checkpoint", help="trained model: a .ckpt from python -m inpaint.fit, or 'pretrained'")
    how.add_argument("--method", choices=CLASSICAL, help="classical fill along the slice axis")
    parser.add_argument("--target-spacing", type=float, metavar="MM", help="output slice spacing in mm (default: the checkpoint's, else 1.0)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where the network runs (default: cuda if available)")
    parser.add_argument("--simulate", action="store_true",
                        help="INPUT is a full volume: keep every --interval-th axial slice, restore on its grid, print metrics")
    parser.add_argument("--interval", type=int, metavar="N", help="with --simulate: keep every N-th slice (default: checkpoint's, else 5)")
    parser.add_argument("--offset", type=int, default=0, metavar="K", help="with --simulate: kept slices k %% interval == offset (0-based)")
    parser.add_argument("--overlap", type=int, default=8, metavar="VOXELS", help="network patch overlap, even (default: 8)")
    parser.add_argument("--aggregation", choices=("average", "hann"), default="average", help="how network patch overlaps are merged (default: average)")
    parser.add_argument("--data-consistency", choices=tuple(CONSISTENCY), default="trained",
                        help="copy the acquired slices into the output: as the checkpoint was trained (default), on, off")
    parser.add_argument("--thick-slices", action="store_true",
                        help="with --simulate: acquired slices are slab means (default: as the checkpoint was trained)")
    return parser


def jobs(args: argparse.Namespace) -> list[tuple[Path, Path]]:
    """(input, output) pairs; refuses existing outputs up front unless --overwrite."""
    if args.input.is_dir():
        files = sorted(p for p in args.input.rglob("*") if is_volume_file(p) and "mask" not in p.name)
        if not files:
            raise InputError(f"{args.input}: no .nii/.nii.gz/.mgz files in this folder; give a file or a folder of them")
        if args.output.exists() and not args.output.is_dir():
            raise InputError(f"{args.output}: is a file, but INPUT is a folder; give an output folder")
        pairs = [(p, args.output / p.relative_to(args.input)) for p in files]
    elif not args.input.exists():
        raise InputError(f"{args.input}: no such file or folder; give a NIfTI file or a folder of them")
    else:
        pairs = [(args.input, args.output / args.input.name if args.output.is_dir() else args.output)]
    existing = [out for _, out in pairs if out.exists()]
    if existing and not args.overwrite:
        more = f" ({len(existing)} outputs exist)" if len(existing) > 1 else ""
        raise InputError(f"{existing[0]} exists{more}; pass --overwrite or choose another output")
    return pairs


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.simulate and (args.interval is not None or args.offset):
        parser.error("--interval/--offset apply only with --simulate; for a sparse input N comes from its slice "
                     "spacing (see --target-spacing)")
    failed = 0
    try:
        pairs = jobs(args)
        method = args.method or load_module(args.checkpoint, args.device)
        for path, output in tqdm(pairs, desc="volumes", unit="vol", disable=len(pairs) == 1):
            try:
                metrics = predict_file(path, output, method, args)
            except (InputError, FileExistsError) as error:
                print(f"error: {error}", file=sys.stderr)
                failed += 1
                continue
            print(f"wrote {output}" + (f" | vs input: {format_metrics(metrics)}" if metrics else ""))
    except (InputError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if failed and len(pairs) > 1:
        print(f"error: {failed} of {len(pairs)} volume(s) failed (see above); the others were written", file=sys.stderr)
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
