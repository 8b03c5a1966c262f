"""Quality: the replay family on Split MNIST class-IL (three-scenario protocol), mean ± SEM.

Per method, two stages:
1. Selection on VALIDATION, seed 1: the method's small grid (below) is run and the config with
   the best final average validation accuracy is kept (test accuracy is never looked at).
2. The kept config is run with seeds 1, 2, 3 (data and training seed); the table gives final
   average test accuracy (and validation) as mean ± SEM.

Each run is `python -m cl_core --preset vdv-split --scenario class --class-il-units all --method M
--param ... --seed S` (5 tasks, 2,000 iterations per task, batch 128, Adam 1e-3, MLP 400-400,
memory 100 per class). ``--class-il-units all`` keeps all ten output units active from the
first task, as the table was first measured; the preset's own class-IL choice is ``seen`` (the
reference code's active units), which `--units seen` selects;
its JSON lands in --out (existing files are reused, so an interrupted table resumes).
Runs are sequential on one thread; on a shared machine run it under `nice`.

    nice python benchmarks/replay_table.py --data-root ../shared/data --out replay-results
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from cl_core.__main__ import main as run_cli
from contract.formatting import sem

# the candidates of each method, chosen among on seed 1's validation accuracy; the first entry of
# each list is the literature default (ER, A-GEM: the three-scenario code; iCaRL: the paper's T = 1,
# the three-scenario code uses 2; DER/DER++: the paper's Seq-MNIST best at buffer 500). Small,
# because a run costs minutes.
GRID: dict[str, list[dict[str, float | str]]] = {
    "er": [{}],
    "icarl": [{"temperature": 1.0}, {"temperature": 2.0}],
    "derpp": [
        {"alpha": 1.0, "beta": 0.5},
        {"alpha": 0.3, "beta": 0.5},
        {"alpha": 1.0, "beta": 1.0},
    ],
    "der": [{"alpha": 1.0}, {"alpha": 0.3}],
    "agem": [{}],
    "finetune": [{}],
    # the bounds and the regularisation family, with the preset's defaults (its per-scenario
    # strengths, python -m cl_core --list-presets): the rows the replay methods are compared with
    "joint": [{}],
    "ewc": [{}],
    "si": [{}],
    "lwf": [{}],
}
SEEDS = (1, 2, 3)


def run(method: str, params: dict, seed: int, args: argparse.Namespace) -> dict:
    """The JSON of one run (run now unless --out already holds it)."""
    tag = "-".join(f"{k}={v}" for k, v in sorted(params.items()))
    units = "" if args.units == "all" else f"-{args.units}"
    path = args.out / f"{method}{'-' + tag if tag else ''}{units}-s{seed}.json"
    if not path.exists():
        flags = [x for k, v in sorted(params.items()) for x in ("--param", f"{k}={v}")]
        command = [
            "--preset",
            "vdv-split",
            "--scenario",
            "class",
            "--class-il-units",
            args.units,
            "--method",
            method,
            *flags,
            "--seed",
            str(seed),
            "--device",
            args.device,
            "--data-root",
            args.data_root,
            "--json",
            str(path),
        ]
        print("python -m cl_core " + " ".join(command), flush=True)
        if run_cli(command) != 0:
            raise SystemExit(f"run failed: {method} {params} seed {seed}")
    return json.loads(path.read_text())["metrics"]


def mean_sem(values: list[float]) -> str:
    """Mean ± standard error of the mean, in percent."""
    return f"{100 * np.mean(values):.2f} ± {100 * sem(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--units", choices=("all", "seen"), default="all", help="class-IL units")
    parser.add_argument("--methods", nargs="+", default=list(GRID), choices=list(GRID))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)

    selection, rows = [], []
    for method in args.methods:  # one method at a time: its table row is ready when it ends
        scored = [(run(method, p, SEEDS[0], args)["val"]["avg_acc"], p) for p in GRID[method]]
        chosen = max(scored, key=lambda s: s[0])[1]  # ties keep the earlier (default) entry
        for val, params in scored:
            mark = " <- chosen" if params is chosen else ""
            selection.append(f"| {method} | {params or '(defaults)'} | {100 * val:.2f}{mark} |")
        results = [run(method, chosen, seed, args) for seed in SEEDS]
        test = [r["test"]["avg_acc"] for r in results]
        val = [r["val"]["avg_acc"] for r in results]
        rows.append(
            f"| {method} | {chosen or '(defaults)'} | {mean_sem(test)} | "
            f"{mean_sem(val)} | {', '.join(f'{100 * t:.2f}' for t in test)} |"
        )
        print(f"ROW {rows[-1]}", flush=True)
    print("\nSelection (seed 1, final average VALIDATION accuracy, %):")
    print("| method | hyperparameters | val avg acc |\n|---|---|---|")
    print("\n".join(selection))
    print(f"\nSplit MNIST class-IL, vdv-split, seeds {SEEDS}: final average accuracy (%)")
    print("| method | hyperparameters | test | val | test per seed |\n|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
