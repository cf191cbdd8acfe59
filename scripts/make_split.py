"""Write a fixed, seeded train/val/test split of a BIDS folder, stratified by a participants.tsv column.

    python scripts/make_split.py ../shared/data/ds002748 experiments/splits/ds002748.tsv --val 4 --test 8
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path


def stratified_split(groups: dict[str, str], n_val: int, n_test: int, seed: int) -> dict[str, str]:
    """Seeded split whose test and val sets keep the groups' proportions (systematic stratification).

    Within each group the subjects are shuffled and subject i of n gets the key (i + 0.5) / n; sorting
    all subjects by key interleaves the groups in proportion, and test, then val, take the first ones.
    """
    rng = random.Random(seed)
    by_group: dict[str, list[str]] = {}
    for subject, group in sorted(groups.items()):
        by_group.setdefault(group, []).append(subject)
    keyed = []
    for group, members in sorted(by_group.items()):
        rng.shuffle(members)
        keyed += [((i + 0.5) / len(members), group, s) for i, s in enumerate(members)]
    order = [s for _, _, s in sorted(keyed)]
    split = {s: "test" for s in order[:n_test]} | {s: "val" for s in order[n_test : n_test + n_val]}
    return {s: split.get(s, "train") for s in sorted(groups)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--val", type=int, default=4)
    parser.add_argument("--test", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--column", default="group")
    args = parser.parse_args()
    with (args.root / "participants.tsv").open(newline="") as handle:
        rows = {r["participant_id"]: r[args.column] for r in csv.DictReader(handle, delimiter="\t")}
    present = {p.name.split("_")[0] for p in args.root.glob("sub-*_T1w.nii*")}
    groups = {s: g for s, g in rows.items() if s in present}
    split = stratified_split(groups, args.val, args.test, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["subject", "split", args.column])
        writer.writerows([s, split[s], groups[s]] for s in sorted(split))
    tmp.replace(args.out)
    counts = {k: sum(v == k for v in split.values()) for k in ("train", "val", "test")}
    print(f"wrote {args.out}: {counts}")


if __name__ == "__main__":
    main()
