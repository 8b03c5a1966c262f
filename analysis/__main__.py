"""``python -m analysis report RESULTS_DIR [MORE ...] --out DIR``: the sweep report from Parquet.

``python -m analysis curves RESULTS_DIR [MORE ...] --out DIR``: accuracy over time of task-free
stream runs (curves.parquet), as a figure and its averaged points.

Usage errors (not a sweep, wrong schema, nothing completed) print one line on stderr and exit 2,
as every clsweep CLI does (docs/design.md, Conventions); tracebacks are left for bugs.
``python -m analysis compare-protocols RESULTS_DIR [MORE ...] [--out DIR]``: one space run under
several selection protocols side by side (:mod:`analysis.compare_protocols`).

``--compass`` also writes the CLEVA-Compass JSON of each sweep's methods (:mod:`analysis.compass`).
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from analysis.load import AnalysisError


class _Parser(argparse.ArgumentParser):
    """A bad command line is one line on stderr and exit 2, not a usage block."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(2, f"error: {text}; see {self.prog} --help\n")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, build the report, print the paths written; return the exit code."""
    parser = _Parser(prog="python -m analysis", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    report = commands.add_parser(
        "report", help="HTML + PDF report and tables from one or more sweep folders"
    )
    report.add_argument(
        "results", nargs="+", help="sweep folders, results folders holding sweeps, or globs"
    )
    report.add_argument("--out", required=True, help="folder for report.html, report.pdf, tables/")
    report.add_argument(
        "--select-on", default="val_avg_acc", help="validation metric that picks the best config"
    )
    report.add_argument(
        "--compass",
        action="store_true",
        help="also write each sweep's CLEVA-Compass JSON (Mundt et al. 2022) to DIR/compass/",
    )
    curves = commands.add_parser(
        "curves", help="accuracy over time of task-free stream runs (curves.parquet)"
    )
    curves.add_argument("results", nargs="+", help="sweep folders, results folders, or globs")
    curves.add_argument("--out", required=True, help="folder for accuracy_over_time.png/.pdf/.csv")
    curves.add_argument("--split", choices=("val", "test"), default="test")
    from analysis import compare_protocols

    compare = commands.add_parser(
        "compare-protocols",
        help="one space run under several selection protocols: chosen configurations, test "
        "accuracy, ranks and cost side by side",
    )
    compare_protocols.add_arguments(compare)
    args = parser.parse_args(argv)
    if args.command == "compare-protocols":
        return compare_protocols.run(args)  # tables only: no plotting back end needed

    import matplotlib

    matplotlib.use("Agg")  # a report never needs a display
    if args.command == "curves":
        return _curves(args)
    from analysis.report import build_report

    try:
        written = build_report(
            args.results, args.out, select_on=args.select_on, compass=args.compass
        )
    except AnalysisError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print(f"HTML report: {written.html}")
    print(f"PDF report:  {written.pdf}")
    print(f"tables:      {', '.join(str(p) for p in written.tables)}")
    if written.figures:
        print(f"figures:     {len(written.figures)} files in {written.figures[0].parent}")
    for note in written.notes:
        print(f"note: {note}")
    if written.compass:
        print(f"compass:     {', '.join(str(p) for p in written.compass)}")
    return 0


def _curves(args: argparse.Namespace) -> int:
    """``python -m analysis curves``: the accuracy-over-time figure and its averaged points."""
    from pathlib import Path

    from analysis.curves import average_curves, load_curves, plot_accuracy_over_time
    from analysis.load import load_results
    from analysis.plots import save_figure

    try:
        results = load_results(args.results)
        fig = plot_accuracy_over_time(results, split=args.split)
        points = average_curves(load_curves(results), split=args.split)
    except AnalysisError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    out = Path(args.out)
    written = save_figure(fig, out / "accuracy_over_time")
    points.to_csv(out / "accuracy_over_time.csv", index=False)
    print(f"figures: {', '.join(str(p) for p in written)}")
    print(f"points:  {out / 'accuracy_over_time.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
