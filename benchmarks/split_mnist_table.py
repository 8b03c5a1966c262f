"""Quality: Split MNIST (three-scenario protocol, 5 tasks, one seed), five methods, task-/class-IL.

Each run is `python -m cl_core --preset vdv-split --scenario S --method M ...`; its JSON lands in
--out as S-M.json (existing files are reused, so an interrupted table resumes). Prints a Markdown
table of final average test accuracy, BWT and forgetting.

    python benchmarks/split_mnist_table.py --data-root ../shared/data --out split-results
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cl_core.__main__ import main as run_cli

METHOD_FLAGS = {
    "finetune": [],
    "joint": [],
    "ewc": ["--param", "lambda=1e8"],  # of 1e4, 1e6, 1e8 (task-IL, one seed); tune with a sweep
    "si": ["--param", "c=1.0"],
    "lwf": [],  # the preset's: the reference's LwF (python -m cl_core --list-presets)
}
SCENARIOS = ("task", "class")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rows = []
    for method, flags in METHOD_FLAGS.items():
        cells = []
        for scenario in SCENARIOS:
            path = args.out / f"{scenario}-{method}.json"
            if not path.exists():
                run_cli(
                    [
                        "--preset",
                        "vdv-split",
                        "--scenario",
                        scenario,
                        "--method",
                        method,
                        *flags,
                        "--seed",
                        str(args.seed),
                        "--data-root",
                        args.data_root,
                        "--json",
                        str(path),
                    ]
                )
            test = json.loads(path.read_text())["metrics"]["test"]
            cells.append(
                f"{100 * test['avg_acc']:.2f} | {100 * test['bwt']:+.2f} | "
                f"{100 * test['forgetting']:.2f}"
            )
        rows.append(f"| {method} | " + " | ".join(cells) + " |")
    head = " | ".join(f"{s}-IL avg acc | {s}-IL BWT | {s}-IL forgetting" for s in SCENARIOS)
    print(f"| method | {head} |")
    print("|---" * (1 + 3 * len(SCENARIOS)) + "|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
