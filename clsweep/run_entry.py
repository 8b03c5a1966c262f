"""``clsweep run --config FILE``: one cl_core run of a registry entry's configuration.

The entry is verified first (its keys and integrity hash, :mod:`contract.registry`): a damaged
or hand-edited entry is one ``error:`` line and exit code 2, never used. Its ``config`` then
becomes the command line of ``python -m cl_core`` (every setting an explicit flag, the method's
hyperparameters ``--param`` flags with their exact values), which runs it: one trainer, one
validation, one output format. Options that would change the configuration are refused; the
seed, device, data root, outputs and checkpoints are the runner's.

Reproduction: a sweep's trial runs on one thread (sweep/trainable.py), so this does too by
default (``--threads``); with the entry's seed, on the device the row was trained on, the run
gives that row's numbers bit for bit (rows trained in a population: see docs/population.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

from contract.registry import RegistryError, read_entry

PASSED_ON = ("--json", "--data-root", "--device", "--progress", "--log-every", "--checkpoint-dir")
"""Options handed to ``python -m cl_core`` as they are (they change no number of the run)."""


class _Parser(argparse.ArgumentParser):
    """A bad command line is one line on stderr and exit 2, not a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {' '.join(message.split())}; see clsweep run --config FILE --help\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="clsweep run",
        description="Run a registry entry's configuration (docs/registry.md) as one cl_core run.",
    )
    p.add_argument("--config", required=True, type=Path, metavar="FILE", help="registry entry")
    p.add_argument(
        "--seed", type=int, help="data and training seed (default: the entry's first final seed)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads of torch (1, as in a sweep's trial, gives the sweep's numbers bit for "
        "bit)",
    )
    p.add_argument("--json", metavar="PATH", help="write matrices, metrics and config here")
    p.add_argument("--data-root", metavar="DIR", help="dataset folder (else $CLSWEEP_DATA)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default: auto")
    p.add_argument("--progress", choices=("auto", "bar", "log", "off"))
    p.add_argument("--log-every", metavar="N")
    p.add_argument("--checkpoint-dir", metavar="DIR", help="continue after a crash (cl_core)")
    p.add_argument("--keep-checkpoint", action="store_true")
    return p


def core_argv(config: dict[str, Any], seed: int | None) -> list[str]:
    """The ``python -m cl_core`` flags that give exactly ``config`` (``seed`` replaces both
    seeds, as the final phase sets both)."""
    from cl_core.__main__ import FIELDS

    flags = {field: "--" + dest.replace("_", "-") for dest, field in FIELDS.items()}
    values = dict(config)
    if seed is not None:
        values["data_seed"] = values["train_seed"] = seed
    argv: list[str] = []
    for name, value in values.items():
        if name == "method_params":
            for param, setting in value.items():
                argv += ["--param", f"{param}={_text(setting)}"]
        elif value is not None:
            if name not in flags:
                raise RegistryError(f"config.{name} has no python -m cl_core flag")
            argv += [flags[name], _text(value)]
    return argv


def _text(value: Any) -> str:
    """A value as the CLI reads it back exactly (floats by their shortest round-trip repr)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def main(argv: list[str]) -> int:
    """Verify the entry, then run it through cl_core's command line; exit code as cl_core's."""
    args = build_parser().parse_args(argv)
    try:
        entry = read_entry(args.config)
        seed = args.seed if args.seed is not None else entry["config"]["train_seed"]
        run_argv = core_argv(entry["config"], seed)
    except RegistryError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    for option in PASSED_ON:
        value = getattr(args, option[2:].replace("-", "_"))
        if value is not None:
            run_argv += [option, str(value)]
    if args.keep_checkpoint:
        run_argv.append("--keep-checkpoint")
    if args.threads < 1:
        print(f"error: --threads {args.threads} must be at least 1", file=sys.stderr)
        return 2
    print(_introduce(args.config, entry, seed), flush=True)
    import torch

    from cl_core.__main__ import main as run_core

    torch.set_num_threads(args.threads)
    return run_core(run_argv)


def _introduce(path: Path, entry: dict[str, Any], seed: int) -> str:
    """What runs, and the number the sweep recorded for this seed (to compare against)."""
    config, final, provenance = entry["config"], entry["final"], entry["provenance"]
    cell = f"{config['benchmark']}/{config['scenario']}/{config['n_tasks']}"
    text = (
        f"registry entry {path} (verified): {config['method']} on {cell}, "
        f"{entry['selection']['protocol']}, sweep {provenance['sweep']}; seed {seed}"
    )
    if final["ran"] and seed in final["seeds"]:
        value = final["values"][final["seeds"].index(seed)]
        text += f"; the sweep's final phase gave {final['metric']} {value!r} with this seed"
    return text
