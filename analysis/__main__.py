"""``python -m analysis report RESULTS_DIR [MORE ...] --out DIR``: the sweep report from Parquet.

Usage errors (not a sweep, wrong schema, nothing completed) print one line on stderr and exit 2,
as every clsweep CLI does (DESIGN.md, Conventions); tracebacks are left for bugs.
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
        self.exit(2, f"error: {text}; see python -m analysis report --help\n")


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
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")  # a report never needs a display
    from analysis.report import build_report

    try:
        written = build_report(args.results, args.out, select_on=args.select_on)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
