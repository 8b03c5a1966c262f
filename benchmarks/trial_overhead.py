"""Per-trial cost of the sweep engine, and whether it grows: N trials whose body does nothing.

Runs the whole engine (space -> one Tune run -> Optuna -> Parquet parts -> compaction) with a
trainer stand-in that yields its reports at once, so every second measured is the engine's.
The cost per trial over a window of trials is the time between the window's first and last trial
ends divided by the trials in it: wall time (what a user waits), and the driver process's CPU time
(the engine's own work, which the load of other processes on a shared machine does not change).
A flat engine gives the same cost for the last hundred trials as for the first hundred.

    python benchmarks/trial_overhead.py --trials 1000 [--sampler random] [--profile out.prof]

``--sampler tpe`` adds TPE's own cost, which grows with the trials it has seen (it fits its
Parzen estimators to every past trial at each ask); ``--sampler random`` measures the engine.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# The checkout this script belongs to, not whichever clsweep the environment has installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402
import ray  # noqa: E402
import ray.cloudpickle  # noqa: E402

from cl_core.trainer import TaskReport  # noqa: E402
from sweep import units  # noqa: E402
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
sampler: {{name: {sampler}, seed: 0}}
budget: {{trials: {trials}}}
resources: {{cpus: 1, max_concurrent: {concurrent}}}
loggers: [{loggers}]
"""
WINDOW = 100


def trivial_trainer(cfg, dataset=None):
    """Reports for the untrained model and each task, instantly."""
    acc = [0.5] * cfg.n_tasks
    for learned in range(cfg.n_tasks + 1):
        yield TaskReport(learned, acc, acc, None if learned == 0 else 0.1, 0.0)


ENDS: list[tuple[float, float]] = []  # (wall, driver CPU) when each trial was recorded


def _timed_on_end(on_end):
    def wrapper(self, *args, **kwargs):
        row = on_end(self, *args, **kwargs)
        ENDS.append((time.perf_counter(), time.process_time()))
        return row

    return wrapper


units.SweepState.on_end = _timed_on_end(units.SweepState.on_end)


def per_trial_costs(stamps: list[float]) -> pd.Series:
    """Seconds per trial over consecutive windows of WINDOW trials, in end order (one window of
    all but the first trial when there are not more than WINDOW)."""
    seconds = [s - stamps[0] for s in stamps]
    window = min(WINDOW, len(seconds) - 1)
    costs = {}
    for start in range(0, len(seconds) - window - 1, window):
        span = seconds[start + window] - seconds[start]
        costs[f"{start + 1}-{start + window}"] = span / window
    last = len(seconds) - 1
    span = seconds[last] - seconds[last - window]
    costs[f"{last - window + 2}-{last + 1} (last)"] = span / window
    return pd.Series(costs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument("--sampler", default="random", choices=("random", "tpe"))
    parser.add_argument("--loggers", default="tensorboard", help="e.g. '' for none")
    parser.add_argument("--profile", help="write a cProfile of the driver here")
    parser.add_argument("--out", help="keep the sweep folder here (default: a temporary one)")
    args = parser.parse_args()
    if args.trials < 10:
        parser.error("--trials must be at least 10")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="overhead-"))
    space = out / "overhead.yaml"
    out.mkdir(parents=True, exist_ok=True)
    space.write_text(
        SPACE.format(
            trials=args.trials,
            tasks=args.tasks,
            concurrent=args.concurrent,
            sampler=args.sampler,
            loggers=args.loggers,
        )
    )
    spec = load_space(space)
    options = Options(
        out=out, train_fn=trivial_trainer, command="benchmark", num_cpus=args.concurrent,
        quiet=True,
    )  # fmt: skip
    profile = cProfile.Profile() if args.profile else None
    start = time.perf_counter()
    if profile:
        profile.enable()
    folder = run_sweep(spec, options)
    if profile:
        profile.disable()
        profile.dump_stats(args.profile)
    wall = time.perf_counter() - start
    recorded = len(pd.read_parquet(folder / "trials.parquet"))
    assert recorded == args.trials == len(ENDS), (recorded, len(ENDS))
    table = pd.DataFrame(
        {
            "wall ms/trial": per_trial_costs([w for w, _ in ENDS]) * 1000,
            "driver CPU ms/trial": per_trial_costs([c for _, c in ENDS]) * 1000,
        }
    ).round(1)
    print(
        f"{args.trials} trials ({args.sampler}, {args.tasks + 1} reports each, "
        f"{args.concurrent} at once, loggers [{args.loggers}]): {wall:.1f} s wall "
        "including Ray start-up"
    )
    print(table.to_string())
    for column in table:
        first, last = table[column].iloc[0], table[column].iloc[-1]
        print(f"{column}: first {WINDOW} {first}, last {WINDOW} {last}, ratio {last / first:.2f}")


if __name__ == "__main__":
    main()
