"""Sweep folders (the Parquet contract of docs/results-schema.md) -> tidy pandas frames.

analysis reads only these files and the :mod:`contract` module, never ``ray``, ``torch``, ``sweep``
or ``cl_core``, so that results copied from a cluster can be studied on a laptop with only the
analysis installed. Every problem a user can cause (a wrong path, a folder that is not a sweep, a
schema written by a newer clsweep) raises :class:`AnalysisError` with a message that names the
fix; the CLI turns it into one line and exit code 2. Which way a metric is better is read from
each sweep's sweep.json (its objective's recorded mode, and the metric registry it was written
with), never guessed from a name.
"""

from __future__ import annotations

import glob
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from contract import METRICS, READABLE_VERSIONS, SearchParam
from contract import tables as parquet
from contract.metrics import metric as registered_metric
from contract.schema import (
    COMPLETED,
    META_FILE,
    TASK_KEY_COLUMNS,
    TASKS_FILE,
    TRIAL_KEY_COLUMNS,
    TRIALS_FILE,
)

SWEEP_FILES = (TRIALS_FILE, TASKS_FILE, META_FILE)
TRIAL_COLUMNS = TRIAL_KEY_COLUMNS
"""Columns analysis relies on; a table without them was not written by python -m sweep."""
TASK_COLUMNS = TASK_KEY_COLUMNS
CELL_KEYS = ["method", "benchmark", "scenario", "n_tasks"]
"""A table row: one method in one scenario cell (benchmark, scenario, task count)."""
STUDY = "study"
"""Derived column ``<method> on <cell>``: each method in each cell is searched on its own (one
Optuna study), so search plots and importance work per study."""
TRIAL_KEY = ["sweep", "trial_id"]
"""``trial_id`` is unique only within its sweep (docs/results-schema.md)."""


class AnalysisError(Exception):
    """Bad input (not a sweep, wrong schema, nothing to analyse); the message says why.

    The CLI prints it as one line and exits with code 2, as every clsweep CLI does."""


@dataclass(frozen=True)
class Param(SearchParam):
    """One searched parameter as sweep.json's ``searched`` list records it (the contract's
    description), plus how analysis treats its values.

    ``column`` is its column in trials.parquet; ``log`` says the space is logarithmic, so plots use
    a log axis and importance uses a log distribution.
    """

    def is_categorical(self, values: pd.Series) -> bool:
        """Whether the tried ``values`` are unordered categories (a choice space, bools, strings):
        plotted as evenly spaced categories and given to Optuna as a categorical distribution."""
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        return bool(self.choices) or self.categorical or not numeric


@dataclass
class SweepInfo:
    """One sweep folder: where it is, its ``sweep.json`` and its searched parameters."""

    name: str
    path: Path
    meta: dict[str, Any]
    params: list[Param]

    @property
    def objective(self) -> tuple[str, str]:
        """(metric, mode) of the primary objective; val_avg_acc/max if sweep.json lacks it."""
        objective = self.meta.get("objective") or {}
        metrics = objective.get("metrics") or ["val_avg_acc"]
        modes = objective.get("modes") or ["max"]
        return str(metrics[0]), str(modes[0])

    def direction(self, column: str) -> str:
        """ "max" or "min" for a metric column, as this sweep recorded it: the objective's mode if
        it is an objective, else the metric registry written into sweep.json (schema 1 sweeps,
        which lack it, get the registry of this version)."""
        objective = self.meta.get("objective") or {}
        pairs = zip(objective.get("metrics") or [], objective.get("modes") or [], strict=False)
        for name, mode in pairs:
            if name == column:
                return str(mode)
        recorded = (self.meta.get("metrics") or {}).get(column)
        if recorded and recorded.get("direction") in ("max", "min"):
            return str(recorded["direction"])
        try:
            return registered_metric(column).direction
        except KeyError:
            raise AnalysisError(
                f"{column!r} is not a metric of sweep {self.name}; use one of "
                f"{', '.join(m.column('val') for m in METRICS.values())}"
            ) from None


@dataclass
class Results:
    """All loaded sweeps: trials and tasks concatenated (keyed by ``sweep`` + ``trial_id``)."""

    trials: pd.DataFrame
    tasks: pd.DataFrame
    sweeps: dict[str, SweepInfo] = field(default_factory=dict)

    @property
    def completed(self) -> pd.DataFrame:
        """Trials that learned every task; only they carry the full-sequence metrics
        (docs/references.md, Metrics)."""
        return self.trials[self.trials["status"] == COMPLETED]

    def sweep(self, name: str | None = None) -> SweepInfo:
        """The named sweep, or the only one; an ambiguous choice gets an error listing names."""
        if name is None and len(self.sweeps) == 1:
            return next(iter(self.sweeps.values()))
        if name not in self.sweeps:
            raise AnalysisError(f"choose a sweep by name, one of: {', '.join(sorted(self.sweeps))}")
        return self.sweeps[name]

    def trial(self, sweep: str, trial_id: str) -> pd.Series:
        """The trials.parquet row of one trial."""
        rows = self.trials[(self.trials["sweep"] == sweep) & (self.trials["trial_id"] == trial_id)]
        if rows.empty:
            raise AnalysisError(f"sweep {sweep!r} has no trial {trial_id!r}")
        return rows.iloc[0]

    def matrix(self, sweep: str, trial_id: str, split: str = "test") -> np.ndarray:
        """The accuracy matrix of one trial, (tasks learned + 1) x T, row 0 = untrained model.

        So ``matrix[i + 1][j]`` is R[i][j] and ``matrix[0]`` is b (docs/references.md,
        Metrics); rows stop at the last task the trial learned.
        """
        tasks = self.tasks
        rows = tasks[
            (tasks["sweep"] == sweep) & (tasks["trial_id"] == trial_id) & (tasks["split"] == split)
        ]
        if rows.empty:
            raise AnalysisError(
                f"tasks.parquet has no {split} rows for trial {trial_id!r} of {sweep!r}"
            )
        table = rows.pivot(index="tasks_learned", columns="task", values="accuracy")
        return table.sort_index().sort_index(axis=1).to_numpy(dtype=float)

    def direction(self, column: str, sweeps: Iterable[str] | None = None) -> str:
        """The direction of a metric in the given sweeps (all loaded ones by default); sweeps
        that recorded opposite directions for it cannot be ranked together."""
        names = sorted(set(sweeps) if sweeps is not None else self.sweeps)
        found = {self.sweeps[name].direction(column) for name in names}
        if len(found) > 1:
            raise AnalysisError(
                f"sweeps {', '.join(names)} record opposite directions for {column}; "
                "analyse them separately"
            )
        return found.pop() if found else registered_metric(column).direction

    def require_completed(self) -> pd.DataFrame:
        """The completed trials, or an error that says per sweep what happened instead."""
        done = self.completed
        if done.empty:
            raise AnalysisError(
                f"no completed trials in {_describe_statuses(self.trials)}; "
                "check the message column of trials.parquet or re-run the sweep"
            )
        return done


def load_results(paths: str | Path | Sequence[str | Path]) -> Results:
    """Load one or many sweep folders into one :class:`Results`.

    Each path may be a sweep folder (holding trials.parquet), a results folder whose subfolders are
    sweeps (``--out`` of ``python -m sweep``), or a glob pattern of either.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    folders = list(dict.fromkeys(folder for p in paths for folder in _sweep_folders(p)))
    if not folders:
        raise AnalysisError("no sweep folders given; pass a folder written by python -m sweep")
    infos, trials, tasks = {}, [], []
    for folder in folders:
        info, trial_frame, task_frame = _load_one(folder)
        if info.name in infos:
            raise AnalysisError(
                f"two sweeps are named {info.name!r} ({infos[info.name].path} and {folder}); "
                "load them separately or rename one folder's sweep"
            )
        infos[info.name] = info
        trials.append(trial_frame)
        tasks.append(task_frame)
    return Results(
        trials=pd.concat(trials, ignore_index=True),
        tasks=pd.concat(tasks, ignore_index=True),
        sweeps=infos,
    )


def _sweep_folders(path: str | Path) -> list[Path]:
    """Expand a path into the sweep folders it names or holds.

    A glob keeps only the matches that are (or hold) sweeps, so ``results/*`` may match stray
    files; a path given literally must be a sweep or a folder of sweeps.
    """
    text = str(path)
    if not glob.has_magic(text):
        return _sweeps_at(Path(text))
    matches = [Path(m) for m in sorted(glob.glob(text))]
    folders = [
        f
        for m in matches
        if m.is_dir() or m.name in SWEEP_FILES
        for f in _sweeps_at(m, strict=False)
    ]
    if not folders:
        raise AnalysisError(f"nothing that {text!r} matches is a sweep; check the pattern")
    return folders


def _sweeps_at(path: Path, strict: bool = True) -> list[Path]:
    """``path`` itself if it is a sweep folder (or one of its files), else its sweep subfolders."""
    if not path.exists():
        raise AnalysisError(
            f"{path} does not exist; pass a sweep folder written by python -m sweep"
        )
    if path.name in SWEEP_FILES:
        path = path.parent
    if (path / TRIALS_FILE).exists():
        return [path]
    children = (
        sorted(c for c in path.iterdir() if (c / TRIALS_FILE).exists()) if path.is_dir() else []
    )
    if not children and strict:
        raise AnalysisError(
            f"{path} is not a sweep: it holds no {TRIALS_FILE} (nor do its subfolders); "
            "pass the folder python -m sweep wrote, <out>/<sweep name>"
        )
    return children


def _load_one(folder: Path) -> tuple[SweepInfo, pd.DataFrame, pd.DataFrame]:
    meta = _read_meta(folder)
    _check_version(meta.get("schema_version"), folder / META_FILE)
    trials = _read_parquet(folder, TRIALS_FILE, TRIAL_COLUMNS)
    tasks = _read_parquet(folder, TASKS_FILE, TASK_COLUMNS)
    # Rows of trials whose trials row never landed (a driver killed in between) are not results.
    tasks = tasks[tasks["trial_id"].isin(trials["trial_id"])].reset_index(drop=True)
    for version in trials["schema_version"].dropna().unique():
        _check_version(version, folder / TRIALS_FILE)
    name = str(meta.get("name") or (trials["sweep"].iloc[0] if len(trials) else folder.name))
    # The sweep name is the key that joins trials and tasks across folders; make it uniform.
    trials["sweep"] = name
    tasks["sweep"] = name
    trials[STUDY] = trials["method"] + " on " + trials["cell"]
    params = [_param(entry) for entry in meta.get("searched") or []]
    params = [p for p in params if p.column in trials.columns] or _infer_params(trials)
    return SweepInfo(name=name, path=folder, meta=meta, params=params), trials, tasks


def _read_meta(folder: Path) -> dict[str, Any]:
    path = folder / META_FILE
    if not path.is_file():
        raise AnalysisError(f"{folder} is not a complete sweep: {META_FILE} is missing")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise AnalysisError(
            f"{path} is not valid JSON ({err}); was it copied completely?"
        ) from None
    if not isinstance(meta, dict):
        raise AnalysisError(f"{path} should hold a JSON object, not {type(meta).__name__}")
    return meta


def _check_version(version: Any, where: Path) -> None:
    try:
        readable = version is not None and int(version) in READABLE_VERSIONS
    except (TypeError, ValueError):
        readable = False
    if not readable:
        versions = "-".join(str(v) for v in (READABLE_VERSIONS[0], READABLE_VERSIONS[-1]))
        raise AnalysisError(
            f"{where} has schema_version {version}, this analysis reads schema_version "
            f"{versions}; use the clsweep version that wrote the sweep"
        )


def _read_parquet(folder: Path, name: str, required: Iterable[str]) -> pd.DataFrame:
    """A table of the sweep (a folder of parts, or a schema-1 single file)."""
    path = folder / name
    if not path.exists():
        raise AnalysisError(f"{folder} is not a complete sweep: {name} is missing")
    try:
        frame = parquet.read_table(folder, name).to_pandas()
    except (parquet.TableError, FileNotFoundError) as err:
        raise AnalysisError(f"{err}; was it copied completely?") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise AnalysisError(
            f"{path} lacks the column(s) {', '.join(missing)} of the results schema; "
            "it was not written by python -m sweep"
        )
    return frame


def _param(entry: dict[str, Any]) -> Param:
    described = SearchParam.from_json(entry)
    return Param(**described.__dict__)


def _infer_params(trials: pd.DataFrame) -> list[Param]:
    """Without a ``searched`` list, every ``hp_`` column that varies in the search was searched.

    A positive numeric range spanning two decades or more is taken as logarithmic.
    """
    search = trials[trials["phase"] == "search"]
    params = []
    for column in (c for c in trials.columns if c.startswith("hp_")):
        values = search[column].dropna()
        if values.nunique() < 2:
            continue
        name = column.removeprefix("hp_")
        if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
            choices = tuple(sorted(values.unique(), key=str))
            params.append(Param(name, column, "categorical", choices=choices))
            continue
        low, high = float(values.min()), float(values.max())
        log = low > 0 and math.log10(high / low) >= 2
        kind = "int" if pd.api.types.is_integer_dtype(values) else "uniform"
        params.append(Param(name, column, kind, low=low, high=high, log=log))
    return params


def _describe_statuses(trials: pd.DataFrame) -> str:
    """'sweep ewc (4 trials: error 3, diverged 1; first message: ...)' for error messages."""
    if trials.empty:
        return "the given sweeps (they hold no trials yet)"
    parts = []
    for sweep, rows in trials.groupby("sweep", sort=True):
        counts = ", ".join(f"{status} {n}" for status, n in rows["status"].value_counts().items())
        text = f"sweep {sweep} ({len(rows)} trials: {counts}"
        messages = rows["message"].dropna() if "message" in rows else pd.Series(dtype=str)
        if len(messages):
            text += f"; first message: {str(messages.iloc[0]).splitlines()[0][:120]}"
        parts.append(text + ")")
    return ", ".join(parts)
