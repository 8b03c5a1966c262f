"""The driver's Optuna cost per study file: SQLite with its rollback journal, SQLite with a
write-ahead log (what :mod:`sweep.study_storage` opens locally) and Optuna's journal file (what it
opens on a network file system), alternated in one process.

Each repeat builds a fresh study in each mode, opened as the sweep opens it
(``sweep.study_storage.open_storage``; the rollback journal is a new file opened without WAL),
and runs what a sweep's driver does for ``--trials`` TPE trials in waves of ``--wave``: ask the
wave (constant liar, as the sweep), set the trial id, report one intermediate value per task,
set the result attributes, tell. Prints the median seconds of asks, reports and tells per mode
and each mode's ratio to the rollback journal:

    python benchmarks/study_storage_speed.py --trials 64 --wave 16 --repeats 3
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import optuna

# The checkout this script belongs to, not whichever clsweep the environment has installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweep.study_storage import (  # noqa: E402
    JOURNAL_FILE,
    SQLITE_FILE,
    close_storage,
    open_storage,
)

DISTRIBUTIONS = {
    name: optuna.distributions.FloatDistribution(1e-4, 10.0, log=True)
    for name in ("alpha", "beta", "lr")
}


MODES = ("rollback journal", "write-ahead log", "journal file")


def open_mode(folder: Path, mode: str) -> optuna.storages.BaseStorage:
    """A new study file in ``folder`` (empty), opened as the sweep opens it in ``mode``."""
    if mode == "journal file":
        return open_storage(folder / JOURNAL_FILE)
    return open_storage(folder / SQLITE_FILE, checking=mode == "rollback journal")


def one_study(folder: Path, mode: str, trials: int, wave: int, tasks: int) -> dict[str, float]:
    """Seconds spent asking, reporting and telling ``trials`` trials in a study in ``folder``."""
    storage = open_mode(folder, mode)
    study = optuna.create_study(
        storage=storage,
        sampler=optuna.samplers.TPESampler(seed=0, constant_liar=True),
        direction="maximize",
    )
    rng = random.Random(0)
    spent = {"ask": 0.0, "report": 0.0, "tell": 0.0}
    for _ in range(0, trials, wave):
        start = time.perf_counter()
        asked = [study.ask(DISTRIBUTIONS) for _ in range(wave)]
        spent["ask"] += time.perf_counter() - start
        start = time.perf_counter()
        for trial in asked:
            trial.set_user_attr("trial_id", f"t{trial.number}")
            for step in range(1, tasks + 1):
                trial.report(rng.random(), step)
        spent["report"] += time.perf_counter() - start
        start = time.perf_counter()
        for trial in asked:
            for key in ("status", "tasks", "test_avg_acc", "test_bwt"):
                trial.set_user_attr(key, rng.random())
            study.tell(trial, rng.random())
        spent["tell"] += time.perf_counter() - start
    close_storage(storage)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--wave", type=int, default=16)
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    totals: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            for mode in totals:
                study_folder = Path(folder) / f"{repeat}-{mode.replace(' ', '-')}"
                study_folder.mkdir()
                spent = one_study(study_folder, mode, args.trials, args.wave, args.tasks)
                totals[mode].append(spent)
    medians = {}
    for mode, runs in totals.items():
        parts = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        medians[mode] = statistics.median(sum(r.values()) for r in runs)
        shown = ", ".join(f"{k} {v:.2f} s" for k, v in parts.items())
        print(f"{mode:>17}: {shown}; total {medians[mode]:.2f} s")
    for mode in MODES[1:]:
        ratio = medians[MODES[0]] / medians[mode]
        shape = f"{args.trials} trials, waves of {args.wave}"
        print(f"{mode}: {ratio:.2f}x faster than the rollback journal ({shape})")


if __name__ == "__main__":
    main()
