"""``clsweep run|sweep|report|curves|best|compare-protocols ...``: hands the rest of the command
line to the package's CLI (``run --config FILE`` runs a registry entry:
:mod:`clsweep.run_entry`)."""

from __future__ import annotations

import sys
from collections.abc import Callable

USAGE = """usage: clsweep {run,sweep,report,curves} ...
       clsweep best RESULTS... --into DIR [--force]
       clsweep compare-protocols RESULTS... [--out DIR]

  run     one continual-learning run              (python -m cl_core; clsweep run --help)
          run --config FILE [--seed N]: a registry entry's configuration (docs/registry.md)
  sweep   search a space with Ray Tune + Optuna   (python -m sweep; clsweep sweep --help)
  report  HTML + PDF report and tables of sweeps  (python -m analysis report; --help;
          --compass adds each method's CLEVA-Compass JSON)
  curves  accuracy over time of task-free sweeps  (python -m analysis curves; --help)
  best    each sweep's chosen configurations as registry entries with their provenance
          (clsweep best RESULTS... --into DIR [--force]; docs/registry.md)
  compare-protocols  one space run under several selection protocols, side by side
          (python -m analysis compare-protocols; docs/selection.md)
"""


def _run(argv: list[str]) -> int:
    if any(arg == "--config" or arg.startswith("--config=") for arg in argv):
        from clsweep.run_entry import main as run_entry

        return run_entry(argv)
    from cl_core.__main__ import main

    return main(argv)


def _sweep(argv: list[str]) -> int:
    from sweep.__main__ import main

    return main(argv)


def _report(argv: list[str]) -> int:
    from analysis.__main__ import main

    return main(["report", *argv])


def _curves(argv: list[str]) -> int:
    from analysis.__main__ import main

    return main(["curves", *argv])


def _compare_protocols(argv: list[str]) -> int:
    from analysis.__main__ import main

    return main(["compare-protocols", *argv])


def _best(argv: list[str]) -> int:
    from analysis.registry import main

    return main(argv)


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "run": _run,
    "sweep": _sweep,
    "report": _report,
    "curves": _curves,
    "best": _best,
    "compare-protocols": _compare_protocols,
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a subcommand; a missing or unknown one prints the usage and returns 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="", file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(USAGE, end="", file=sys.stderr)
        print(f"clsweep: error: unknown command {command!r}; use run, sweep, report, "
              "curves, best or compare-protocols", file=sys.stderr)  # fmt: skip
        return 2
    # The sweep records its command line from sys.argv: make it the subcommand's own.
    sys.argv = [f"clsweep {command}", *rest]
    return COMMANDS[command](rest)
