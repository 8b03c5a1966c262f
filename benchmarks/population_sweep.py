"""A shipped space end to end, with and without ``resources.population``, alternated.

Each round runs ``python -m sweep --space SPACE`` twice in fresh folders, once as is
(one configuration per Ray trial) and once with ``--set resources.population=N``, in alternating
order, and times each command from start to exit (Python start, data, Ray start and shutdown,
the sweep, the summary). It checks that both wrote the same number of rows per phase (with early
stopping, which trials stop depends on the order they report in) and prints the wall times and
the ratio (median over rounds):

    python benchmarks/population_sweep.py --rounds 3 --population 16 --out /tmp/popsweep

The DER++ digits sweep of 64 search trials (issue 16's acceptance):

    python benchmarks/population_sweep.py --rounds 2 --population 16 \\
        --space benchmarks/derpp_digits.yaml
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def run(
    out: Path, name: str, population: int | None, space: str, sets: list[str]
) -> tuple[float, dict]:
    command = [sys.executable, "-m", "sweep", "--space", space, "--out", str(out)]
    command += ["--set", f"name={name}", "--set", "loggers=[]"]
    for setting in sets:
        command += ["--set", setting]
    if population is not None:
        command += ["--set", f"resources.population={population}"]
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    trials = pd.read_parquet(out / name / "trials.parquet")
    return wall, trials.groupby(["phase", "status"]).size().to_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--population", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("/tmp/population-sweep"))
    parser.add_argument("--space", default="quickstart.yaml")
    parser.add_argument("--set", nargs="*", default=[], dest="sets", help="KEY=VALUE for both")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    walls: dict[str, list[float]] = {"per-trial": [], "population": []}
    for r in range(args.rounds):
        order = ["per-trial", "population"] if r % 2 == 0 else ["population", "per-trial"]
        counts = {}
        for mode in order:
            population = args.population if mode == "population" else None
            wall, counts[mode] = run(args.out, f"{mode}-{r}", population, args.space, args.sets)
            walls[mode].append(wall)
            print(f"round {r} {mode:10s} {wall:6.1f} s  rows {counts[mode]}", flush=True)
        # ASHA decides on the order trials report in, so completed vs stopped may differ;
        # every phase must have the same number of rows
        per_phase = {
            mode: {phase: sum(n for (p, _), n in c.items() if p == phase) for phase, _ in c}
            for mode, c in counts.items()
        }
        assert per_phase["per-trial"] == per_phase["population"], counts
    one, pop = (statistics.median(walls[m]) for m in ("per-trial", "population"))
    print(f"median wall: per-trial {one:.1f} s, population={args.population} {pop:.1f} s")
    ratios = [a / b for a, b in zip(walls["per-trial"], walls["population"], strict=True)]
    print(f"ratio per round: {', '.join(f'{x:.2f}' for x in ratios)}; of medians: {one / pop:.2f}x")


if __name__ == "__main__":
    main()
