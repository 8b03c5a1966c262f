"""A six-cell sweep on one machine: wall time, and when each cell ran (from trials.parquet).

Runs ``python -m sweep`` on a six-cell grid (split digits x three scenarios x two task counts,
EWC's lambda searched with ASHA, the best config re-run with two seeds) in a checkout given by
``--repo`` (default: this one), so that an older version runs the same space side by side:

    git worktree add /tmp/main-old 5058529
    python benchmarks/concurrent_cells.py --repo /tmp/main-old --out /tmp/cells-old
    python benchmarks/concurrent_cells.py --out /tmp/cells-new

Prints the wall time of the command, each cell's span (its first trial's start to its last
trial's end) and how many cells were running at once (at most, and on average over the sweep).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

SPACE = """
name: six-cells
method: ewc
train: {hidden: "100", epochs: 2, batch_size: 32, lr: 1.0e-3}
search:
  lambda: {type: loguniform, low: 1, high: 1.0e5}
grid:
  benchmark: split-digits
  scenario: [task, domain, class]
  n_tasks: [2, 5]
sampler: {name: tpe, seed: 0}
budget: {trials: %(trials)d}
early_stopping: {scheduler: asha, grace_tasks: 1, reduction_factor: 2}
resources: {cpus: 1}
final: {top_k: 1, seeds: 2}
"""
HERE = Path(__file__).resolve().parents[1]


def spans(folder: Path) -> pd.DataFrame:
    trials = pd.read_parquet(folder / "trials.parquet")  # a file (schema 1) or a folder of parts
    for column in ("started_at", "ended_at"):
        trials[column] = pd.to_datetime(trials[column])
    out = trials.groupby("cell").agg(
        start=("started_at", "min"), end=("ended_at", "max"), trials=("trial_id", "count")
    )
    zero = out.start.min()
    out["start_s"] = (out.start - zero).dt.total_seconds().round(1)
    out["end_s"] = (out.end - zero).dt.total_seconds().round(1)
    return out[["trials", "start_s", "end_s"]]


def cells_at_once(table: pd.DataFrame) -> tuple[int, float]:
    """Most cells whose spans cover one moment, and the mean number over the whole sweep."""
    events = sorted([(s, 1) for s in table.start_s] + [(e, -1) for e in table.end_s])
    active, most, area, last = 0, 0, 0.0, events[0][0]
    for moment, step in events:
        area += active * (moment - last)
        active += step
        most = max(most, active)
        last = moment
    total = table.end_s.max() - table.start_s.min()
    return most, area / total if total else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=str(HERE), help="checkout whose python -m sweep runs")
    parser.add_argument("--out", required=True, help="results folder (must not hold six-cells)")
    parser.add_argument("--trials", type=int, default=4, help="search trials per cell")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    space = out / "six-cells.yaml"
    space.write_text(SPACE % {"trials": args.trials})
    env = {
        **os.environ,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ADDRESS": "local",  # both versions start a Ray of their own, never join another
        "PYTHONPATH": args.repo,
    }
    command = [sys.executable, "-m", "sweep", "--space", str(space), "--out", str(out)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=args.repo, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"sweep failed ({done.returncode}):\n{done.stderr[-3000:]}")
    table = spans(out / "six-cells")
    most, mean = cells_at_once(table)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=args.repo, capture_output=True, text=True
    ).stdout.strip()
    print(f"{args.repo} ({commit}): {wall:.1f} s wall for {table.trials.sum()} trials")
    print(table.to_string())
    print(f"cells running at once: at most {most}, on average {mean:.2f}")


if __name__ == "__main__":
    main()
