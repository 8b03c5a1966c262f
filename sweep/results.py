"""Finished Tune trials -> trials.parquet, tasks.parquet and sweep.json (docs/results-schema.md).

The writer runs in the driver, called from a Tune callback as each trial ends, and rewrites each
file atomically (temporary file in the same folder, then ``os.replace``): a crash at any moment
leaves the previous complete file, so a finished trial is never lost. Rows are keyed by trial id;
a trial seen again after a resume keeps the row written first.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from ray import tune

from cl_core.methods import get_method
from cl_core.params import resolve
from sweep.curves import CURVES_FILE, CURVES_SCHEMA, curve_rows
from sweep.interrupt import sigint_received
from sweep.space import SweepSpec
from sweep.trial_config import run_config, searched_values, trial_config_id

SCHEMA_VERSION = 1
SPLITS = ("val", "test")
METRICS = ("avg_acc", "bwt", "fwt", "forgetting", "plasticity")
HP_TYPES = {"float": pa.float64(), "int": pa.int64(), "bool": pa.bool_(), "choice": pa.string()}
SETTINGS = (
    ("data_seed", pa.int64()),
    ("train_seed", pa.int64()),
    ("optimizer", pa.string()),
    ("lr", pa.float64()),
    ("weight_decay", pa.float64()),
    ("momentum", pa.float64()),
    ("batch_size", pa.int64()),
    ("epochs", pa.int64()),
    ("iterations", pa.int64()),
    ("hidden", pa.string()),
    ("reset_optimizer", pa.bool_()),
    ("val_fraction", pa.float64()),
    ("class_il_units", pa.string()),
    ("first_task_unpermuted", pa.bool_()),
    ("pad32", pa.bool_()),
    ("stream", pa.string()),
    ("update_every", pa.int64()),
    ("transition", pa.int64()),
    ("eval_every", pa.int64()),
)
TASKS_SCHEMA = pa.schema(
    [
        ("schema_version", pa.int64()),
        ("sweep", pa.string()),
        ("trial_id", pa.string()),
        ("phase", pa.string()),
        ("tasks_learned", pa.int64()),
        ("task", pa.int64()),
        ("split", pa.string()),
        ("accuracy", pa.float64()),
        ("train_loss", pa.float64()),
        ("task_seconds", pa.float64()),
    ]
)


def trials_schema(methods: tuple[str, ...]) -> pa.Schema:
    """Columns of trials.parquet for a sweep of ``methods`` (hp_* columns: all of theirs)."""
    declared = {p.name: p for m in methods for p in get_method(m).hyperparams.values()}
    hps = [(f"hp_{p.name}", HP_TYPES[p.kind]) for p in declared.values()]
    metrics = [(f"{s}_{m}", pa.float64()) for m in METRICS for s in SPLITS]
    return pa.schema(
        [
            ("schema_version", pa.int64()),
            ("sweep", pa.string()),
            ("trial_id", pa.string()),
            ("phase", pa.string()),
            ("cell", pa.string()),
            ("config_id", pa.string()),
            ("final_rank", pa.int64()),
            ("method", pa.string()),
            ("benchmark", pa.string()),
            ("scenario", pa.string()),
            ("n_tasks", pa.int64()),
            *SETTINGS,
            *hps,
            ("status", pa.string()),
            ("message", pa.string()),
            ("tasks_completed", pa.int64()),
            *metrics,
            ("objective", pa.float64()),
            ("wall_time_s", pa.float64()),
            ("device", pa.string()),
            ("node", pa.string()),
            ("started_at", pa.string()),
            ("ended_at", pa.string()),
        ]
    )


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def trial_rows(
    spec: SweepSpec,
    trial_id: str,
    config: dict[str, Any],
    result: dict[str, Any],
    error_message: str | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The trials.parquet row and tasks.parquet rows of one ended trial.

    ``result`` is the trial's last report (empty if it died before reporting); ``error_message``
    is set when Tune saw the trial fail outside the trainable's own error handling.
    """
    cfg = run_config(config)
    meta = config["meta"]
    status = result.get("status", "error")
    if error_message is not None:
        status = "error"
    elif status == "running":
        status = "stopped"
    completed = status == "completed"
    row: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "sweep": spec.name,
        "trial_id": trial_id,
        "phase": meta["phase"],
        "cell": meta["cell"],
        "config_id": trial_config_id(config),
        "final_rank": config["final"]["rank"] if "final" in config else None,
        "method": cfg.method,
        "benchmark": cfg.benchmark,
        "scenario": cfg.scenario,
        "n_tasks": cfg.n_tasks,
    }
    for name, _ in SETTINGS:
        row[name] = getattr(cfg, name)
    row["hidden"] = ",".join(str(h) for h in cfg.hidden)
    declared = get_method(cfg.method).hyperparams
    for name, value in resolve(declared, cfg.method_params, cfg.method).items():
        row[f"hp_{name}"] = str(value) if declared[name].kind == "choice" else value
    row["status"] = status
    row["message"] = error_message or result.get("message")
    row["tasks_completed"] = int(result.get("tasks_completed", 0))
    for split in SPLITS:
        for metric in METRICS:
            value = _finite(result.get(f"{split}_{metric}"))
            row[f"{split}_{metric}"] = value if completed or metric == "avg_acc" else None
    primary = spec.metrics[0]
    row["objective"] = _finite(result.get(primary)) if status in ("completed", "stopped") else None
    row["wall_time_s"] = float(result.get("run_wall_s", 0.0))
    for key in ("device", "node", "started_at", "ended_at"):
        row[key] = result.get(key)
    return row, _task_rows(spec.name, trial_id, meta["phase"], result)


def _task_rows(sweep: str, trial_id: str, phase: str, result: dict[str, Any]) -> list[dict]:
    matrix = json.loads(result.get("matrix") or '{"val": [], "test": []}')
    rows = []
    for split in SPLITS:
        for learned, accs in enumerate(matrix[split]):
            loss = matrix["loss"][learned]
            seconds = matrix["seconds"][learned]
            for task, acc in enumerate(accs):
                rows.append(
                    {
                        "schema_version": SCHEMA_VERSION,
                        "sweep": sweep,
                        "trial_id": trial_id,
                        "phase": phase,
                        "tasks_learned": learned,
                        "task": task,
                        "split": split,
                        "accuracy": float("nan") if acc is None else float(acc),
                        "train_loss": None if learned == 0 else _finite(loss),
                        "task_seconds": None if learned == 0 else _finite(seconds),
                    }
                )
    return rows


def write_atomic(table: pa.Table, path: Path) -> None:
    """Write next to ``path`` and rename over it: readers see the old or the new file, whole."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class ResultsStore:
    """The sweep's Parquet files, loaded once and rewritten after each added trial."""

    def __init__(self, spec: SweepSpec, folder: Path) -> None:
        self.spec = spec
        self.folder = folder
        self.trials_path = folder / "trials.parquet"
        self.tasks_path = folder / "tasks.parquet"
        self.curves_path = folder / CURVES_FILE
        self.trials_schema = trials_schema(spec.methods)
        self.trials: list[dict[str, Any]] = []
        self.tasks: list[dict[str, Any]] = []
        self.curves: list[dict[str, Any]] = []  # task-free streams only (sweep/curves.py)
        if self.trials_path.exists():
            self.trials = pq.read_table(self.trials_path).to_pylist()
        ids = self.ids()
        if self.tasks_path.exists():
            # tasks.parquet is written first: rows of a trial missing from trials.parquet are
            # from a write interrupted in between, and are written again with that trial.
            self.tasks = [
                r for r in pq.read_table(self.tasks_path).to_pylist() if r["trial_id"] in ids
            ]
        if self.curves_path.exists():  # written first too, like tasks.parquet
            self.curves = [
                r for r in pq.read_table(self.curves_path).to_pylist() if r["trial_id"] in ids
            ]

    def ids(self) -> set[str]:
        return {r["trial_id"] for r in self.trials}

    def add(
        self,
        row: dict[str, Any],
        task_rows: list[dict[str, Any]],
        curve_rows: list[dict[str, Any]] = (),
    ) -> bool:
        """Add one trial; False (and nothing written) if its id is already recorded."""
        if row["trial_id"] in self.ids():
            return False
        self.trials.append(row)
        self.tasks.extend(task_rows)
        self.curves.extend(curve_rows)
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.curves:
            write_atomic(pa.Table.from_pylist(self.curves, schema=CURVES_SCHEMA), self.curves_path)
        write_atomic(pa.Table.from_pylist(self.tasks, schema=TASKS_SCHEMA), self.tasks_path)
        write_atomic(pa.Table.from_pylist(self.trials, schema=self.trials_schema), self.trials_path)
        return True

    def recorded_reports(self) -> dict[str, dict[str, Any]]:
        """For each recorded trial, a final report equivalent to the one it made (for resume)."""
        out = {}
        for row in self.trials:
            report = {
                k: row[k]
                for k in (
                    "status",
                    "message",
                    "tasks_completed",
                    "device",
                    "node",
                    "started_at",
                    "ended_at",
                )
            }
            report["tasks_learned"] = row["tasks_completed"]
            report["done_all_tasks"] = row["status"] == "completed"
            report["run_wall_s"] = row["wall_time_s"]
            for split in SPLITS:
                for metric in METRICS:
                    value = row[f"{split}_{metric}"]
                    report[f"{split}_{metric}"] = float("nan") if value is None else value
            out[row["trial_id"]] = report
        return out


def record_cut_trials(spec: SweepSpec, folder: Path, results: Iterable[Any]) -> None:
    """Rows for trials that Tune's time limit stopped without telling the callbacks.

    ``results`` are Tune ``Result`` objects of one phase; a trial that reported at least once is
    recorded from its last report (as ``stopped``); one that never reported has nothing to record.
    """
    store = ResultsStore(spec, folder)
    for result in results:
        report = dict(result.metrics or {})
        if "tasks_learned" in report and report.get("trial_id") not in store.ids():
            row, tasks = trial_rows(spec, report["trial_id"], report["config"], report)
            store.add(row, tasks, curve_rows(row, report))


class ResultsCallback(tune.Callback):
    """Writes each trial's rows the moment Tune reports it ended, and prints a progress line.

    Tune pickles its callbacks into the experiment state; the store (with the rows) is left out
    and re-read from the Parquet files in ``setup``, so a resumed run starts from the files.
    """

    def __init__(self, spec: SweepSpec, folder: str, total: int, label: str) -> None:
        self.spec, self.folder, self.total, self.label = spec, folder, total, label
        self.store: ResultsStore | None = None
        self.seen = 0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "store": None}

    def setup(self, **info: Any) -> None:
        self.store = ResultsStore(self.spec, Path(self.folder))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._record(trial, None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if sigint_received():  # killed by Ctrl-C, not failed: --resume runs it again
            return
        error = trial.get_error()
        lines = [ln for ln in str(error or "trial failed").splitlines() if ln.strip()]
        self._record(trial, lines[-1].strip() if lines else "trial failed")

    def _record(self, trial: Any, error_message: str | None) -> None:
        if self.store is None:
            self.setup()
        result = dict(trial.last_result or {})
        row, tasks = trial_rows(self.spec, trial.trial_id, trial.config, result, error_message)
        if not self.store.add(row, tasks, curve_rows(row, result)):
            return
        self.seen += 1
        values = ", ".join(f"{k}={_fmt(v)}" for k, v in searched_values(trial.config).items())
        objective = "-" if row["objective"] is None else f"{row['objective']:.4f}"
        print(
            f"[{self.label} {self.seen}/{self.total}] {trial.trial_id} {row['status']:<9} "
            f"tasks {row['tasks_completed']}/{row['n_tasks']} {self.spec.metrics[0]}={objective} "
            f"{values} ({row['wall_time_s']:.1f}s)",
            flush=True,
        )


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("clsweep", "torch", "ray", "optuna", "pandas", "pyarrow"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def write_sweep_json(
    spec: SweepSpec, folder: Path, command: str, started_at: str, ended_at: str | None
) -> None:
    """sweep.json: what was run, by which command and code, when. Keeps the first start time."""
    path = folder / "sweep.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    resumed = list(previous.get("resumed", []))
    if previous and ended_at is None:
        resumed.append({"command": command, "at": started_at})
    doc = {
        "schema_version": SCHEMA_VERSION,
        "name": spec.name,
        "space_file": spec.file,
        "space": spec.raw,
        "searched": [p.to_json() for p in spec.params],
        "objective": {"metrics": list(spec.metrics), "modes": list(spec.modes)},
        "cells": [c.key for c in spec.cells],
        "command": previous.get("command", command),
        "versions": versions(),
        "git_commit": git_commit(),
        "started_at": previous.get("started_at", started_at),
        "ended_at": ended_at,
        "resumed": resumed,
    }
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".sweep.json.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(doc, handle, indent=2, default=str)
    os.replace(tmp, path)
