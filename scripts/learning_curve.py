"""Learning curves of training runs: validation PSNR gain over linear against patches seen and CPU-hours.

    python scripts/learning_curve.py "slice_resnet=runs/slice_resnet/campaign" \\
        --points "DenseUNet recipe (docs/results.md)=2112:0.147,10560:1.209" --out docs/figures/learning_curve.png

Each ``LABEL=RUN_DIR`` reads every ``RUN_DIR/logs/**/metrics.csv`` (a resumed run writes a new version
folder; all are merged by step). Patches seen and CPU-hours come from the ``work/*`` columns
(``inpaint.callbacks.WorkMeter``); where a log predates them, patches are ``step x --batch`` and the
CPU-hours are unknown (left out of that panel). A run that also validates on a shifted set
(``data.val_shifted``: ``val_shifted/psnr_gain``) gets a dashed curve of it in the same colour. ``--points LABEL=PATCHES:GAIN,...`` adds curves known
only as numbers; ``--mark TEXT=PATCHES:CPU_HOURS`` draws a labelled vertical line in both panels (e.g.
where the learning rate dropped). Prints the table it plots; ``--at 0.5,1,1.5`` also prints the runs side by side at
those CPU-hours (an A/B at equal compute: each gain interpolated linearly between the two validations around it,
blank outside a run's span). ``--until-hours H`` leaves out the validations after H CPU-hours (an A/B whose winner's
run went on as a campaign).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inpaint.data.io import atomic_write  # noqa: E402


def read_run(run_dir: Path, batch: int) -> list[dict[str, float]]:
    """Validation points of one run: step, patches, cpu_hours (NaN if unknown), gain, shifted (the shifted val set's
    gain, NaN if none), sorted by step."""
    points: dict[int, dict[str, float]] = {}
    for path in sorted(run_dir.glob("logs/**/metrics.csv")):
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                step = int(float(row["step"]))
                entry = points.setdefault(step, {"step": step, "patches": step * batch, "cpu_hours": math.nan,
                                                 "shifted": math.nan})
                if row.get("val/psnr_gain"):
                    entry["gain"] = float(row["val/psnr_gain"])
                if row.get("val_shifted/psnr_gain"):
                    entry["shifted"] = float(row["val_shifted/psnr_gain"])
                if row.get("work/patches_seen"):
                    entry["patches"] = float(row["work/patches_seen"])
                    entry["cpu_hours"] = float(row["work/cpu_hours"])
    return [p for _, p in sorted(points.items()) if "gain" in p]


def parse_points(spec: str) -> tuple[str, list[dict[str, float]]]:
    label, _, values = spec.partition("=")
    pairs = [v.split(":") for v in values.split(",") if v]
    return label, [{"patches": float(p), "gain": float(g), "cpu_hours": math.nan, "shifted": math.nan} for p, g in pairs]


def at_cpu_hours(points: list[dict[str, float]], hours: float, key: str) -> float:
    """``key`` ("gain" or "shifted") at ``hours`` CPU-hours, interpolated linearly between the validations around it;
    NaN outside the run's span or where the CPU-hours are unknown."""
    timed = [(p["cpu_hours"], p[key]) for p in points if not math.isnan(p["cpu_hours"]) and not math.isnan(p[key])]
    for (h0, v0), (h1, v1) in zip(timed, timed[1:], strict=False):
        if h0 <= hours <= h1:
            return v0 if h1 == h0 else v0 + (v1 - v0) * (hours - h0) / (h1 - h0)
    return math.nan


def print_at_cpu_hours(curves: list[tuple[str, list[dict[str, float]]]], hours: list[float]) -> None:
    """The runs side by side at equal CPU-hours: plain (and shifted, where logged) val gain of each."""
    columns = [(label, key) for label, points in curves for key in ("gain", "shifted")
               if any(not math.isnan(p[key]) and not math.isnan(p["cpu_hours"]) for p in points)]
    named = {"gain": "val gain (dB)", "shifted": "shifted val gain (dB)"}
    print("## at equal CPU-hours\n| CPU-hours | " + " | ".join(f"{label}: {named[key]}" for label, key in columns) +
          " |\n|---|" + "---|" * len(columns))
    points_of = dict(curves)
    for h in hours:
        values = (at_cpu_hours(points_of[label], h, key) for label, key in columns)
        print(f"| {h:.2f} | " + " | ".join("" if math.isnan(v) else f"{v:+.2f}" for v in values) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR")
    parser.add_argument("--points", action="append", default=[], metavar="LABEL=PATCHES:GAIN,...")
    parser.add_argument("--mark", action="append", default=[], metavar="TEXT=PATCHES:CPU_HOURS",
                        help="a labelled vertical line at these patches and CPU-hours")
    parser.add_argument("--batch", type=int, default=12, help="patches per step for logs without work/* columns")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--at", type=lambda text: [float(v) for v in text.split(",")], default=[],
                        metavar="HOURS,...", help="also print the runs side by side at these CPU-hours")
    parser.add_argument("--until-hours", type=float, default=math.inf, metavar="HOURS",
                        help="leave out the validations after this many CPU-hours")
    args = parser.parse_args(argv)
    curves = [(label, [p for p in read_run(Path(path), args.batch) if not p["cpu_hours"] > args.until_hours])
              for label, _, path in (r.partition("=") for r in args.runs)]
    curves += [parse_points(spec) for spec in args.points]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for label, points in curves:
        shifted = [p for p in points if not math.isnan(p["shifted"])]
        extra = (" shifted val gain (dB) |", "---|") if shifted else ("", "")
        print(f"## {label}\n| patches seen | CPU-hours | val PSNR gain (dB) |{extra[0]}\n|---|---|---|{extra[1]}")
        for p in points:
            print(f"| {p['patches']:,.0f} | {p['cpu_hours']:.2f} | {p['gain']:+.3f} |" +
                  (f" {p['shifted']:+.3f} |" if shifted else ""))
        for ax, x in zip(axes, ("patches", "cpu_hours"), strict=True):
            timed = [p for p in points if not math.isnan(p[x])]
            if not timed:
                continue
            line, = ax.plot([p[x] for p in timed], [p["gain"] for p in timed], "o-", label=label, ms=4)
            moved = [p for p in timed if not math.isnan(p["shifted"])]
            if moved:
                ax.plot([p[x] for p in moved], [p["shifted"] for p in moved], "s--", color=line.get_color(), ms=3,
                        label=f"{label}, shifted val")
    if args.at:
        print_at_cpu_hours(curves, args.at)
    for text, _, where in (m.rpartition("=") for m in args.mark):
        for ax, x in zip(axes, map(float, where.split(":")), strict=True):
            ax.axvline(x, color="grey", lw=0.8, ls=":")
            ax.annotate(text, (x, 0), xytext=(3, 3), textcoords="offset points", fontsize=7, color="grey")
    seen = [p["patches"] for _, points in curves for p in points]
    if seen and max(seen) > 10 * min(seen):  # a log axis only where it spans more than a decade (else no labels)
        axes[0].set_xscale("log")
        axes[0].xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # no overlapping minor labels
    axes[0].set_xlabel("training patches seen")
    axes[1].set_xlabel("CPU-hours (training process, all threads)")
    for ax in axes:
        ax.set_ylabel("PSNR gain over linear (dB)")
        ax.axhline(0, color="k", lw=0.6, ls="--")
        ax.grid(alpha=0.3)
        if ax.lines[1:]:  # the zero line is always there
            ax.legend(fontsize=8)
    fig.suptitle("Validation PSNR gain over linear interpolation (interval 5; dashed: the shifted val set)"
                 if any(not math.isnan(p["shifted"]) for _, points in curves for p in points) else
                 "Validation PSNR gain over linear interpolation (interval 5)", fontsize=11)
    atomic_write(args.out, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
