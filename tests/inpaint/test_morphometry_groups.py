"""inpaint.morphometry_groups: the group t maps and regional t of the reference and of each method (no ANTs)."""

from __future__ import annotations

import csv
import re

import nibabel as nib
import numpy as np
import pytest

from inpaint.morphometry import REGION_NAMES
from inpaint.morphometry_groups import (
    design,
    evaluate_section,
    group_t,
    main,
    permutation_p,
    relabelled,
    split_agreement,
)

QUANTITIES = ("gm_ml", "thickness_mm")
SHAPE = (12, 14, 10)


def write_folder(folder, subjects, groups, methods, rng):
    """An evaluate --morphometry folder: the reference has a group effect in one corner and in regions 0-3;
    ``faithful`` = reference + small noise; ``flat`` = no group effect at all."""
    (folder / "morphometry" / "gm_mni").mkdir(parents=True)
    rows, references = [], []
    for subject in subjects:
        effect = 1.0 if groups[subject] == "depr" else 0.0
        base = rng.uniform(0.4, 0.6, SHAPE).astype(np.float32)
        reference = base.copy()
        reference[:4, :4, :4] += 0.3 * effect
        regional = {f"{n}_{q}": 5 + rng.normal(0, 0.2) + (2 * effect if k < 4 else 0)
                    for k, n in enumerate(REGION_NAMES) for q in QUANTITIES}
        references.append({"subject": subject, **regional})
        volumes = {"reference": reference, "faithful": reference + rng.normal(0, 0.002, SHAPE).astype(np.float32),
                   "flat": base + rng.normal(0, 0.01, SHAPE).astype(np.float32)}
        for name in ["reference", *methods]:
            nib.save(nib.Nifti1Image(volumes[name], np.eye(4)), str(folder / "morphometry" / "gm_mni" / f"{subject}_{name}.nii.gz"))
        for method in methods:
            values = {k: v + rng.normal(0, 0.01) for k, v in regional.items()} if method == "faithful" else \
                {k: 5 + rng.normal(0, 0.2) for k in regional}
            rows.append({"subject": subject, "method": method, **values})
    for path, table in ((folder / "metrics.csv", rows), (folder / "morphometry" / "reference.csv", references)):
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, list(table[0]))
            writer.writeheader()
            writer.writerows(table)


def summary_rows(text):
    """The summary table of groups.md: {label: cells}."""
    return {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in text.splitlines()
            if line.startswith("| ") and re.match(r"\d+ \(", line.split(" | ")[1] if " | " in line else "")}


@pytest.fixture
def study(tmp_path):
    rng = np.random.default_rng(0)
    subjects = [f"sub-{i:02d}" for i in range(16)]
    groups = {s: "depr" if i % 2 else "control" for i, s in enumerate(subjects)}
    participants = tmp_path / "participants.tsv"
    participants.write_text("participant_id\tage\tgender\tgroup\n" + "".join(
        f"{s}\t{20 + 3 * i}\t{'m' if i % 3 else 'f'}\t{groups[s]}\n" for i, s in enumerate(subjects)))
    # two folders, as the test split (with 'faithful', a network) and the training split (classical only)
    write_folder(tmp_path / "held_out", subjects[:6], groups, ["flat", "faithful"], rng)
    write_folder(tmp_path / "train", subjects[6:], groups, ["flat"], rng)
    return tmp_path, participants


def test_group_t_matches_a_two_sample_t_test_without_covariates():
    rng = np.random.default_rng(1)
    values = rng.normal(0, 1, (10, 3))
    values[5:] += 1.5
    x = np.stack([np.ones(10), np.r_[np.zeros(5), np.ones(5)]], 1)
    a, b = values[5:], values[:5]
    pooled = np.sqrt(((a.var(0, ddof=1) + b.var(0, ddof=1)) / 2) * (2 / 5))
    np.testing.assert_allclose(group_t(values, x), (a.mean(0) - b.mean(0)) / pooled, rtol=1e-10)


def test_design_adds_age_and_sex_only_when_both_sexes_occur():
    people = {"a": {"group": "depr", "age": 30.0, "sex": 1.0}, "b": {"group": "control", "age": 40.0, "sex": 0.0},
              "c": {"group": "depr", "age": 50.0, "sex": 0.0}, "d": {"group": "control", "age": 60.0, "sex": 1.0},
              "e": {"group": "depr", "age": 20.0, "sex": 0.0}}
    x = design(["a", "b", "c", "d", "e"], people)
    np.testing.assert_allclose(x, [[1, 1, -10, 1], [1, 0, 0, 0], [1, 1, 10, 0], [1, 0, 20, 1], [1, 1, -20, 0]])
    assert design(["b", "c", "e"], people).shape == (3, 3)  # all women
    with pytest.raises(ValueError, match="sub-99 is not in participants.tsv"):
        design(["sub-99"], people)


def test_permutation_p_is_small_for_an_effect_and_not_for_noise():
    rng = np.random.default_rng(2)
    x = np.stack([np.ones(16), np.tile([0.0, 1.0], 8)], 1)
    noise = rng.normal(0, 1, (16, 50))
    assert permutation_p(noise + 3 * x[:, 1:], x, 200) < 0.01
    assert permutation_p(noise, x, 200) > 0.05


def test_split_agreement_measures_kept_subject_differences_not_the_group_effect():
    rng = np.random.default_rng(3)
    x = np.stack([np.ones(20), np.tile([0.0, 1.0], 10)], 1)
    anatomy = rng.normal(0, 1, (20, 200))
    mean, std = split_agreement(anatomy, anatomy + rng.normal(0, 0.1, anatomy.shape), x)
    assert mean > 0.95 and std < 0.05  # a method that keeps each subject's anatomy agrees for any split
    mean, std = split_agreement(anatomy, rng.normal(0, 1, anatomy.shape), x)
    assert abs(mean) < 0.1  # one that replaces it does not, whatever the groups
    # a real effect in 50 of 200 values that the method loses although it keeps the anatomy: the true
    # groups' r falls far below the random splits' (which do not see the effect)
    reference = anatomy.copy()
    reference[:, :50] += 2 * x[:, 1:]
    mean, std = split_agreement(reference, anatomy, x)
    assert mean > 0.9 and np.corrcoef(group_t(reference, x), group_t(anatomy, x))[0, 1] < mean - 5 * std


def test_a_faithful_method_keeps_the_pattern_and_a_flat_one_loses_it(study, capsys):
    root, participants = study
    out = root / "groups"
    assert main([str(root / "held_out"), str(root / "train"), "--participants", str(participants), "--out", str(out),
                 "--permutations", "100"]) == 0
    text = (out / "groups.md").read_text()
    rows = summary_rows(text)
    assert set(rows) == {"flat", "faithful", "flat (common subjects)"}
    assert all(re.fullmatch(r"-?\d\.\d{3} \(-?\d\.\d\d ± \d\.\d\d\)", cell) for row in rows.values() for cell in row[2:5])
    assert rows["flat"][1] == "16 (8 / 8)" and rows["faithful"][1] == "6 (3 / 3)"  # a network: held-out subjects only
    r = {name: [float(cell.split()[0]) for cell in row[2:5]] for name, row in rows.items()}  # "0.950 (0.93 ± 0.02)"
    assert r["faithful"][0] > 0.9 and r["faithful"][1] > 0.9
    assert r["flat"][0] < 0.5 and r["flat"][1] < 0.5
    assert "(0.010)" in rows["flat"][5]  # the reference's effect, all 16 subjects: p = 1 / 101
    # like for like: flat again over the 6 subjects both have (faithful has only those)
    assert rows["flat (common subjects)"][1] == "6 (3 / 3)" and "faithful (common subjects)" not in rows
    assert r["flat (common subjects)"][0] < r["faithful"][0] - 0.3
    assert "over the 6 subjects all methods have" in text
    assert (out / "figures" / "group_t.png").stat().st_size > 10_000
    t = nib.load(str(out / "group_t_flat_reference.nii.gz")).get_fdata()
    assert t[:4, :4, :4].mean() > 5 and abs(t[6:, 6:, 6:].mean()) < 1
    assert main([str(root / "train"), "--participants", str(participants), "--out", str(out)]) == 2
    assert "groups.md exists; pass --overwrite" in capsys.readouterr().err


def test_a_third_group_is_left_out_not_pooled_with_the_second(study):
    root, participants = study
    text = participants.read_text().replace("\tcontrol\n", "\tpatient\n", 2)  # sub-00, sub-02 move to a third group
    participants.write_text(text)
    out = root / "groups"
    assert main([str(root / "held_out"), str(root / "train"), "--participants", str(participants), "--out", str(out),
                 "--permutations", "10"]) == 0
    rows = summary_rows((out / "groups.md").read_text())
    assert rows["flat"][1] == "14 (8 / 6)"  # before: 16 (8 / 8), the third group counted as control
    assert "faithful" not in rows  # its held-out 6 keep 1 control: too few for a pattern


def test_a_subject_missing_from_participants_is_a_one_line_error(study, capsys):
    root, participants = study
    participants.write_text("".join(line for line in participants.read_text().splitlines(keepends=True)
                                    if not line.startswith("sub-03\t")))
    assert main([str(root / "held_out"), "--participants", str(participants), "--out", str(root / "groups")]) == 2
    error = capsys.readouterr().err.strip()
    assert "sub-03 is not in participants.tsv" in error and "\n" not in error


def test_methods_on_the_same_subjects_get_no_common_rows(study):
    root, participants = study
    assert main([str(root / "held_out"), "--participants", str(participants), "--out", str(root / "groups"),
                 "--permutations", "10"]) == 0
    text = (root / "groups" / "groups.md").read_text()
    assert set(summary_rows(text)) == {"flat", "faithful"} and "common subjects" not in text


def test_a_group_confounded_with_sex_drops_sex_and_relabellings_stay_fittable():
    people = {f"s{i}": {"group": "depr" if i < 3 else "control", "age": 20.0 + 7 * i, "sex": float(i < 3)} for i in range(6)}
    x = design(list(people), people)
    assert x.shape == (6, 3)  # sex = group: not separable, left out
    people = {k: {**v, "sex": float(k in ("s0", "s3", "s4"))} for k, v in people.items()}
    x = design(list(people), people)
    assert x.shape == (6, 4)
    draws = list(relabelled(x, 50))  # 3 of 6 men: 1 in 20 draws would make group = sex or 1 - sex
    assert len(draws) == 50 and all(np.linalg.matrix_rank(d) == 4 for d in draws)
    values = np.random.default_rng(4).normal(0, 1, (6, 30))
    assert 0 < permutation_p(values, x, 50) <= 1 and np.isfinite(split_agreement(values, values + 0.1, x)).all()


def test_a_subject_given_twice_is_refused(study, capsys):
    root, participants = study
    assert main([str(root / "train"), str(root / "train"), "--participants", str(participants),
                 "--out", str(root / "groups")]) == 2
    assert "is also in an earlier folder" in capsys.readouterr().err


def test_evaluate_adds_the_section_when_participants_have_groups(study):
    root, participants = study
    data = root / "data"
    data.mkdir()
    (data / "participants.tsv").write_text(participants.read_text())
    lines = evaluate_section(root / "held_out", data, ["flat", "faithful"], figures=True)
    assert lines[1].startswith("## Group pattern (depr - control") and any(line.startswith("| faithful | 6") for line in lines)
    assert (root / "held_out" / "figures" / "group_t.png").is_file()
    (data / "participants.tsv").write_text("participant_id\tage\nsub-00\t30\n")  # BIDS without groups: no section
    assert evaluate_section(root / "held_out", data, ["flat"], figures=True) == []
