"""``clsweep best RESULTS... --into DIR``: each sweep's chosen configurations as registry entries.

One entry per (method, benchmark, scenario, task count, selection protocol) found
(:mod:`contract.registry`, docs/registry.md). The chosen configuration is the one the sweep
itself chose: its final phase's rank-1 configuration (the best search configuration by the
sweep's objective, re-run with fresh seeds), or, without a final phase, the best completed
search trial by the objective, in the direction the sweep recorded (:meth:`SweepInfo.direction`).
Nothing is re-selected on test data.

The settings come from the chosen row of trials.parquet read with pyarrow, not pandas, so that an
integer hyperparameter stays an integer and every float is the exact value that trained: the
entry must rerun the row bit for bit (``clsweep run --config``). Imports the contract only.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd
import yaml

from analysis.load import AnalysisError, SweepInfo, load_results
from contract import tables as parquet
from contract.formatting import format_pm, format_short, sem
from contract.registry import (
    DEFAULT_PROTOCOL,
    RegistryError,
    better_supported,
    canonical_json,
    check_replace,
    describe_support,
    entry_path,
    seal,
    support,
    write_entry,
)
from contract.schema import COMPLETED, SETTINGS, TRIALS_FILE
from contract.yaml_numbers import read_floats_as_yaml_1_2

IDENTITY = ("benchmark", "scenario", "n_tasks", "method")


class _SpaceLoader(yaml.SafeLoader):
    """PyYAML's safe loader reading ``1.0e5`` as a number, as the sweep read the space
    (sweep/yaml_safe.py; YAML 1.1 would read it as a string)."""


read_floats_as_yaml_1_2(_SpaceLoader)
NO_FINAL = "the sweep had no final phase: only the search value supports this configuration"


def protocol_of(meta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The selection protocol a sweep ran under and its other settings (sweep.json's
    ``selection``; sweeps written before it existed ran end-of-sequence selection)."""
    selection = meta.get("selection")
    if isinstance(selection, str):
        return selection, {}
    if isinstance(selection, dict) and selection.get("protocol"):
        rest = {k: v for k, v in selection.items() if k != "protocol"}
        return str(selection["protocol"]), rest
    return DEFAULT_PROTOCOL, {}


def entries_from(paths: list[str | Path], now: str | None = None) -> tuple[list[dict], list[str]]:
    """Unsealed entries for every (method, cell) of the sweeps at ``paths``, and notes on the
    ones that have no completed trial to choose from."""
    results = load_results(paths)
    now = now or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    entries, notes = [], []
    for name, info in results.sweeps.items():
        exact = _exact_rows(info)
        trials = results.trials[results.trials["sweep"] == name]
        for (method, cell), rows in trials.groupby(["method", "cell"], sort=True):
            entry = _entry(info, rows, exact, now)
            if entry is None:
                notes.append(f"no entry for {method} on {cell} in sweep {name}: no completed trial")
            else:
                entries.append(entry)
    return entries, notes


def _entry(
    info: SweepInfo, rows: pd.DataFrame, exact: dict[str, dict], now: str
) -> dict[str, Any] | None:
    metric, _ = info.objective
    mode = info.direction(metric)
    search = rows[rows["phase"] == "search"]
    done = search[(search["status"] == COMPLETED) & search[metric].notna()]
    finals = rows[(rows["phase"] == "final") & (rows["final_rank"] == 1)]
    if len(finals):
        config_id = str(finals["config_id"].iloc[0])
        chosen_by = "final phase rank 1: the best search configuration by the objective"
        finals = finals.sort_values("train_seed", kind="stable")
        seed_rows = finals[finals["status"] == COMPLETED]
        first = seed_rows if len(seed_rows) else finals  # the entry's seed: its first final seed
        row = exact[str(first["trial_id"].iloc[0])]
    elif len(done):
        ranked = done.sort_values("trial_id").sort_values(
            metric, ascending=mode == "min", kind="stable"
        )
        config_id = str(ranked["config_id"].iloc[0])
        chosen_by = "best completed search trial by the objective (no final phase)"
        row = exact[str(ranked["trial_id"].iloc[0])]
        seed_rows = finals
    else:
        return None
    searched = done[done["config_id"] == config_id]
    protocol, settings = protocol_of(info.meta)
    return {
        "config": _config(row),
        "selection": {
            "protocol": protocol,
            "protocol_settings": settings,
            "objective": {"metric": metric, "mode": mode},
            "chosen_by": chosen_by,
            "config_id": config_id,
            "search_trials": len(search),
            "search_completed": len(done),
            "search_value": _number(searched[metric].mean()) if len(searched) else None,
            "search_trial_ids": sorted(str(t) for t in searched["trial_id"]),
        },
        "final": _final(metric, finals, seed_rows),
        "provenance": _provenance(info, row),
        "written_at": now,
    }


def _config(row: dict[str, Any]) -> dict[str, Any]:
    """RunConfig settings of a trials row: the cell, the method, every recorded setting and the
    method's hyperparameters (its non-null ``hp_`` columns), as the row holds them."""
    config = {key: row[key] for key in IDENTITY}
    params = {k[3:]: _plain(v) for k, v in row.items() if k.startswith("hp_") and v is not None}
    config["method_params"] = dict(sorted(params.items()))
    for name, _ in SETTINGS:
        config[name] = _plain(row.get(name))
    return config


def _final(metric: str, finals: pd.DataFrame, done: pd.DataFrame) -> dict[str, Any]:
    """The final phase's test metric over the chosen configuration's completed fresh seeds."""
    test = "test_" + metric.removeprefix("val_") if metric.startswith("val_") else "test_avg_acc"
    if finals.empty or done.empty:
        counts = ", ".join(f"{s} {n}" for s, n in finals["status"].value_counts().items())
        note = NO_FINAL if finals.empty else f"no final-phase run of it completed ({counts})"
        return {
            "ran": False,
            "note": note,
            "metric": test,
            "mean": None,
            "sem": None,
            "n": 0,
            "seeds": [],
            "values": [],
            "val_mean": None,
        }
    return {
        "ran": True,
        "note": None,
        "metric": test,
        "mean": _number(done[test].mean()),
        "sem": _number(sem(done[test])),
        "n": len(done),
        "seeds": [int(s) for s in done["train_seed"]],
        "values": [_number(v) for v in done[test]],
        "val_mean": _number(done[metric].mean()),
    }


def _provenance(info: SweepInfo, row: dict[str, Any]) -> dict[str, Any]:
    meta = info.meta
    versions = meta.get("versions") or {}
    space = meta.get("space")
    space_hash = None if space is None else _sha256(canonical_json(space).encode())
    return {
        "sweep": info.name,
        "results_folder": info.path.name,  # where it lay is the machine's, not the entry's
        "space_file": meta.get("space_file"),
        "space_sha256": space_hash,
        "space_file_sha256": _space_file_hash(meta.get("space_file"), space),
        "fingerprint": meta.get("fingerprint"),
        "command": portable_command(meta.get("command")),
        "git_commit": meta.get("git_commit"),
        "clsweep_version": versions.get("clsweep"),
        "versions": dict(versions),
        "sweep_started_at": meta.get("started_at"),
        "sweep_ended_at": meta.get("ended_at"),
        "device": row.get("device"),
        "population": row.get("population"),
    }


MACHINE_OPTIONS = ("--data-root", "--out")
"""Options whose values name folders of the machine the sweep ran on (they change no number)."""


def portable_command(command: str | None) -> str | None:
    """The sweep's command with the folders of its machine replaced by DIR, so that an entry
    shipped with the project names no one's paths."""
    if command is None:
        return None
    for option in MACHINE_OPTIONS:
        command = re.sub(rf"({option})(=|\s+)\S+", r"\1\2DIR", command)
    return command


def _space_file_hash(space_file: str | None, space: Any) -> str | None:
    """sha256 of the space file's bytes, if it is still there and still holds the space the
    sweep recorded (a file edited since would vouch for another space)."""
    if not space_file or space is None:
        return None
    path = Path(space_file)
    try:
        data = path.read_bytes()
        same = canonical_json(yaml.load(data, Loader=_SpaceLoader)) == canonical_json(space)
    except (OSError, yaml.YAMLError, TypeError, ValueError):
        return None
    return _sha256(data) if same else None


def _exact_rows(info: SweepInfo) -> dict[str, dict[str, Any]]:
    """trial_id -> the trials row with Arrow's types (ints stay ints where pandas would make a
    float column of an int column with nulls)."""
    table = parquet.read_table(info.path, TRIALS_FILE)
    return {str(r["trial_id"]): r for r in table.to_pylist()}


def _plain(value: Any) -> Any:
    """A JSON-safe scalar: NaN and inf become None (a setting or metric that has no value)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _number(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def plan(entries: list[dict], into: Path, force: bool) -> list[tuple[Path, dict[str, Any]]]:
    """(path, sealed entry) to write; the first refusal raises before anything is written."""
    chosen: dict[Path, dict[str, Any]] = {}
    for entry in entries:
        sealed = seal(entry)
        path = entry_path(into, sealed)
        old = chosen.get(path)
        if old is not None and better_supported(old, sealed) and not force:
            raise RegistryError(
                f"sweeps {old['provenance']['sweep']} and {sealed['provenance']['sweep']} both "
                f"give {path} and the first is better supported ({describe_support(old)} against "
                f"{describe_support(sealed)}); write them in separate commands, or pass --force "
                "(the last given wins)"
            )
        chosen[path] = sealed
    for path, sealed in chosen.items():
        check_replace(path, sealed, force)
    return list(chosen.items())


def summary(path: Path, entry: dict[str, Any]) -> str:
    """One line per entry written: what it is, its values to 4 digits and its support."""
    config, final = entry["config"], entry["final"]
    cell = f"{config['benchmark']}/{config['scenario']}/{config['n_tasks']}"
    searched = entry["provenance"]["sweep"]
    params = ", ".join(f"{k}={format_short(v)}" for k, v in config["method_params"].items())
    if final["ran"]:
        result = (
            f"final {final['metric']} "
            f"{format_pm(final['mean'], final['sem'] or math.nan, final['n'])}"
        )
    else:
        value = entry["selection"]["search_value"]
        result = f"no final phase, search value {format_pm(value)}"
    trials, _ = support(entry)
    return (
        f"wrote {path}: {config['method']} on {cell} ({entry['selection']['protocol']}, "
        f"sweep {searched}, {trials} search trials): {params or '(defaults)'}; {result}"
    )


class _Parser(argparse.ArgumentParser):
    """A bad command line is one line on stderr and exit 2, not a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {' '.join(message.split())}; see clsweep best --help\n")


def main(argv: list[str] | None = None) -> int:
    """Write the entries; a bad input or a refused overwrite is one line and exit code 2."""
    parser = _Parser(
        prog="clsweep best",
        description="Write each sweep's chosen configuration per method, benchmark, scenario, "
        "task count and selection protocol as a registry entry (docs/registry.md).",
    )
    parser.add_argument("results", nargs="+", help="sweep folders (or folders of sweeps, globs)")
    parser.add_argument("--into", required=True, type=Path, help="registry folder")
    parser.add_argument(
        "--force", action="store_true", help="overwrite entries that are better supported"
    )
    args = parser.parse_args(argv)
    try:
        if args.into.exists() and not args.into.is_dir():
            raise RegistryError(f"--into {args.into} is a file; pass a registry folder")
        entries, notes = entries_from(args.results)
        if not entries:
            raise AnalysisError(
                "no method in the given sweeps has a completed trial to choose; check "
                "trials.parquet's status and message columns"
            )
        planned = plan(entries, args.into, args.force)
        for path, entry in planned:
            write_entry(path, entry)
    except (AnalysisError, RegistryError, OSError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"note: {note}")
    for path, entry in planned:
        print(summary(path, entry))
    return 0
