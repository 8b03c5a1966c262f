"""Per-trial overhead of the sweep engine: trials whose body does nothing.

Runs the full engine (space -> Tune + Optuna TPE -> callback -> Parquet rewrite after each trial)
with a trainer stand-in that yields its reports at once, for a few trials and for many, and
reports the difference per extra trial, so Ray start-up and per-phase set-up cancel out.

    python benchmarks/trial_overhead.py [--trials 40] [--tasks 5] [--concurrent 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402
import ray.cloudpickle  # noqa: E402

from cl_core.trainer import TaskReport  # noqa: E402
from sweep.runner import Options, run_sweep  # noqa: E402
from sweep.space import load_space  # noqa: E402

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

SPACE = """
method: ewc
train: {{hidden: "8"}}
search:
  lambda: {{type: loguniform, low: 1, high: 1.0e7}}
  lr: {{type: loguniform, low: 1.0e-4, high: 1.0e-2}}
grid: {{benchmark: permuted-digits, scenario: domain, n_tasks: {tasks}}}
budget: {{trials: {trials}}}
resources: {{cpus: 1, max_concurrent: {concurrent}}}
"""


def trivial_trainer(cfg, dataset=None):
    """Reports for the untrained model and each task, instantly."""
    acc = [0.5] * cfg.n_tasks
    for learned in range(cfg.n_tasks + 1):
        yield TaskReport(learned, acc, acc, None if learned == 0 else 0.1, 0.0)


def timed_sweep(folder: Path, trials: int, tasks: int, concurrent: int) -> float:
    path = folder / f"overhead_{trials}.yaml"
    path.write_text(SPACE.format(trials=trials, tasks=tasks, concurrent=concurrent))
    spec = load_space(path)
    start = time.perf_counter()
    run_sweep(spec, Options(out=folder / "out", train_fn=trivial_trainer, command="benchmark"))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--concurrent", type=int, default=2)
    args = parser.parse_args()
    start = time.perf_counter()
    ray.init(num_cpus=args.concurrent, include_dashboard=False, log_to_driver=False)
    print(f"ray.init: {time.perf_counter() - start:.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        few = timed_sweep(Path(tmp), 2, args.tasks, args.concurrent)
        many = timed_sweep(Path(tmp), args.trials + 2, args.tasks, args.concurrent)
    ray.shutdown()
    per_trial = (many - few) / args.trials
    print(
        f"2 trials: {few:.2f} s; {args.trials + 2} trials: {many:.2f} s "
        f"({args.tasks + 1} reports each, {args.concurrent} at once)"
    )
    print(
        f"per-trial overhead: {per_trial * 1000:.0f} ms wall "
        f"= {per_trial * args.concurrent * 1000:.0f} ms of a worker slot"
    )


if __name__ == "__main__":
    main()
