"""Start-up time of the commands: how long each takes before it can do (or refuse) anything.

    .venv/bin/python -m benchmarks.startup [--repeats 5] [--out startup.md]

For each command, the median wall time over ``--repeats`` fresh processes of (a) importing its module and (b) the
whole command on an input that does not exist (the time to its one-line error). Run it on an idle machine; the
numbers are seconds of one process, so a busy machine inflates them all alike.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from inpaint.data.io import atomic_write

MISSING = "no-such-scan.nii.gz"
COMMANDS = {  # command -> its arguments on an input that does not exist
    "predict": [MISSING, "-o", "out.nii.gz", "--checkpoint", "pretrained"],
    "evaluate": ["--data", MISSING, "--out", "eval-startup"],
    "fit": [f"data.root={MISSING}", "trainer.max_steps=1"],
}


def wall(argv: list[str], repeats: int) -> float:
    """Median seconds of ``repeats`` runs of ``argv`` (output discarded; any exit code)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def table(repeats: int) -> str:
    python = sys.executable
    rows = ["| command | import (s) | to its error on a missing input (s) |", "|---|---|---|",
            f"| `python -c pass` | {wall([python, '-c', 'pass'], repeats):.2f} | |"]
    for name, arguments in COMMANDS.items():
        imported = wall([python, "-c", f"import inpaint.{name}"], repeats)
        refused = wall([python, "-m", f"inpaint.{name}", *arguments], repeats)
        rows.append(f"| `inpaint.{name}` | {imported:.2f} | {refused:.2f} |")
    return "\n".join(rows) + f"\n\nMedian of {repeats} fresh processes each.\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.startup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per row (default 5)")
    parser.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    text = table(args.repeats)
    print(text)
    if args.out:
        atomic_write(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
