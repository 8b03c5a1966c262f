"""Ended trials -> trials.parquet, tasks.parquet (and curves.parquet) parts, and sweep.json
(docs/results-schema.md).

The store runs in the driver. Recording a trial writes its tasks part (and, for a task-free stream
run, its curves part: :mod:`sweep.curves`), then its trials part (the trials row is the commit:
tasks and curves rows of a trial without one are dropped on load and compaction),
each atomically (:mod:`contract.tables`); only then is Optuna told. So a crash at any moment
leaves every recorded trial whole, and the cost of recording does not depend on how many trials
came before. The store keeps in memory only what the runner needs: the ids recorded and, per
study, the completed search configs (to choose the final phase's) and the best value so far.
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow as pa

from cl_core.methods import get_method
from contract import METRICS, SCHEMA_VERSION, SPLITS
from contract import tables as parquet
from contract.schema import (
    COMPLETED,
    COST_COLUMNS,
    CURVES_FILE,
    CURVES_SCHEMA,
    ERROR,
    META_FILE,
    PER_TASK_COLUMN,
    SETTINGS,
    STOPPED,
    TASKS_FILE,
    TASKS_SCHEMA,
    TRIALS_FILE,
    trials_schema,
)
from sweep.protocol import protocol_record
from sweep.space import SweepSpec
from sweep.trial_config import TrialRun


def sweep_trials_schema(methods: Iterable[str]) -> pa.Schema:
    """trials.parquet's columns for a sweep of ``methods`` (hp_* columns: all of theirs)."""
    declared = {p.name: p.kind for m in methods for p in get_method(m).hyperparams.values()}
    return trials_schema(declared.items())


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def trial_rows(
    spec: SweepSpec,
    run: TrialRun,
    result: dict[str, Any],
    error_message: str | None = None,
    restarts: int = 0,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The trials.parquet row and tasks.parquet rows of one ended trial.

    ``run`` is the trial as launched: its settings and resolved hyperparameters are the row's.
    ``result`` is the trial's last report (empty if it died before reporting); ``error_message``
    is set when Tune saw the trial fail outside the trainable's own error handling; ``restarts``:
    how often Tune restarted it after its worker or node went away.
    """
    plan, cfg = run.plan, run.config
    cell = spec.units[plan.unit][1]
    status = result.get("status", ERROR)
    if error_message is not None:
        status = ERROR
    elif status == "running":
        status = STOPPED
    completed = status == COMPLETED
    row: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "sweep": spec.name,
        "trial_id": plan.trial_id,
        "phase": plan.phase,
        "cell": cell.key,
        "config_id": plan.config_id,
        "final_rank": plan.final_rank,
        "method": cfg.method,
        "benchmark": cfg.benchmark,
        "scenario": cfg.scenario,
        "n_tasks": cfg.n_tasks,
    }
    for name, _ in SETTINGS:
        row[name] = getattr(cfg, name)
    row["hidden"] = ",".join(str(h) for h in cfg.hidden)
    declared = get_method(cfg.method).hyperparams
    for name, value in run.method_params.items():
        row[f"hp_{name}"] = str(value) if declared[name].kind == "choice" else value
    row["status"] = status
    row["message"] = error_message or result.get("message")
    row["tasks_completed"] = int(result.get("tasks_completed", 0))
    for metric in METRICS.values():
        for split in SPLITS:
            value = _finite(result.get(metric.column(split)))
            keep = completed or metric.before_last_task
            row[metric.column(split)] = value if keep else None
    primary = spec.metrics[0]
    row["objective"] = _finite(result.get(primary)) if status in (COMPLETED, STOPPED) else None
    row["wall_time_s"] = float(result.get("run_wall_s", 0.0))
    row["restarts"] = restarts
    copied = ("device", "node", "population", "started_at", "ended_at", PER_TASK_COLUMN)
    for key in (*copied, *COST_COLUMNS):
        row[key] = result.get(key)
    return row, _task_rows(spec.name, plan.trial_id, plan.phase, result)


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


def avg_acc_curve(task_rows: list[dict[str, Any]], split: str = "val") -> dict[int, float]:
    """{tasks learned: average accuracy over the tasks learned so far} from tasks rows
    (docs/references.md, Metrics)."""
    by_step: dict[int, list[float]] = defaultdict(list)
    for r in task_rows:
        if r["split"] == split and r["tasks_learned"] > 0 and r["task"] < r["tasks_learned"]:
            by_step[r["tasks_learned"]].append(r["accuracy"])
    return {step: sum(v) / len(v) for step, v in sorted(by_step.items())}


@dataclass
class StudyRecord:
    """What the store keeps per study (method, cell): ended search configs and counts."""

    completed: list[tuple[float, str, str, dict[str, Any]]] = field(default_factory=list)
    """(objective, trial_id, config_id, values) of completed search trials."""
    search_done: int = 0
    final_done: int = 0
    best: float | None = None


class ResultsStore:
    """The sweep's Parquet tables, written one part per trial (see the module docstring)."""

    def __init__(self, spec: SweepSpec, folder: Path) -> None:
        self.spec = spec
        self.folder = Path(folder)
        self.schema = sweep_trials_schema(spec.methods)
        self.ids: set[str] = set()
        self.studies: dict[tuple[str, str], StudyRecord] = defaultdict(StudyRecord)
        self.rows_read: list[dict[str, Any]] = []
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        """Called with each row once it is recorded (the console's failure lines)."""
        # Called before each write: the runner sets the folder lock's check(), so that a sweep
        # that lost its folder to another one stops before writing into it (sweep/lock.py).
        self.before_write: Callable[[], None] = lambda: None
        if parquet.exists(self.folder, TRIALS_FILE):
            self.rows_read = parquet.read_table(self.folder, TRIALS_FILE).to_pylist()
            for row in self.rows_read:
                self._remember(row)

    def _remember(self, row: dict[str, Any]) -> None:
        self.ids.add(row["trial_id"])
        record = self.studies[(row["method"], row["cell"])]
        if row["phase"] != "search":
            record.final_done += 1
            return
        record.search_done += 1
        if row["status"] == COMPLETED and row["objective"] is not None:
            values = {p.name: row[p.column] for p in self.spec.params_for(row["method"])}
            item = (row["objective"], row["trial_id"], row["config_id"], values)
            record.completed.append(item)
            better = max if self.spec.modes[0] == "max" else min
            record.best = (
                row["objective"] if record.best is None else better(record.best, row["objective"])
            )

    def add(
        self,
        row: dict[str, Any],
        task_rows: list[dict[str, Any]],
        curve_rows: list[dict[str, Any]] = (),
    ) -> bool:
        """Record one trial; False (and nothing written) if its id is already recorded.
        ``curve_rows``: its accuracy-over-time points (task-free stream runs only)."""
        if row["trial_id"] in self.ids:
            return False
        self.before_write()
        part = row["trial_id"]
        tasks = pa.Table.from_pylist(task_rows, schema=TASKS_SCHEMA)
        parquet.write_part(self.folder, TASKS_FILE, tasks, part)
        if curve_rows:
            curves = pa.Table.from_pylist(list(curve_rows), schema=CURVES_SCHEMA)
            parquet.write_part(self.folder, CURVES_FILE, curves, part)
        trials = pa.Table.from_pylist([row], schema=self.schema)
        parquet.write_part(self.folder, TRIALS_FILE, trials, part)
        self._remember(row)
        for listener in self.listeners:
            listener(row)
        return True

    def drop(self, ids: set[str]) -> None:
        """Remove the rows of trials ``ids`` from the tables (error rows that --resume runs
        again; each is written anew when its re-run ends)."""
        if not ids:
            return
        self.before_write()
        self.rows_read = [r for r in self.rows_read if r["trial_id"] not in ids]
        self.ids = set()
        self.studies = defaultdict(StudyRecord)
        for row in self.rows_read:
            self._remember(row)
        parquet.compact(self.folder, TRIALS_FILE, self.schema, keep=self.ids)
        parquet.compact(self.folder, TASKS_FILE, TASKS_SCHEMA, keep=self.ids)
        parquet.compact(self.folder, CURVES_FILE, CURVES_SCHEMA, keep=self.ids)

    def compact(self) -> None:
        """Merge the parts of each table (end of a run; also before a resumed run starts)."""
        self.before_write()
        parquet.compact(self.folder, TRIALS_FILE, self.schema)
        parquet.compact(self.folder, TASKS_FILE, TASKS_SCHEMA, keep=self.ids)
        parquet.compact(self.folder, CURVES_FILE, CURVES_SCHEMA, keep=self.ids)

    def top_configs(self, method: str, cell: str, k: int) -> list[tuple[str, dict[str, Any]]]:
        """The ``k`` best distinct completed search configs of a study: (config_id, values).

        Ranked on the first objective; ties keep the order of trial ids (stable across resumes).
        """
        items = sorted(self.studies[(method, cell)].completed, key=lambda item: item[1])
        items.sort(key=lambda item: item[0], reverse=self.spec.modes[0] == "max")
        best: dict[str, dict[str, Any]] = {}
        for _, _, cid, values in items:
            if cid not in best and len(best) < k:
                best[cid] = values
        return list(best.items())


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


def read_sweep_json(folder: Path) -> dict[str, Any]:
    return json.loads((Path(folder) / META_FILE).read_text())


def write_sweep_json(
    spec: SweepSpec, folder: Path, command: str, started_at: str, ended_at: str | None
) -> None:
    """sweep.json: what was run, by which command and code, when; the objective's directions and
    every metric's, so that analysis never guesses one. Keeps the first start time."""
    path = Path(folder) / META_FILE
    previous = json.loads(path.read_text()) if path.exists() else {}
    resumed = list(previous.get("resumed", []))
    if previous and ended_at is None:
        resumed.append({"command": command, "at": started_at})
    doc = {
        "schema_version": SCHEMA_VERSION,
        "name": spec.name,
        "space_file": spec.file,
        "space": spec.raw,
        "fingerprint": spec.fingerprint(),
        "methods": list(spec.methods),
        "searched": [p.to_json() for p in spec.params],
        "objective": {"metrics": list(spec.metrics), "modes": list(spec.modes)},
        "metrics": {m.column("val"): m.to_json() for m in METRICS.values()}
        | {m.column("test"): m.to_json() for m in METRICS.values()},
        "cells": [c.key for c in spec.cells],
        "selection": {
            **spec.selection.to_json(),
            "evaluated_on": {c.key: spec.selection.final_cell(c).key for c in spec.cells},
            "described": {c.key: spec.selection.describe(c) for c in spec.cells},
        },
        "protocol": protocol_record(spec),
        "loggers": [logger.name for logger in spec.loggers],
        "command": previous.get("command", command),
        "versions": versions(),
        "git_commit": git_commit(),
        "started_at": previous.get("started_at", started_at),
        "ended_at": ended_at,
        "resumed": resumed,
    }
    text = json.dumps(doc, indent=2, default=str)
    parquet.atomic_write_bytes(Path(folder), path, text.encode())
