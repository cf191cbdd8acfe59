"""Subjects from a folder of NIfTI files (recursive, BIDS names), brain masks matched by name, splits."""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

import torchio as tio

from inpaint.constants import MASK, NAME, PATH, TARGET
from inpaint.data.io import InputError, is_volume_file, read_volume, volume_stem

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class VolumeFile:
    """One reference volume and its optional brain mask."""

    name: str  # subject id: the file stem without a BIDS ``_T1w`` suffix
    image: Path
    mask: Path | None = None


def subject_name(stem: str) -> str:
    return stem[: -len("_T1w")] if stem.endswith("_T1w") else stem


def source_subject(name: str) -> str:
    """The subject a volume was made from: ``sub-03`` of ``sub-03_acq-bias`` (BIDS entities after the first ``_``)."""
    return name.split("_")[0] if name.startswith("sub-") else name


def find_volumes(root: str | Path, mask_token: str = "mask", setting: str = "data.root") -> list[VolumeFile]:
    """All volumes under ``root`` (recursive), each with the mask file whose name starts with its subject id.

    ``sub-02_T1w.nii.gz`` gets ``sub-02_T1w_mask.nii.gz`` or ``sub-02_desc-brain_mask.nii.gz`` if present.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder; set {setting} to a folder of .nii/.nii.gz/.mgz volumes")
    files = sorted(p for p in root.rglob("*") if is_volume_file(p))
    masks = [p for p in files if mask_token in volume_stem(p)]
    images = [p for p in files if mask_token not in volume_stem(p)]
    if not images:
        raise InputError(
            f"{root}: no NIfTI volumes found (.nii, .nii.gz, .mgz, searched recursively); "
            f"point {setting} at the folder that holds them"
        )
    volumes = []
    for image in images:
        name = subject_name(volume_stem(image))
        matches = [m for m in masks if volume_stem(m).startswith(name + "_")]
        volumes.append(VolumeFile(name, image, max(matches, key=lambda m: len(volume_stem(m)), default=None)))
    names = [v.name for v in volumes]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"{root}: several volumes share the subject id {duplicates[0]!r}; give each subject one file")
    return volumes


def read_split_file(path: str | Path) -> dict[str, str]:
    """TSV with columns ``subject`` and ``split`` (train/val/test) -> {subject: split}."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such split file; give --split a TSV with columns subject and split")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if not rows or not {"subject", "split"} <= set(rows[0]):
        raise InputError(f"{path}: a split file needs tab-separated columns 'subject' and 'split'")
    bad = [r["split"] for r in rows if r["split"] not in SPLITS]
    if bad:
        raise InputError(f"{path}: split {bad[0]!r} is not one of {', '.join(SPLITS)}")
    return {r["subject"]: r["split"] for r in rows}


def reference_files(data: str | Path, subjects: list[str]) -> list[Path]:
    """Each subject's one ``SUBJECT_*T1w.nii(.gz)`` directly in ``data``; all looked up before any work."""
    if not subjects:
        raise InputError(f"{data}: no subject to look up; check --split and --split-name")
    paths = []
    for subject in subjects:
        found = sorted(Path(data).glob(f"{subject}_*T1w.nii*"))
        if len(found) != 1:
            raise InputError(f"{data}: {len(found) or 'no'} {subject}_*T1w.nii(.gz) file(s) there"
                             f"{' (' + ', '.join(p.name for p in found) + ')' if found else ''}; "
                             "give --data the folder with one reference per subject")
        paths.append(found[0])
    return paths


def shifted_volumes(root: str | Path, splits: dict[str, list[VolumeFile]], mask_token: str = "mask") -> list[VolumeFile]:
    """The volumes of ``root`` (``data.val_shifted``), refused in one line if one was made from a training or test
    subject of ``splits``: validation must not score what the network trained on or what only the test may see."""
    volumes = find_volumes(root, mask_token, setting="data.val_shifted")
    for split in ("train", "test"):
        names = {source_subject(v.name) for v in splits.get(split, [])}
        leaked = [v for v in volumes if source_subject(v.name) in names]
        if leaked:
            raise InputError(f"data.val_shifted={root}: {leaked[0].image.name} is made from {source_subject(leaked[0].name)}, "
                             f"a {split} subject; make the shifted set from val subjects (scripts/make_shifted_val.py)")
    return volumes


def split_volumes(volumes: list[VolumeFile], val_fraction: float = 0.08, test_fraction: float = 0.15,
                  seed: int = 0, split_file: str | None = None, val_subjects: list[str] | None = None,
                  test_subjects: list[str] | None = None, missing_ok: bool = False) -> dict[str, list[VolumeFile]]:
    """Deterministic split by subject: a split file, explicit lists, else a seeded shuffle.

    ``missing_ok``: subjects of the split file without a volume are left out (else a one-line error); volumes
    the file does not list are in no split either way.
    """
    names = [v.name for v in volumes]
    if split_file:
        assignment = read_split_file(split_file)
        missing = sorted(set(assignment) - set(names))
        if missing and not missing_ok:
            raise InputError(f"{split_file}: subject {missing[0]!r} has no volume in data.root; fix the file or the root")
    elif val_subjects or test_subjects:
        unknown = sorted((set(val_subjects or []) | set(test_subjects or [])) - set(names))
        if unknown:
            raise InputError(f"data.val_subjects/test_subjects: unknown subject {unknown[0]!r}; known: {', '.join(names)}")
        assignment = {n: "val" for n in val_subjects or []} | {n: "test" for n in test_subjects or []}
        assignment = {n: assignment.get(n, "train") for n in names}
    else:
        order = sorted(names)
        random.Random(seed).shuffle(order)
        n_val = max(1, round(val_fraction * len(order))) if len(order) >= 2 else 0
        n_test = round(test_fraction * len(order)) if len(order) >= 3 else 0
        assignment = {n: "val" for n in order[:n_val]} | {n: "test" for n in order[n_val : n_val + n_test]}
        assignment = {n: assignment.get(n, "train") for n in names}
    return {s: [v for v in volumes if assignment.get(v.name) == s] for s in SPLITS}


def make_subject(volume: VolumeFile) -> tio.Subject:
    """A lazily loaded subject: ``target`` (+ ``mask`` when a mask file exists), name and path attributes."""
    images = {TARGET: tio.ScalarImage(volume.image, reader=read_volume)}
    if volume.mask is not None:
        images[MASK] = tio.LabelMap(volume.mask, reader=read_volume)
    return tio.Subject(images, **{NAME: volume.name, PATH: str(volume.image)})
