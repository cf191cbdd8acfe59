"""The group pattern of Kang et al. Fig. 7: does a method's fill show the reference's group difference?

Reads the output folders of ``inpaint.evaluate --morphometry`` (several are merged, e.g. the test split
with the networks and the training split with the classical methods only: a network is scored only on
subjects it did not train on, so its pattern covers fewer subjects) and ``participants.tsv`` (columns
``participant_id``, ``group``, ``age``, ``sex`` or ``gender``).

Per method, over the subjects it has rows for, a linear model per voxel of the smoothed, modulated GM
maps in MNI and per region of the regional GM volume and thickness, ``value ~ 1 + group + age + sex``
(sex only when both occur), gives the group's t (first group of ``--contrast`` minus the second; subjects
in neither group are left out). The reference's t over the *same*
subjects is computed alike; the agreement is the Pearson r of the two t maps inside the analysis mask
(mean reference GM > ``MASK_THRESHOLD``) and of the two sets of regional t values, each beside its mean
± std over ``SPLITS`` random relabellings of the groups (how well a method keeps the difference between
arbitrary groups of the same subjects). Whether the reference itself shows a group difference is tested
by permuting the group labels (family-wise p of the largest |t|). When the methods have different
subjects, each method with more is taken again over the subjects all have ("common subjects" rows).

    python -m inpaint.morphometry_groups eval-out/ds002748_cpu/morphometry eval-out/ds002748_cpu/morphometry_train \\
        --participants ../shared/data/ds002748/participants.tsv --out eval-out/ds002748_cpu/groups
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from inpaint.data.io import InputError, atomic_write, write_volume
from inpaint.errors import report
from inpaint.morphometry import REGION_NAMES
from inpaint.morphometry_report import QUANTITIES
from inpaint.reporting import read_rows

CONTRAST = ("depr", "control")  # ds002748: depressed minus control
MASK_THRESHOLD = 0.2  # analysis voxels: the subjects' mean smoothed, modulated reference GM above this
PERMUTATIONS = 1000
SPLITS = 100  # random relabellings for the agreement of an arbitrary split (shared anatomy, no group effect)
MIN_PER_GROUP = 2


def read_participants(path: Path) -> dict[str, dict[str, Any]]:
    """participants.tsv -> {subject: {"group", "age", "sex"}} (sex 1.0 for m/male, 0.0 otherwise)."""
    with Path(path).open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    sex_column = next((c for c in ("sex", "gender") if rows and c in rows[0]), None)
    if not rows or any(c not in rows[0] for c in ("participant_id", "group", "age")) or sex_column is None:
        raise InputError(f"{path}: needs the columns participant_id, group, age and sex (or gender)")
    return {r["participant_id"]: {"group": r["group"], "age": float(r["age"]),
                                  "sex": float(r[sex_column].strip().lower() in ("m", "male"))} for r in rows}


def design(subjects: list[str], participants: dict[str, dict[str, Any]], contrast: tuple[str, str] = CONTRAST) -> np.ndarray:
    """(n, p) design: intercept, group (1 for ``contrast[0]``), centred age, and sex when both occur and it is not
    confounded with the group (the design stays of full rank); column 1 is tested."""
    missing = [s for s in subjects if s not in participants]
    if missing:
        raise InputError(f"{missing[0]} is not in participants.tsv; every evaluated subject needs a group")
    info = [participants[s] for s in subjects]
    age = np.array([i["age"] for i in info])
    sex = np.array([i["sex"] for i in info])
    columns = [np.ones(len(subjects)), np.array([float(i["group"] == contrast[0]) for i in info]), age - age.mean()]
    if 0 < sex.sum() < len(sex) and full_rank(np.stack([*columns, sex], 1)):
        columns.append(sex)
    return np.stack(columns, 1)


def full_rank(x: np.ndarray) -> bool:
    """Whether the columns of the design ``x`` (n, p) are independent (its coefficients can be estimated)."""
    return bool(np.linalg.matrix_rank(x) == x.shape[1])


def group_t(values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """t of the group coefficient (column 1 of ``x``, (n, p)) for each column of ``values`` (n, V) -> (V,)."""
    xtx_inverse = np.linalg.inv(x.T @ x)
    beta = xtx_inverse @ x.T @ values
    residual = values - x @ beta
    dof = x.shape[0] - x.shape[1]
    variance = (residual**2).sum(0) / dof * xtx_inverse[1, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(variance > 0, beta[1] / np.sqrt(variance), 0.0)


def relabelled(x: np.ndarray, count: int, seed: int = 0) -> Iterator[np.ndarray]:
    """``count`` copies of the design ``x`` (n, p) with the group column permuted (covariates stay with their
    subjects); draws that confound the group with a covariate (rank-deficient) are skipped."""
    rng = np.random.default_rng(seed)
    made = 0
    for _ in range(100 * count):
        shuffled = x.copy()
        shuffled[:, 1] = rng.permutation(x[:, 1])
        if full_rank(shuffled):
            made += 1
            yield shuffled
            if made == count:
                return


def permutation_p(values: np.ndarray, x: np.ndarray, permutations: int = PERMUTATIONS, seed: int = 0) -> float:
    """Family-wise p of the largest |group t| over the columns of ``values`` (n, V), group labels permuted."""
    observed = np.abs(group_t(values, x)).max()
    maxima = [np.abs(group_t(values, shuffled)).max() for shuffled in relabelled(x, permutations, seed)]
    return (sum(m >= observed for m in maxima) + 1) / (len(maxima) + 1)


def split_agreement(reference: np.ndarray, method: np.ndarray, x: np.ndarray, splits: int = SPLITS) -> tuple[float, float]:
    """Mean and std of the r between the reference's and the method's group t, (n, V) each, over random
    relabellings of the groups: how well the method keeps a difference between arbitrary subject groups.
    With no real group effect, the r of the true groups is one draw from this distribution."""
    r = np.array([pearson(group_t(reference, shuffled), group_t(method, shuffled))
                  for shuffled in relabelled(x, splits, seed=1)])
    r = r[np.isfinite(r)]
    return (float(r.mean()), float(r.std())) if len(r) else (float("nan"), float("nan"))


@dataclass
class Measurements:
    """What the evaluate folders hold: metrics rows, reference rows and GM map paths keyed (subject, name)."""

    rows: list[dict[str, Any]]
    references: dict[str, dict[str, Any]]
    maps: dict[tuple[str, str], Path]

    @classmethod
    def read(cls, folders: list[Path]) -> Measurements:
        rows, references, maps, seen = [], {}, {}, set()
        for folder in map(Path, folders):
            for needed in (folder / "metrics.csv", folder / "morphometry" / "reference.csv"):
                if not needed.is_file():
                    raise InputError(f"{needed} is missing: give folders written by inpaint.evaluate --morphometry")
            for row in read_rows(folder / "metrics.csv"):
                key = (row["subject"], row["method"])
                if key in seen:
                    raise InputError(f"{folder}: {row['subject']} {row['method']} is also in an earlier folder; "
                                     "give each subject and method once")
                seen.add(key)
                rows.append(row)
            references.update({r["subject"]: r for r in read_rows(folder / "morphometry" / "reference.csv")})
            for path in (folder / "morphometry" / "gm_mni").glob("*.nii.gz"):
                subject, name = path.name.removesuffix(".nii.gz").split("_", 1)
                maps[(subject, name)] = path
        return cls(rows, references, maps)

    def subjects(self, method: str) -> list[str]:
        """Subjects with a row, a reference row and both GM maps for ``method``, sorted."""
        return sorted(r["subject"] for r in self.rows if r["method"] == method and r["subject"] in self.references
                      and {(r["subject"], "reference"), (r["subject"], method)} <= self.maps.keys())

    def stack(self, subjects: list[str], name: str) -> tuple[np.ndarray, np.ndarray]:
        """GM maps of ``name`` (a method or ``reference``): (n, X, Y, Z) float32 and the affine."""
        images = [nib.load(str(self.maps[(s, name)])) for s in subjects]
        return np.stack([np.asarray(i.dataobj, dtype=np.float32) for i in images]), images[0].affine

    def regional(self, subjects: list[str], name: str, quantity: str) -> np.ndarray:
        """(n, regions) regional values of ``name`` (a method or ``reference``)."""
        source = {s: self.references[s] for s in subjects} if name == "reference" else \
            {r["subject"]: r for r in self.rows if r["method"] == name}
        return np.array([[source[s][f"{region}_{quantity}"] for region in REGION_NAMES] for s in subjects], dtype=np.float64)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    return float(np.corrcoef(a, b)[0, 1]) if len(a) > 2 and a.std() > 0 and b.std() > 0 else float("nan")


def group_pattern(data: Measurements, participants: dict[str, dict[str, Any]], methods: list[str],
                  contrast: tuple[str, str] = CONTRAST, permutations: int = PERMUTATIONS,
                  within: set[str] | None = None, references: dict[tuple[str, ...], tuple] | None = None) -> list[dict[str, Any]]:
    """Per method with ≥ ``MIN_PER_GROUP`` subjects in each group: t maps, regional t and their agreement.

    ``within``: only these subjects (default: every subject the method has). ``references``: the reference's
    side by subject set (its masked maps (n, V), mask, affine and p), read and permuted once, shared between calls.
    Returns one dict per method: ``method``, ``label`` (the table's name for the row), ``subjects``,
    ``counts`` (per group), ``t_reference`` and
    ``t_method`` (X, Y, Z), ``affine``, ``mask``, ``map_r``, ``map_r_splits`` (:func:`split_agreement`),
    ``p_reference`` (permutation, family-wise), and per quantity ``regional_{q}`` = (t reference, t method)
    over ``REGION_NAMES``, ``region_r_{q}`` and ``region_r_splits_{q}``.
    """
    results, references = [], {} if references is None else references
    for method in methods:
        subjects = [s for s in data.subjects(method) if (within is None or s in within)
                    and (s not in participants or participants[s]["group"] in contrast)]  # unknown: design() refuses
        groups = [participants.get(s, {}).get("group") for s in subjects]
        counts = {g: groups.count(g) for g in contrast}
        if min(counts.values()) < MIN_PER_GROUP:
            continue
        x = design(subjects, participants, contrast)
        if x.shape[0] <= x.shape[1] or not full_rank(x):  # no residual degrees of freedom, or e.g. one age for all
            continue
        key = tuple(subjects)
        if key not in references:
            reference, affine = data.stack(subjects, "reference")
            mask = reference.mean(0) > MASK_THRESHOLD
            masked = reference[:, mask].astype(np.float64)
            references[key] = (masked, mask, affine, permutation_p(masked, x, permutations))
        masked, mask, affine, p_reference = references[key]
        values = [masked, data.stack(subjects, method)[0][:, mask].astype(np.float64)]
        t = {name: np.zeros(mask.shape, np.float32) for name in ("reference", method)}
        for name, v in zip(t, values, strict=True):
            t[name][mask] = group_t(v, x)
        result = {"method": method, "label": method, "subjects": subjects, "counts": counts, "t_reference": t["reference"],
                  "t_method": t[method], "affine": affine, "mask": mask,
                  "map_r": pearson(t["reference"][mask], t[method][mask]), "map_r_splits": split_agreement(*values, x),
                  "p_reference": p_reference}
        for quantity in QUANTITIES:
            regional = [data.regional(subjects, name, quantity) for name in ("reference", method)]
            pair = [group_t(v, x) for v in regional]
            result[f"regional_{quantity}"] = pair
            result[f"region_r_{quantity}"] = pearson(*pair)
            result[f"region_r_splits_{quantity}"] = split_agreement(*regional, x)
        results.append(result)
    return results


def like_for_like(data: Measurements, participants: dict[str, dict[str, Any]], results: list[dict[str, Any]],
                  contrast: tuple[str, str] = CONTRAST, permutations: int = PERMUTATIONS,
                  references: dict[tuple[str, ...], tuple] | None = None) -> list[dict[str, Any]]:
    """Each method of ``results`` (:func:`group_pattern`) with more subjects again, over the subjects all of them
    have ([] when they all have the same, or there are fewer than two).

    A network is scored only on subjects it did not train on, the classical methods on all; the agreement
    of two t maps rises with the number of subjects, so these rows and those of the methods that have only
    the common subjects compare the methods on equal terms.
    """
    sets = [set(r["subjects"]) for r in results]
    if len(sets) < 2:
        return []
    common = set.intersection(*sets)
    wider = [r["method"] for r, s in zip(results, sets, strict=True) if s != common]  # the others already are
    again = group_pattern(data, participants, wider, contrast, permutations, within=common, references=references) if wider else []
    for r in again:
        r["label"] = f"{r['method']} (common subjects)"
    return again


def group_report(data: Measurements, participants: dict[str, dict[str, Any]], methods: list[str],
                 contrast: tuple[str, str] = CONTRAST, permutations: int = PERMUTATIONS
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """:func:`group_pattern` of each method and its :func:`like_for_like` rows, the reference read and permuted once per subject set."""
    references: dict[tuple[str, ...], tuple] = {}
    results = group_pattern(data, participants, methods, contrast, permutations, references=references)
    return results, like_for_like(data, participants, results, contrast, permutations, references)


def group_markdown(results: list[dict[str, Any]], contrast: tuple[str, str] = CONTRAST,
                   common: list[dict[str, Any]] = ()) -> list[str]:
    """The summary section: agreement per method (then the ``common`` rows of :func:`like_for_like`), then the
    regional group t of the reference and each method."""
    lines = ["", f"## Group pattern ({contrast[0]} - {contrast[1]}; value ~ 1 + group + age (+ sex when both occur))", ""]
    if not results:
        return lines + [f"Fewer than {MIN_PER_GROUP} subjects in a group for every method: no pattern.", ""]
    lines += ["| method | subjects (" + " / ".join(contrast) + ") | r of voxel t maps (random splits) | r of regional GM t "
              "(random splits) | r of regional thickness t (random splits) | reference max abs t (family-wise p) | "
              "method max abs t |", "|---|---|---|---|---|---|---|"]

    def agreement(r: dict[str, Any], key: str) -> str:
        mean, std = r[key.replace("_r", "_r_splits", 1)]
        return f"{r[key]:.3f} ({mean:.2f} ± {std:.2f})"

    for r in [*results, *common]:
        mask = r["mask"]
        lines.append(f"| {r['label']} | {len(r['subjects'])} ({' / '.join(str(r['counts'][g]) for g in contrast)}) | "
                     f"{agreement(r, 'map_r')} | {agreement(r, 'region_r_gm_ml')} | {agreement(r, 'region_r_thickness_mm')} | "
                     f"{np.abs(r['t_reference'][mask]).max():.2f} ({r['p_reference']:.3f}) | "
                     f"{np.abs(r['t_method'][mask]).max():.2f} |")
    lines += ["", f"(random splits): mean ± std of the same r over {SPLITS} random relabellings of the groups, how well a "
                  "method keeps the difference between arbitrary groups of these subjects. When the reference shows no "
                  "group effect, the r of the true groups is one draw from that distribution."]
    if common:
        lines += ["", f"The methods have different subjects; the rows marked (common subjects) take a method again over "
                      f"the {len(common[0]['subjects'])} subjects all methods have: compare methods on those subjects."]
    for quantity, label in QUANTITIES.items():
        lines += ["", f"Regional group t, {label} (reference over each method's subjects / method):", "",
                  "| region | " + " | ".join(r["method"] for r in results) + " |", "|---|" + "---|" * len(results)]
        for k, region in enumerate(REGION_NAMES):
            cells = [f"{r[f'regional_{quantity}'][0][k]:+.2f} / {r[f'regional_{quantity}'][1][k]:+.2f}" for r in results]
            lines.append(f"| {region.replace('_', ' ')} | " + " | ".join(cells) + " |")
    return lines + [""]


def group_figure(results: list[dict[str, Any]], path: Path, limit: float = 4.0) -> Path:
    """Rows of t maps (axial, coronal, sagittal through the peak of the reference's |t|): reference, then method."""
    from inpaint.figures import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(2 * len(results), 3, figsize=(8, 2.6 * 2 * len(results)), squeeze=False, layout="constrained")
    for k, r in enumerate(results):
        peak = np.unravel_index(np.abs(r["t_reference"]).argmax(), r["t_reference"].shape)
        for row, (image, name) in enumerate(((r["t_reference"], f"reference ({len(r['subjects'])} subjects)"),
                                             (r["t_method"], r["method"]))):
            for view in range(3):
                ax = axes[2 * k + row, view]
                shown = ax.imshow(np.rot90(np.take(image, peak[2 - view], axis=2 - view)),
                                  cmap="RdBu_r", vmin=-limit, vmax=limit)
                ax.set_axis_off()
                if view == 0:
                    ax.set_title(f"{name}: group t", fontsize=8, loc="left")
        fig.colorbar(shown, ax=axes[2 * k:2 * k + 2, :], shrink=0.6)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def evaluate_section(out: Path, data_root: Path, methods: list[str], figures: bool) -> list[str]:
    """``inpaint.evaluate --morphometry``'s group section for its own folder ``out``, when ``data_root`` has a
    participants.tsv with a ``group`` column ([] otherwise); the figure goes to ``out/figures/group_t.png``."""
    path = Path(data_root) / "participants.tsv"
    if not path.is_file() or "group" not in path.read_text().splitlines()[0].split("\t"):
        return []
    results, common = group_report(Measurements.read([out]), read_participants(path), methods)
    if results and figures:
        group_figure(results, Path(out) / "figures" / "group_t.png")
    return group_markdown(results, CONTRAST, common)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m inpaint.morphometry_groups", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, metavar="EVAL_DIR", help="inpaint.evaluate --morphometry outputs")
    parser.add_argument("--participants", required=True, type=Path, metavar="TSV", help="participants.tsv with group, age, sex")
    parser.add_argument("--contrast", nargs=2, default=list(CONTRAST), metavar=("GROUP", "GROUP"),
                        help=f"first minus second (default: {' '.join(CONTRAST)})")
    parser.add_argument("--permutations", type=int, default=PERMUTATIONS, help=f"for the reference's p (default {PERMUTATIONS})")
    parser.add_argument("--out", required=True, type=Path, metavar="OUTDIR", help="groups.md, figures/, t maps")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUTDIR/groups.md")
    return parser


def write_report(args: argparse.Namespace) -> str:
    """The t maps (NIfTI), the figure and groups.md of ``args``; returns groups.md's text."""
    out_md = args.out / "groups.md"
    if out_md.exists() and not args.overwrite:
        raise InputError(f"{out_md} exists; pass --overwrite to replace it or choose another --out")
    participants = read_participants(args.participants)
    data = Measurements.read(args.folders)
    methods = list(dict.fromkeys(r["method"] for r in data.rows))
    results, common = group_report(data, participants, methods, tuple(args.contrast), args.permutations)
    for r in results:
        for name in ("reference", "method"):
            write_volume(r[f"t_{name}"], r["affine"], args.out / f"group_t_{r['method']}_{name}.nii.gz", overwrite=True)
    if results:
        group_figure(results, args.out / "figures" / "group_t.png")
    text = "\n".join([f"# Group pattern: {', '.join(map(str, args.folders))}", *group_markdown(results, tuple(args.contrast), common)])
    atomic_write(out_md, text)
    return text


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        print(write_report(args))
    except InputError as error:
        return report(error)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
