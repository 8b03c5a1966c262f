"""Quality: Split MNIST class-IL (three-scenario protocol): generative replay, FROMP, baselines.

Each run is `python -m cl_core --preset vdv-split --scenario class --method M [--param ...]
--seed N`; its JSON lands in --out as <row>-s<N>.json (existing files are reused, so an
interrupted table resumes). Rows run one after another, seeds inside a row; pass --rows to run a
subset. Prints a Markdown table of final average test accuracy (mean ± SEM over seeds).

    nice -n 19 python benchmarks/split_mnist_generative.py --data-root ../shared/data \
        --out split-gen --seeds 1 2 3

Hyperparameters are the literature values of the three-scenario code base (its
params/param_values.py for class-IL Split MNIST; docs/references.md, The three-scenario protocol
and Method sources), never chosen on test.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cl_core.__main__ import main as run_cli
from contract.formatting import sem

# row name -> (method, extra CLI flags); the preset supplies the per-scenario defaults
ROWS: dict[str, tuple[str, list[str]]] = {
    "finetune": ("finetune", []),
    # EWC as the reference runs it in class-IL: λ = 1e9, Fisher with all labels weighted by the
    # predicted probabilities ("expected") on all training samples, one penalty per task.
    "ewc": (
        "ewc",
        [
            "--param",
            "lambda=1e9",
            "--param",
            "fisher=expected",
            "--param",
            "fisher_samples=0",
            "--param",
            "merge=separate",
        ],
    ),
    "dgr": ("dgr", []),
    "dgr+distill": ("dgr", ["--param", "distill=true"]),
    "bir": ("bir", []),
    "gen-classifier": ("gen_classifier", []),
    "fromp": ("fromp", []),
}


def run_row(name: str, seeds: list[int], data_root: str, out: Path) -> list[float]:
    """Final average test accuracy of row ``name`` for each seed (runs what is missing)."""
    method, flags = ROWS[name]
    accs = []
    for seed in seeds:
        path = out / f"{name}-s{seed}.json"
        if not path.exists():
            run_cli(
                [
                    "--preset",
                    "vdv-split",
                    "--scenario",
                    "class",
                    "--method",
                    method,
                    *flags,
                    "--seed",
                    str(seed),
                    "--data-root",
                    data_root,
                    "--json",
                    str(path),
                ]
            )
        accs.append(json.loads(path.read_text())["metrics"]["test"]["avg_acc"])
    return accs


def mean_sem(values: list[float]) -> str:
    """Mean ± standard error of the mean, in percent."""
    return f"{100 * np.mean(values):.2f} ± {100 * sem(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lines = []
    for name in args.rows:
        accs = run_row(name, args.seeds, args.data_root, args.out)
        cells = " ".join(f"{100 * a:.2f}" for a in accs)
        lines.append(f"| {name} | {mean_sem(accs)} | {cells} |")
    print("| method | class-IL avg acc (%, mean ± SEM) | per seed |")
    print("|---|---|---|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
