"""Score classical fills, trained generators and saved predictions on full reference volumes (PROTOCOL.md).

    python -m inpaint.evaluate --data ../shared/data/ds002748 --methods linear,cubic \\
        --checkpoint dense_unet=runs/dense_unet/<run>/checkpoints/best.ckpt --out results/eval

Every reference volume is degraded per PROTOCOL.md (every ``--interval``-th axial slice, counted in
the file's voxel order from ``--offset``), each method fills it back, and the masked metrics are
appended to ``OUT/metrics.csv`` one row per (subject, method) as soon as they exist. ``OUT/summary.md``
holds mean ± std, the paired PSNR gain over linear and Wilcoxon tests; ``OUT/figures/`` the box
plots and a slice panel.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from inpaint.checkpoint import changed_weights, file_digest, load_module, seen_subjects
from inpaint.data.degrade import degrade
from inpaint.data.io import InputError, atomic_write, is_volume_file, read_volume, volume_stem
from inpaint.data.subjects import VolumeFile, find_volumes, read_split_file, source_subject
from inpaint.data.transforms import brain_mask
from inpaint.errors import report
from inpaint.figures import box_plots, slice_panel
from inpaint.geometry import slice_last_permutation, spacing_slice_last
from inpaint.inference import patch_borders
from inpaint.interpolate import METHODS
from inpaint.metrics import seam_ratio, volume_metrics
from inpaint.morphometry import COLUMNS as MORPHOMETRY_COLUMNS
from inpaint.morphometry import THICKNESS_METHODS, MorphometryScorer
from inpaint.morphometry_groups import evaluate_section
from inpaint.morphometry_report import morphometry_figures, morphometry_markdown, regional_agreement
from inpaint.peers import PEERS, PeerRestorer
from inpaint.reporting import read_rows, summary_markdown
from inpaint.restore import ACQUISITION, Restorer, add_arguments, check_settings, defaults, overrides
from inpaint.segment import COLUMNS as SEGMENT_COLUMNS
from inpaint.segment import TissueScorer, require_ants
from inpaint.skull import head_signs

log = logging.getLogger("inpaint")
COLUMNS = ["subject", "method", "psnr", "ssim", "hfen", "psnr_missing", "seam", "seconds"]
SETTINGS = ("interval", "offset", "overlap", "aggregation", "segment", "morphometry", "thickness", "thick_slices",
            "data_consistency")


class SubjectError(InputError):
    """A failure while evaluating one subject: earlier rows are safe in metrics.csv."""


def named(values: list[str], flag: str) -> dict[str, str]:
    """``["NAME=VALUE", ...]`` -> ``{NAME: VALUE}`` with one-line errors."""
    out = {}
    for value in values:
        name, sep, target = value.partition("=")
        if not sep or not name or not target or "," in name:
            raise InputError(f"{flag} {value!r}: expected NAME=PATH, e.g. {flag} dense_unet=runs/x/best.ckpt")
        if name in out:
            raise InputError(f"{flag}: the name {name!r} is given twice; give each method its own name")
        out[name] = target
    return out


def select_volumes(args: argparse.Namespace) -> list[VolumeFile]:
    """The volumes to score: ``--subjects``, the ``--split-name`` subjects of ``--split``, both (the given subjects,
    each of which must be in that split), or every volume of ``--data``."""
    volumes = find_volumes(args.data)
    if not args.subjects and not args.split:
        return volumes
    wanted = [s.strip() for s in (args.subjects or "").split(",") if s.strip()]
    if args.split:
        assignment = read_split_file(args.split)
        in_split = [s for s, split in assignment.items() if split == args.split_name]
        if not in_split:
            raise InputError(f"{args.split}: no subject in split {args.split_name!r}; pick another --split-name")
        outside = [s for s in wanted if s not in in_split]
        if outside:
            raise InputError(f"--subjects {outside[0]}: not in split {args.split_name!r} of {args.split} "
                             f"({assignment.get(outside[0], 'not listed')}); pick its subjects or another --split-name")
        wanted = wanted or in_split
    by_name = {v.name: v for v in volumes}
    unknown = [s for s in wanted if s not in by_name]
    if unknown:
        raise InputError(f"--subjects/--split: {unknown[0]!r} has no volume in {args.data}; known: "
                         f"{', '.join(list(by_name)[:8])}{', ...' if len(by_name) > 8 else ''}")
    return [by_name[s] for s in wanted]


def prediction_index(folder: str, name: str) -> dict[str, Path]:
    """Files of a ``--prediction`` folder by stem."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"--prediction {name}={folder}: no such folder; give the folder of predicted volumes")
    return {volume_stem(p): p for p in sorted(root.rglob("*")) if is_volume_file(p)}


def build_methods(args: argparse.Namespace) -> dict[str, Any]:
    """Method name -> a :class:`Restorer` (classical or a loaded checkpoint) or a {stem: path} dict of saved predictions.

    Restorers start from each checkpoint's settings; ``--overlap``, ``--aggregation`` and
    ``--data-consistency`` override them when given.
    """
    named_methods = ["linear"] + [m.strip() for m in args.methods.split(",") if m.strip() and m.strip() != "linear"]
    bad = [m for m in named_methods if m not in METHODS and m not in PEERS]
    if bad:
        raise InputError(f"--methods: unknown method {bad[0]!r}; choose from {', '.join((*METHODS, *PEERS))}")
    given = {k: v for k, v in overrides(args).items() if k not in ACQUISITION}  # one degradation for all: acquisition()
    # a peer becomes a PeerRestorer once the acquisition is known (resolve_peers); until then its name stands in
    methods: dict[str, Any] = {m: Restorer(m) if m in METHODS else m for m in named_methods}
    for flag, specs in (("--checkpoint", named(args.checkpoint, "--checkpoint")),
                        ("--prediction", named(args.prediction, "--prediction"))):
        for name, target in specs.items():
            if name in methods:
                raise InputError(f"{flag} {name}=...: the name {name!r} is already used; choose another")
            methods[name] = (Restorer(load_module(target, args.device), given) if flag == "--checkpoint"
                             else prediction_index(target, name))
    return methods


def resolve_peers(methods: dict[str, Any], setting: dict[str, Any]) -> None:
    """Each peer's PeerRestorer for this acquisition: a one-line InputError (missing venv or file, an interval or thick
    slices it does not support) before any work."""
    for name in [n for n, m in methods.items() if isinstance(m, str)]:
        methods[name] = PeerRestorer(name, setting["interval"], setting["thick_slices"])


def check_unseen(volumes: list[VolumeFile], methods: dict[str, Any], allow: bool) -> None:
    """A one-line InputError when a checkpoint would be scored on a subject it trained on or was selected on (or on a
    volume made from one: ``sub-03_acq-bias`` is ``sub-03``'s)."""
    names = {source_subject(v.name) for v in volumes}
    for name, restorer in trained_networks(methods).items():
        seen = seen_subjects(restorer.method.hparams) or {}
        for split, role in (("train", "a training subject"), ("val", "a validation subject (model selection)")):
            overlap = sorted(names & {source_subject(n) for n in seen.get(split, [])})
            if overlap and not allow:
                more = f" (and {len(overlap) - 1} more of the evaluated subjects)" if len(overlap) > 1 else ""
                raise InputError(f"--checkpoint {name}: {overlap[0]} is {role} of it{more}; scores there measure what "
                                 "it saw, not how it generalises: evaluate held-out subjects (e.g. --split "
                                 "experiments/splits/ds002748.tsv --split-name test) or pass --allow-seen")


def trained_networks(methods: dict[str, Any]) -> dict[str, Restorer]:
    """The methods that restore with a checkpoint (not classical fills, not saved predictions)."""
    return {n: m for n, m in methods.items() if isinstance(m, Restorer) and not m.classical}


def acquisition(args: argparse.Namespace, methods: dict[str, Any]) -> dict[str, Any]:
    """Interval, offset and thick slices of the degradation every method is scored on.

    A flag wins; else the value the checkpoints were trained with (they must agree); else the default.
    """
    networks = trained_networks(methods)
    resolved = {}
    for key in ACQUISITION:
        given = getattr(args, key)
        trained = {n: m.settings[key] for n, m in networks.items() if m.sources[key] == "checkpoint"}
        if given is not None:
            resolved[key] = given
        elif len(set(trained.values())) > 1:
            flag = "--thick-slices or --no-thick-slices" if key == "thick_slices" else f"--{key}"
            raise InputError(f"the checkpoints were trained with different {key.replace('_', ' ')} ({trained}); "
                             f"pass {flag} to score them on one degradation")
        else:
            resolved[key] = next(iter(trained.values()), defaults()[key])
    for restorer in networks.values():  # each network is told the acquisition it is scored on
        restorer.settings.update(resolved)
        restorer.sources.update({k: "command line" if getattr(args, k) is not None else restorer.sources[k]
                                 for k in ACQUISITION})
    return resolved


def prepare_outdir(args: argparse.Namespace, settings: dict[str, Any], columns: list[str],
                   weights: dict[str, str]) -> set[tuple[str, str]]:
    """Create OUT; refuse an existing metrics.csv unless --overwrite or --resume; return rows already done.

    ``weights``: {method: sha256 of its checkpoint file, or a peer's version and settings}; --resume refuses a method
    whose entry changed.
    """
    out, metrics = Path(args.out), Path(args.out) / "metrics.csv"
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "settings.json"
    if metrics.exists() and args.resume:
        if saved.exists():
            old = json.loads(saved.read_text())
            defaults = build_parser()  # a setting newer than the folder had its default there
            changed = [k for k in SETTINGS if old.get(k, defaults.get_default(k)) != settings[k]]
            if changed:
                raise InputError(f"{saved}: --resume with {changed[0]}={settings[changed[0]]} but the earlier run used "
                                 f"{old.get(changed[0])}; use the same settings or --overwrite")
            retrained = changed_weights(old.get("weights", {}), weights, args.redo)
            if retrained:
                what = (f"peer {retrained[0]} whose version or settings differ from those" if retrained[0] in PEERS
                        else f"--checkpoint {retrained[0]}=... whose file differs from the one")
                raise InputError(f"{saved}: --resume with {what} the earlier rows were scored with; add --redo "
                                 f"{retrained[0]}, or use --overwrite")
            atomic_write(saved, json.dumps({**old, "weights": {**old.get("weights", {}), **weights}}, indent=2))
        lines = metrics.read_text().splitlines(keepends=True)
        if [line.rstrip("\r\n") for line in lines[:1]] != [",".join(columns)]:
            raise InputError(f"{metrics}: columns differ from this run's (--segment?); use --overwrite or another --out")
        if args.redo:  # drop those methods' rows (atomically): they are computed again
            method = columns.index("method")
            kept = [line for line in lines[1:] if next(csv.reader([line]))[method] not in args.redo]
            atomic_write(metrics, "".join(lines[:1] + kept))
        return {(r["subject"], r["method"]) for r in read_rows(metrics)}
    if metrics.exists() and not args.overwrite:
        raise InputError(f"{metrics} exists; pass --resume to continue it or --overwrite to start afresh")
    metrics.write_text(",".join(columns) + "\n")
    saved.write_text(json.dumps({**settings, "weights": weights}, indent=2))
    return set()


def saved_prediction(index: dict[str, Path], volume: VolumeFile, shape: tuple[int, ...]) -> torch.Tensor:
    stem = volume_stem(volume.image)
    data, _ = read_volume(index[stem])
    if tuple(data.shape[1:]) != shape:
        raise InputError(f"{index[stem]}: shape {tuple(data.shape[1:])} != reference {shape}; predict on the reference grid "
                         "(python -m inpaint.predict --simulate)")
    return data[0]


def file_order_borders(shape: tuple[int, ...], axis: int, restorer: Restorer) -> list[list[int]]:
    """Patch-edge planes of a method's network grid (run with the slice axis last), per axis of the file's array."""
    settings = restorer.settings
    perm = slice_last_permutation(axis)
    borders = patch_borders(tuple(shape[a] for a in perm), settings["patch_size"], settings["overlap"])
    return [borders[perm.index(a)] for a in range(3)]


def evaluate_subject(volume: VolumeFile, methods: dict[str, Any], setting: dict[str, Any], skip: set[str],
                     panel: dict[str, Any] | None = None, scorers: tuple[Any, ...] = ()) -> Iterator[dict[str, Any] | None]:
    """Fill and score one subject with every method not in ``skip``: yields one metrics row per method (None
    for a method in ``skip`` filled again for the panel).

    Args:
        volume: the reference volume (and mask).
        methods: from :func:`build_methods`.
        setting: the degradation (:func:`acquisition`).
        skip: methods whose rows exist already.
        panel: if given, filled with this subject's volumes and every method's prediction (for the slice panel).
        scorers: ``TissueScorer`` (``--segment``) and/or ``MorphometryScorer`` (``--morphometry``): more columns.
    """
    source = str(volume.image)
    data, affine = read_volume(volume.image)
    reference = data[0]
    mask = brain_mask(reference, read_volume(volume.mask)[0][0] if volume.mask else None, source)
    degraded = degrade(reference, affine, setting["interval"], setting["offset"], source, setting["thick_slices"])
    network_mask = mask if volume.mask else None  # None: input > 0, never the missing reference slices
    slice_last = spacing_slice_last(affine, degraded.axis)
    signs = [] if volume.mask else head_signs(reference.permute(*slice_last_permutation(degraded.axis)), slice_last)
    if signs:
        log.warning("%s: looks like a whole head (%s) and has no mask: the metrics cover the head; give a brain mask "
                    "named like %s_mask.nii.gz beside it", source, "; ".join(signs), volume.name)
    if any(m not in skip for m in methods):
        for scorer in scorers:
            scorer.start(volume.name, reference, mask, affine)
    if panel is not None:
        panel.update({"reference": reference, "mask": mask, "known": degraded.known, "affine": affine,
                      "subject": volume.name, "predictions": {}})
    for name, method in methods.items():
        if name in skip and panel is None:
            continue
        start = time.perf_counter()
        if isinstance(method, dict):
            filled, seconds, borders = saved_prediction(method, volume, tuple(reference.shape)), float("nan"), None
        else:
            filled = method(degraded, network_mask, slice_last, source, affine=affine)
            seconds = time.perf_counter() - start
            borders = (file_order_borders(tuple(reference.shape), degraded.axis, method)
                       if isinstance(method, Restorer) else None)  # a peer: linear's grid below
        if panel is not None:
            panel["predictions"][name] = filled
        if name in skip:
            yield None  # recomputed for the panel only (a resumed run): progress, no row
        else:
            seam = seam_ratio(filled, mask, borders or file_order_borders(tuple(reference.shape), degraded.axis,
                                                                          methods["linear"]))
            yield {"subject": volume.name, "method": name, **volume_metrics(filled, reference, mask, degraded.known),
                   "seam": seam, "seconds": seconds, **{k: v for scorer in scorers for k, v in scorer.score(filled, name).items()}}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m inpaint.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Errors are one line with exit code 2; a failing subject is named and the "
                                            "rows before it stay in metrics.csv (continue with --resume).")
    parser.add_argument("--data", required=True, metavar="DIR", help="folder of reference volumes (recursive; masks matched by name)")
    parser.add_argument("--methods", default="linear,cubic",
                        help="classical methods and peers (soup_gan, eclare: their own venvs, make setup-peers; "
                             "inpaint/peers.py), comma-separated; linear is always included, as the baseline "
                             "(default: linear,cubic)")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                        help="a trained generator (.ckpt from inpaint.fit, or 'pretrained'); repeatable")
    parser.add_argument("--prediction", action="append", default=[], metavar="NAME=DIR",
                        help="volumes predicted elsewhere, matched to references by file name; repeatable")
    add_arguments(parser)
    parser.add_argument("--subjects", metavar="IDS", help="comma-separated subject ids, e.g. sub-02,sub-03 (default: all; with --split: some of its --split-name subjects)")
    parser.add_argument("--split", metavar="FILE.tsv",
                        help="TSV with columns subject, split: evaluate the subjects of --split-name")
    parser.add_argument("--split-name", default="test", choices=("train", "val", "test"), help="which split of --split (default: test)")
    parser.add_argument("--allow-seen", action="store_true",
                        help="score checkpoints on subjects they trained on or were selected on (refused by default)")
    parser.add_argument("--panel-subject", metavar="ID", help="subject of the slice panel figure (default: the first)")
    parser.add_argument("--out", required=True, metavar="OUTDIR", help="output folder: metrics.csv, summary.md, figures/")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--overwrite", action="store_true", help="start afresh in an OUT that has a metrics.csv")
    again.add_argument("--resume", action="store_true", help="skip (subject, method) rows already in OUT/metrics.csv")
    parser.add_argument("--redo", action="append", default=[], metavar="NAME",
                        help="with --resume: score method NAME again (e.g. a retrained --checkpoint NAME=...) and keep "
                             "the other methods' rows; repeatable")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where networks run (default: cuda if available)")
    parser.add_argument("--no-figures", action="store_true", help="skip the figures")
    parser.add_argument("--segment", action="store_true",
                        help="also GM/WM/CSF Dice and volumes with ANTsPy Atropos (pip install -e .[segment]; slow)")
    parser.add_argument("--morphometry", action="store_true",
                        help="also regional GM volume and cortical thickness (AAL2, the paper's 8 regions), tissue Dice "
                             "with template priors, GM maps in MNI (pip install -e .[segment]; slow: a registration per subject, a "
                             "segmentation and a thickness map per volume)")
    parser.add_argument("--thickness", choices=THICKNESS_METHODS, default=THICKNESS_METHODS[0],
                        help="--morphometry's cortical thickness: distance (WM + outer-boundary distances, seconds) or "
                             "direct (DiReCT, ants.kelly_kapowski, minutes per volume) (default: %(default)s)")
    return parser


def run(args: argparse.Namespace, command: str) -> Path:
    """Evaluate everything; returns OUT. Raises InputError naming the subject on failure."""
    check_settings(overrides(args))  # values in range before any checkpoint is loaded
    if args.redo and not args.resume:
        raise InputError(f"--redo {args.redo[0]} needs --resume (it recomputes one method's rows of an earlier run)")
    volumes = select_volumes(args)
    methods = build_methods(args)
    check_unseen(volumes, methods, args.allow_seen)
    for name, index in ((n, m) for n, m in methods.items() if isinstance(m, dict)):
        missing = [v for v in volumes if volume_stem(v.image) not in index]
        if missing:
            raise InputError(f"--prediction {name}: no file named {volume_stem(missing[0].image)}.nii(.gz) for "
                             f"{missing[0].name} ({len(missing)} missing); name predictions as their reference files")
    unknown = [n for n in args.redo if n not in methods]
    if unknown:
        raise InputError(f"--redo {unknown[0]}: not a method of this run; choose from {', '.join(methods)}")
    setting = acquisition(args, methods)
    check_settings(setting)
    resolve_peers(methods, setting)
    settings = {**{k: getattr(args, k) for k in SETTINGS}, **setting}
    if args.segment:
        require_ants()  # fail before any work (--morphometry: MorphometryScorer checks its own needs)
    columns = COLUMNS + (SEGMENT_COLUMNS if args.segment else []) + (MORPHOMETRY_COLUMNS if args.morphometry else [])
    weights = {n: file_digest(m.method.checkpoint_path) for n, m in trained_networks(methods).items()}
    weights |= {n: m.describe() for n, m in methods.items() if isinstance(m, PeerRestorer)}  # version and settings
    done = prepare_outdir(args, settings, columns, weights)
    scorer = TissueScorer(Path(args.out), fresh=not args.resume) if args.segment else None
    scorers = tuple(s for s in (scorer, MorphometryScorer(Path(args.out), fresh=not args.resume, thickness=args.thickness)
                                if args.morphometry else None) if s is not None)
    panel_name = args.panel_subject or volumes[0].name
    if args.panel_subject and panel_name not in {v.name for v in volumes}:
        raise InputError(f"--panel-subject {panel_name!r} is not among the evaluated subjects")
    out = Path(args.out)
    todo = sum((v.name, m) not in done or (v.name == panel_name and not args.no_figures)  # the panel's predictions
               for v in volumes for m in methods)
    panel: dict[str, Any] = {}
    with (out / "metrics.csv").open("a", newline="") as handle, tqdm(total=todo, unit="row", desc="evaluate") as bar:
        writer = csv.DictWriter(handle, columns)
        for volume in volumes:
            skip = {m for m in methods if (volume.name, m) in done}
            keep = volume.name == panel_name and not args.no_figures
            if not keep and len(skip) == len(methods):
                continue
            bar.set_postfix_str(volume.name)
            try:
                for row in evaluate_subject(volume, methods, setting, skip, panel if keep else None, scorers):
                    if row is not None:
                        writer.writerow({k: (f"{v:.8g}" if isinstance(v, float) else v) for k, v in row.items()})
                        handle.flush()
                    bar.update()
            except (InputError, ValueError, RuntimeError) as error:
                raise SubjectError(f"{volume.name} ({volume.image}): {error}") from None
    rows = read_rows(out / "metrics.csv")
    record = json.loads((out / "settings.json").read_text()) if (out / "settings.json").exists() else {}
    record["commands"] = [*record.get("commands", []), command]  # a resumed run lists every invocation
    networks = trained_networks(methods)
    record["restore"] = {n: m.settings for n, m in networks.items()}
    (out / "settings.json").write_text(json.dumps(record, indent=2))
    info = {"commands": record["commands"], "data": str(args.data), "subjects": len({r["subject"] for r in rows}), **settings,
            "checkpoints": {n: m.method.checkpoint_path for n, m in networks.items()},
            "restore": {n: m.describe() for n, m in networks.items()},
            "peers": {n: m.describe() for n, m in methods.items() if isinstance(m, PeerRestorer)},
            "predictions": dict(named(args.prediction, "--prediction")), "device": args.device}
    segments = scorer.reference_rows() if scorer is not None else None
    summary = summary_markdown(rows, list(methods), info, segments)
    if args.morphometry:
        references = read_rows(out / "morphometry" / "reference.csv")
        table = regional_agreement(rows, references, list(methods))
        summary += "\n".join(morphometry_markdown(table, rows, references, list(methods), args.thickness)
                             + evaluate_section(out, args.data, list(methods), not args.no_figures)) + "\n"
        if not args.no_figures:
            morphometry_figures(table, rows, references, list(methods), out)
    (out / "summary.md").write_text(summary)
    if not args.no_figures:
        figures = out / "figures"
        box_plots(rows, list(methods), figures, f"; interval {setting['interval']}, offset {setting['offset']}")
        if panel:
            slice_panel(panel, rows, figures / f"panel_{panel_name}.png", setting["interval"], setting["offset"])
    return out


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        out = run(args, "python -m inpaint.evaluate " + shlex.join(argv))
    except (InputError, FileExistsError) as error:
        notes = [f"rows computed so far are in {Path(args.out) / 'metrics.csv'}; fix the cause and rerun with --resume"]
        return report(error, *(notes if isinstance(error, SubjectError) else []))
    print(f"wrote {out / 'metrics.csv'}, {out / 'summary.md'}" + ("" if args.no_figures else f", {out / 'figures'}/"))
    print((out / "summary.md").read_text().split("\n## ")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
