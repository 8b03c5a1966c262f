"""Quality: parameter isolation on Split MNIST task-IL (three-scenario protocol), mean ± SEM.

Each run is `python -m cl_core --preset vdv-split --scenario task --method M --seed N ...` with
the methods' literature defaults (XdG gating_prop 0.9; separate networks: the parameter-matched
width rule, 106 units per network); its JSON lands in --out as M-N.json (existing files are
reused, so an interrupted table resumes). Prints a Markdown table of the final average test
accuracy (and validation, for reference), mean ± SEM over the seeds.

    python benchmarks/isolation_table.py --data-root ../shared/data --out isolation-results
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cl_core.__main__ import main as run_cli
from contract.formatting import sem

METHODS = ("finetune", "xdg", "separate")


def mean_sem(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample standard deviation / √n)."""
    return sum(values) / len(values), sem(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    print("| method | test avg acc (%) | val avg acc (%) | per seed (test) |")
    print("|---|---|---|---|")
    for method in METHODS:
        test, val = [], []
        for seed in args.seeds:
            path = args.out / f"{method}-{seed}.json"
            if not path.exists():
                run_cli(
                    ["--preset", "vdv-split", "--scenario", "task", "--method", method]
                    + ["--seed", str(seed), "--data-root", args.data_root, "--json", str(path)]
                )
            metrics = json.loads(path.read_text())["metrics"]
            test.append(100 * metrics["test"]["avg_acc"])
            val.append(100 * metrics["val"]["avg_acc"])
        (tm, ts), (vm, vs) = mean_sem(test), mean_sem(val)
        seeds = ", ".join(f"{t:.2f}" for t in test)
        print(f"| {method} | {tm:.2f} ± {ts:.2f} | {vm:.2f} ± {vs:.2f} | {seeds} |")


if __name__ == "__main__":
    main()
