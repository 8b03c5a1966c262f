"""`python -m sweep --space ewc.yaml`: validate a space, run it on Ray, land results in Parquet.

Usage errors (bad arguments, a bad space file, a missing dataset, a folder in use or holding a
sweep, results that cannot be resumed, resources the machine lacks) print one line on stderr and
exit with code 2, before Ray starts wherever possible.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path
from typing import NoReturn

from cl_core.errors import ClsweepError
from sweep.errors import one_line
from sweep.report import best_table, plan_text
from sweep.space import load_space, scale_notes
from sweep.study_storage import BACKENDS


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line on stderr (and exit 2), not a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {one_line(message)}; see python -m sweep --help\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = _Parser(
        prog="python -m sweep",
        description="Search a continual-learning space with Ray Tune + Optuna; write Parquet.",
    )
    parser.add_argument(
        "--space",
        required=True,
        help="YAML search space (a path, or a file name in search_spaces/)",
    )
    parser.add_argument("--trials", type=int, help="trials per scenario cell (budget.trials)")
    parser.add_argument("--out", default="results", help="results folder (default: results/)")
    parser.add_argument("--name", help="sweep name = folder under --out (default: the space's)")
    parser.add_argument("--address", help="Ray cluster to join (default: start a local Ray)")
    parser.add_argument("--cpus-per-trial", type=float, help="CPUs per trial (resources.cpus)")
    parser.add_argument(
        "--gpus-per-trial", type=float, help="GPUs per trial, fractions allowed (resources.gpus)"
    )
    parser.add_argument(
        "--max-concurrent", type=int, help="trials running at once (resources.max_concurrent)"
    )
    parser.add_argument(
        "--max-failures",
        type=int,
        help="restarts of a trial whose worker or node went away (resources.max_failures, 2)",
    )
    parser.add_argument("--data-root", help="dataset folder (default: $CLSWEEP_DATA)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the sweep in --out/--name after an interruption",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved plan (cells, trials, resources) and exit",
    )
    parser.add_argument(
        "--wait-for-resources",
        type=float,
        default=300.0,
        metavar="S",
        help="with --address: seconds to wait for nodes offering a trial's CPUs/GPUs (300)",
    )
    parser.add_argument(
        "--study-storage",
        choices=BACKENDS,
        default="auto",
        help="a new sweep's Optuna storage: SQLite study.db, or a journal file (study.journal) "
        "that is safe on NFS; auto picks the journal on a network file system (docs/cluster.md)",
    )
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a space key, e.g. --set train.epochs=1 (repeatable; read as YAML)",
    )
    return parser.parse_args(argv)


def stay_on_loopback() -> None:
    """A local Ray binds to 127.0.0.1 and sends no usage stats, unless the user says otherwise.

    Ray reads these variables when it is imported, so this runs before the runner imports it.
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = {
        "budget.trials": args.trials,
        "name": args.name,
        "resources.cpus": args.cpus_per_trial,
        "resources.gpus": args.gpus_per_trial,
        "resources.max_concurrent": args.max_concurrent,
        "resources.max_failures": args.max_failures,
    }
    try:
        spec = load_space(args.space, overrides=overrides, sets=args.sets)
        if args.dry_run:
            print(plan_text(spec, args.address))
            return 0
        if not (args.wait_for_resources >= 0):
            raise ClsweepError("--wait-for-resources: give a number of seconds >= 0")
        for note in scale_notes(spec):
            print(note, file=sys.stderr)
        if not args.address:
            stay_on_loopback()
        from sweep.runner import Options, SweepInterrupted, run_sweep  # imports Ray lazily

        try:
            folder = run_sweep(
                spec,
                Options(
                    out=Path(args.out),
                    address=args.address,
                    data_root=args.data_root,
                    resume=args.resume,
                    wait_for_resources_s=args.wait_for_resources,
                    study_storage=args.study_storage,
                ),
            )
        except (SweepInterrupted, KeyboardInterrupt) as exc:
            message = str(exc) or "interrupted; run the same command with --resume to continue"
            print(one_line(message), file=sys.stderr)
            return 130
    except ClsweepError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    print(best_table(spec, folder))
    # Python's last garbage collection at exit would scan every object the imports made
    # (torch, Ray, pandas: about a second on 2 cores) only to free them as the process ends.
    gc.freeze()
    return 0


if __name__ == "__main__":
    sys.exit(main())
