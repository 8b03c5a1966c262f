"""`python -m cl_core`: one continual-learning run, a per-task accuracy table as it goes."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from cl_core.checkpoint import CHECKPOINT_FILE
from cl_core.cli_help import add_choice, config_defaults, defaults_formatter
from cl_core.config import RunConfig, cli_flag, parse_hidden
from cl_core.data import BENCHMARKS, load_dataset
from cl_core.errors import ClsweepError
from cl_core.methods import METHODS
from cl_core.models import MODELS
from cl_core.params import parse_bool
from cl_core.per_task import PerTaskSettings, describe_choice, per_task_train
from cl_core.presets import PRESETS
from cl_core.progress import LOG_EVERY, MODES, Progress
from cl_core.trainer import FewStepsWarning, RunResult, TaskReport, resolve_device, train
from cl_core.validation import validated

# CLI flag's dest -> RunConfig field: every field with a flag (its metadata, cl_core.config)
FIELDS = {
    cli_flag(f.name).removeprefix("--").replace("-", "_"): f.name
    for f in dataclasses.fields(RunConfig)
    if cli_flag(f.name) is not None
}
GROUPS = {"stream": "task-free streams (cl_core/stream.py)"}
HELP_DEFAULTS = {"data_root": "~/.cache/clsweep/data when CLSWEEP_DATA is unset"}
"""Defaults --help states in words (where the RunConfig default alone would mislead)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line on stderr (exit 2), not a usage block; an
    invalid choice names the closest valid one (flags with fixed values check them themselves:
    cli_help.Choice, whatever text this Python's argparse would print)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}; see python -m cl_core --help\n")


def _tasks_text(cfg: RunConfig) -> str:
    if cfg.learned_tasks == cfg.n_tasks:
        return f"{cfg.n_tasks} tasks"
    last = cfg.task_start + cfg.learned_tasks - 1
    return f"tasks {cfg.task_start}-{last} of {cfg.n_tasks} (shown as T0-T{cfg.learned_tasks - 1})"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m cl_core",
        description="One continual-learning run. Unset flags: the preset's value, else the "
        "default shown.",
        formatter_class=defaults_formatter({**config_defaults(FIELDS), **HELP_DEFAULTS}),
    )
    add_choice(p, "--preset", sorted(PRESETS), help="a published protocol; see --list-presets")
    add_config_flags(p)
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="method hyperparameter, repeatable (e.g. --param lambda=1e4); see --list-methods",
    )
    p.add_argument("--seed", type=int, help="sets both --data-seed and --train-seed")
    per_task = p.add_argument_group(
        "per-task hyperparameter selection (De Lange et al. 2021; cl_core/per_task.py)"
    )
    per_task.add_argument(
        "--per-task",
        action="store_true",
        help="choose lr and the method's stability knob (from its set value down) at each task",
    )
    per_task.add_argument("--per-task-drop", type=float, help="accuracy drop p allowed (0.2)")
    per_task.add_argument("--per-task-decay", type=float, help="decay α of the knob (0.5)")
    per_task.add_argument("--per-task-lrs", help="learning-rate grid (0.01,0.005,0.001,...)")
    per_task.add_argument("--per-task-attempts", type=int, help="attempts per task (10)")
    p.add_argument(
        "--json", type=Path, metavar="PATH", help="write matrices, metrics and config here"
    )
    p.add_argument(
        "--checkpoint-dir",
        type=Path,
        metavar="DIR",
        help="write the whole state to DIR after every task; the same command run again "
        "continues from the last finished task",
    )
    p.add_argument(
        "--keep-checkpoint",
        action="store_true",
        help="keep the checkpoint when the run ends (it is removed by default)",
    )
    p.add_argument(
        "--list-methods",
        action="store_true",
        help="list methods, the scenarios each supports and their hyperparameters",
    )
    add_choice(
        p,
        "--progress",
        MODES,
        default="auto",
        help="steps within each task: a bar, a log line every --log-every steps, or off; auto: "
        "a bar on a terminal, else log lines",
    )
    p.add_argument(
        "--log-every", type=_positive, default=LOG_EVERY, metavar="N", help="steps per log line"
    )
    p.add_argument(
        "--list-presets", action="store_true", help="list presets with every choice and its source"
    )
    return p


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _bool(text: str) -> bool:
    try:
        return parse_bool(text, "flag")
    except ClsweepError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field that has one, built from the field's metadata
    (cl_core.config.setting): its name, help, type, choices and argument group."""
    registries = {
        "benchmarks": list(BENCHMARKS),
        "methods": sorted(METHODS),
        "models": list(MODELS),
    }
    groups: dict[str | None, Any] = {None: parser, "length": parser.add_mutually_exclusive_group()}
    groups.update({key: parser.add_argument_group(title) for key, title in GROUPS.items()})
    for f in dataclasses.fields(RunConfig):
        flag = cli_flag(f.name)
        if flag is None:
            continue
        meta, kind = f.metadata, str(f.type)
        target = groups[meta["group"]]
        kwargs: dict[str, Any] = {"help": meta["help"] or None}
        if meta["choices"] is not None:
            choices = meta["choices"]
            add_choice(target, flag, registries.get(choices, choices), **kwargs)
            continue
        if kind.startswith("tuple"):
            kwargs["type"] = parse_hidden
        elif kind.startswith("bool"):
            kwargs.update(type=_bool, metavar="{true,false}")
        elif kind.startswith(("int", "float")):
            kwargs["type"] = int if kind.startswith("int") else float
        if meta["metavar"]:
            kwargs["metavar"] = meta["metavar"]
        target.add_argument(flag, **kwargs)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Defaults < preset < explicit flags."""
    values: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for flag, name in FIELDS.items():
        value = getattr(args, flag)
        if value is not None:
            values[name] = value
    if args.epochs is not None:
        values["iterations"] = None
    if args.iterations is not None:
        values["epochs"] = None
    if args.seed is not None:
        if args.data_seed is None:
            values["data_seed"] = args.seed
        if args.train_seed is None:
            values["train_seed"] = args.seed
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            raise ClsweepError(
                f"--param {item!r} must look like NAME=VALUE, e.g. --param lambda=1e4"
            )
        params[name.strip()] = value.strip()
    if args.preset:
        values, params = PRESETS[args.preset].apply(values, params)
    values["method_params"] = params
    return validated(RunConfig(**values))


def list_methods() -> str:
    """Every registered method with its hyperparameters, one aligned line each.

    A parameter whose natural search scale is logarithmic says so: a sweep over it should
    sample ``loguniform``, or almost every trial lands in the top decade.
    """
    params = [hp for cls in METHODS.values() for hp in cls.hyperparams.values()]
    name_width = max((len(hp.name) for hp in params), default=0)
    default_width = max((len(repr(hp.default)) for hp in params), default=0)
    lines = []
    for name, cls in METHODS.items():
        lines.append(f"{name}  (scenarios: {', '.join(cls.scenarios)})")
        for hp in cls.hyperparams.values():
            scale = ", log scale" if hp.log else ""
            lines.append(
                f"  {hp.name:<{name_width}}  default {hp.default!r:<{default_width}}  "
                f"{hp.range_text()}{scale}  ({hp.help})"
            )
    return "\n".join(lines)


def format_row(report: TaskReport) -> str:
    accs = " ".join(f"{100 * a:6.2f}" for a in report.test_acc)
    learned = report.tasks_learned
    avg = np.mean(report.test_acc[:learned]) * 100 if learned else float("nan")
    loss = "" if report.train_loss is None else f"{report.train_loss:8.4f}"
    return f"{learned:>7} | {accs} | {avg:6.2f} | {loss:>8} | {report.seconds:6.1f}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_methods:
        print(list_methods())
        return 0
    if args.list_presets:
        print("\n\n".join(f"--preset {p.name}\n{p.doc}" for p in PRESETS.values()))
        return 0
    try:
        # Everything is checked, and the data loaded, before the first line is printed.
        cfg = config_from_args(args)
        device = str(resolve_device(cfg.device))
        dataset = load_dataset(cfg)
        print(f"{cfg.method} on {cfg.benchmark}, {cfg.scenario}-IL, {_tasks_text(cfg)}, {device}")
        header = " ".join(f"{'T' + str(j):>6}" for j in range(cfg.learned_tasks))
        print(f"learned | {header} |    avg |     loss |      s   (test accuracy, %)", flush=True)
        reports = []
        curve = []  # task-free streams: accuracy over time (cl_core/stream.py)
        progress = Progress(args.progress, args.log_every)
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            checkpoint = args.checkpoint_dir / CHECKPOINT_FILE if args.checkpoint_dir else None
            if args.per_task:
                settings = per_task_settings(args)
                run = per_task_train(
                    cfg, dataset, settings, progress, checkpoint, args.keep_checkpoint
                )
            else:
                run = train(cfg, dataset, progress, checkpoint, args.keep_checkpoint)
            for report in run:
                curve += getattr(report, "curve", [])
                reports.append(report)
                if report.status != "ok":
                    print(f"DIVERGED: {report.message}")
                    break
                print(format_row(report), flush=True)
                if getattr(report, "choice", None) is not None:
                    print(f"        per-task selection, {describe_choice(report.choice)}")
    except ClsweepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = RunResult.from_reports(cfg, reports, device)
    print_summary(result)
    if args.json:
        chosen = [getattr(r, "choice", None) for r in reports]
        choices = [dataclasses.asdict(c) for c in chosen if c is not None]
        write_json(args.json, result, curve, choices or None)
        print(f"wrote {args.json}")
    return 0 if result.status == "completed" else 1


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Our warnings as one 'warning: ...' line on stderr; others as Python shows them."""
    if issubclass(category, FewStepsWarning):
        print(f"warning: {message}", file=sys.stderr, flush=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def print_summary(result: RunResult) -> None:
    acc = result.acc_test[1:]
    if len(acc):
        avgs = [100 * np.mean(acc[i, : i + 1]) for i in range(len(acc))]
        print("AVG after each task:", ", ".join(f"{a:.2f}" for a in avgs))
    for split in ("val", "test"):
        m = result.metrics(split)
        print(f"{split:>4}: " + "  ".join(f"{k} {100 * v:.2f}" for k, v in m.items()))
    print(f"status: {result.status}")


def per_task_settings(args: argparse.Namespace) -> PerTaskSettings:
    """The --per-task-* flags (defaults: De Lange et al. 2021's p = 0.2, α = 0.5)."""
    default = PerTaskSettings()
    lrs = args.per_task_lrs
    return PerTaskSettings(
        drop=default.drop if args.per_task_drop is None else args.per_task_drop,
        decay=default.decay if args.per_task_decay is None else args.per_task_decay,
        lr_grid=default.lr_grid if lrs is None else tuple(float(v) for v in lrs.split(",")),
        max_attempts=args.per_task_attempts or default.max_attempts,
    )


def write_json(
    path: Path, result: RunResult, curve: list | None = None, choices: list | None = None
) -> None:
    def rows(a: np.ndarray) -> list[list[float | None]]:
        return [[None if np.isnan(v) else float(v) for v in row] for row in a]

    payload = {
        "config": result.config.to_dict(),
        "status": result.status,
        "message": result.message,
        "device": result.device,
        "acc_val": rows(result.acc_val),
        "acc_test": rows(result.acc_test),
        "matrix_rows": "row i = after learning i tasks; row 0 = untrained model",
        "metrics": {s: result.metrics(s) for s in ("val", "test")},
        "train_loss": result.train_loss,
        "seconds": result.seconds,
    }
    if curve:  # task-free streams: accuracy over time, one entry per (step, task, split)
        payload["curve"] = [dataclasses.asdict(point) for point in curve]
    if choices:  # --per-task: what was chosen for each task, and every attempt
        payload["per_task"] = choices
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, allow_nan=True))


if __name__ == "__main__":
    sys.exit(main())
