"""Resume: a sweep folder -> the state a sweep starts from, as data.

A sweep's state is what its folder holds, never Tune's experiment state: ``sweep.json`` (the
space it started with), the Parquet rows (the trials recorded) and the Optuna studies (the trials
asked, their intermediate values, the time a search has used and why it ended). A fresh sweep
is a resume of an empty folder. This module owns reading them:

- :func:`check_folder` refuses, before Ray and with every file left as it was, to overwrite a
  sweep without ``--resume`` and to resume one that cannot be: another space (its fingerprint in
  sweep.json), an older results schema, results missing where the studies say trials ended. It
  also finishes or undoes a Parquet compaction a crash cut short (:func:`contract.tables.recover`).
- :func:`open_store` opens the Parquet tables; a damaged part is a usage error that names it.
- :func:`unit_start` turns one unit's study and rows into a :class:`UnitStart`: how many trials
  were asked, which ran to an end (their intermediate values rebuild the ASHA rungs), which were
  interrupted (run again, each in its own Optuna trial), which were recorded but not yet told to
  Optuna (the driver died in between: told from their row), whether the search has ended, and
  final-phase rows the final study lacks. A search trial that a lost node ended is run again in
  a later Optuna trial with the same trial id (:func:`sweep.lost.requeue_lost`); the earlier one
  is superseded: neither asked again nor counted in the budget.

:class:`sweep.units.SweepState` applies a :class:`UnitStart` to its unit; nothing here changes
the folder or a study. Optuna is read through its public API (``Study.get_trials``,
``FrozenTrial``, ``Study.user_attrs``). Continuing an interrupted trial needs its live handle,
for which Optuna has no public API: :func:`sweep.studies.reopen_trial` is the one place that says
so and works around it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from cl_core.errors import ClsweepError
from contract import SCHEMA_VERSION, tables
from contract.schema import ATTR_TRIAL_ID, CURVES_FILE, META_FILE, TASKS_FILE, TRIALS_FILE
from sweep.results import ResultsStore, avg_acc_curve, read_sweep_json
from sweep.space import SweepSpec
from sweep.study_storage import close_storage, existing_study_file, open_storage, study_file
from sweep.trial_config import TrialPlan, config_id, search_id

ATTR_SEARCH_SECONDS = "search_seconds"
"""Study user attribute: search time used so far (seconds), for ``budget.time_limit_s``."""
ATTR_SEARCH_ENDED = "search_ended"
"""Study user attribute: why the search ended ("budget" or "time_limit"); absent while it runs."""


@dataclass(frozen=True)
class Interrupted:
    """A search trial the previous driver left running: it runs again in its Optuna trial,
    whose intermediate values at ``reported`` steps are kept (not reported twice)."""

    plan: TrialPlan
    reported: frozenset[int]


@dataclass(frozen=True)
class UnitStart:
    """Where one unit (a method in a cell) starts; an empty folder gives the defaults."""

    asked: int = 0
    """Trials its search study holds (asked from Optuna by earlier runs)."""
    ended: tuple[tuple[str, dict[int, float]], ...] = ()
    """(trial id, intermediate values) of the search trials that ended: the ASHA rungs."""
    interrupted: tuple[Interrupted, ...] = ()
    untold: tuple[tuple[TrialPlan, dict[str, Any]], ...] = ()
    """Search trials recorded in Parquet but still running in Optuna, with their rows."""
    missing: int = 0
    """Ended trials of the study without a Parquet row (parts removed by hand)."""
    elapsed_s: float = 0.0
    search_ended: str | None = None
    """Why the search is over ("budget", "time_limit"), or None if it goes on."""
    late_finals: tuple[tuple[TrialPlan, dict[str, Any], dict[int, float]], ...] = ()
    """Final-phase (plan, row, curve) recorded in Parquet but missing from the final study."""


def unit_start(
    spec: SweepSpec,
    index: int,
    slug: str,
    search: optuna.Study,
    final_ids: set[str],
    rows: dict[str, dict[str, Any]],
    task_rows: Callable[[], list[dict[str, Any]]],
) -> UnitStart:
    """The start of unit ``index`` (``slug``: its id prefix) from its search study, the trial
    ids its final study holds, the Parquet ``rows`` by trial id and (read only if needed) the
    tasks rows."""
    trials = search.get_trials(deepcopy=False)
    recorded = set(rows)
    ended, interrupted, untold = [], [], []
    missing = 0
    latest = {_search_plan(index, slug, t).trial_id: t.number for t in trials}
    superseded = 0
    for frozen in trials:
        plan = _search_plan(index, slug, frozen)
        if latest[plan.trial_id] != frozen.number:  # a lost node's: run again in a later trial
            superseded += 1
            continue
        if frozen.state.is_finished():
            missing += plan.trial_id not in recorded
            ended.append((plan.trial_id, dict(frozen.intermediate_values)))
        elif plan.trial_id in rows:  # recorded, then the driver died before telling Optuna
            untold.append((plan, rows[plan.trial_id]))
        else:
            interrupted.append(Interrupted(plan, frozenset(frozen.intermediate_values)))
    attrs = search.user_attrs
    reason = attrs.get(ATTR_SEARCH_ENDED)
    search_ended = None
    asked = len(trials) - superseded
    if not interrupted and (asked >= spec.trials or reason == "time_limit"):
        search_ended = reason or "budget"
    method = spec.units[index][0]
    return UnitStart(
        asked=asked,
        ended=tuple(ended),
        interrupted=tuple(interrupted),
        untold=tuple(untold),
        missing=missing,
        elapsed_s=float(attrs.get(ATTR_SEARCH_SECONDS, 0.0)),
        search_ended=search_ended,
        late_finals=_late_finals(spec, index, method, final_ids, rows.values(), task_rows),
    )


def _search_plan(unit: int, slug: str, frozen: FrozenTrial) -> TrialPlan:
    values = dict(frozen.params)
    return TrialPlan(
        trial_id=frozen.user_attrs.get(ATTR_TRIAL_ID) or search_id(slug, frozen.number),
        unit=unit,
        phase="search",
        values=values,
        config_id=config_id(values),
        number=frozen.number,
    )


def _late_finals(
    spec: SweepSpec,
    unit: int,
    method: str,
    told: set[str],
    rows: Iterable[dict[str, Any]],
    task_rows: Callable[[], list[dict[str, Any]]],
) -> tuple[tuple[TrialPlan, dict[str, Any], dict[int, float]], ...]:
    """Final-phase rows of the unit that its final study lacks, with their curves."""
    cell = spec.units[unit][1].key
    late = [
        r
        for r in rows
        if r["phase"] == "final"
        and r["method"] == method
        and r["cell"] == cell
        and r["trial_id"] not in told
    ]
    out = []
    for row in late:
        plan = TrialPlan(
            trial_id=row["trial_id"],
            unit=unit,
            phase="final",
            values={p.name: row[p.column] for p in spec.params_for(method)},
            config_id=row["config_id"],
            final_rank=row["final_rank"],
            seed=row["train_seed"],
        )
        curve = {}
        if spec.metrics[0] == "val_avg_acc":
            curve = avg_acc_curve([t for t in task_rows() if t["trial_id"] == row["trial_id"]])
        out.append((plan, row, curve))
    return tuple(out)


# -- the folder as a whole -----------------------------------------------------------------------


def check_folder(spec: SweepSpec, folder: Path, resume: bool) -> None:
    """Refuse to overwrite a sweep without --resume, and to resume what cannot be resumed.

    Runs under the lock and before Ray. A resume needs the same space (its fingerprint in
    sweep.json), readable results, and results wherever the studies say trials ended; otherwise
    it stops with the reason and the fix, leaving every file as it was.
    """
    meta = folder / META_FILE
    studies = existing_study_file(folder)
    if meta.exists() and not resume:
        raise ClsweepError(
            f"{folder} already holds a sweep; add --resume to continue it or "
            "--name NEW to start another"
        )
    if not meta.exists():
        if resume:
            raise ClsweepError(f"--resume: no sweep in {folder}; run without --resume to start it")
        if tables.exists(folder, TRIALS_FILE) or studies is not None:
            raise ClsweepError(
                f"{folder} holds results but no {META_FILE}; it was not started by this "
                "command: choose another --name, or move those files away"
            )
        return
    recorded = _sweep_json(folder)
    if recorded.get("schema_version") != SCHEMA_VERSION:
        raise ClsweepError(
            f"--resume: {folder.name} was written with results schema "
            f"{recorded.get('schema_version')} (an older clsweep); resume it with that version, "
            f"or start a new sweep with --name NEW (its results stay readable by analysis)"
        )
    previous = recorded.get("fingerprint")
    if previous is not None and previous != spec.fingerprint():
        raise ClsweepError(
            f"--resume: the space differs from the one {folder.name} was started with "
            f"({recorded.get('space_file')}): methods, fixed settings, searched parameters, "
            "cells, objective, sampler, selection protocol and final phase must match; resume "
            "with that file (budgets and resources may change), or start a new sweep with "
            "--name NEW"
        )
    for name in (TRIALS_FILE, TASKS_FILE, CURVES_FILE):
        tables.recover(folder, name)
    _check_results(folder, studies)


def _sweep_json(folder: Path) -> dict[str, Any]:
    try:
        return read_sweep_json(folder)
    except (OSError, ValueError) as exc:
        raise ClsweepError(
            f"--resume: {folder / META_FILE} is not readable ({exc}); restore it from a backup, "
            "or start a new sweep with --name NEW (nothing was changed)"
        ) from None


def _check_results(folder: Path, studies: Path | None) -> None:
    """Refuse a resume whose Parquet tables or studies are missing while the other holds
    trials (a resume would run them again, or lose them)."""
    restore = "restore it from a backup, or start a new sweep with --name NEW (nothing was changed)"
    ended = 0 if studies is None else _ended_in_studies(studies)
    has_trials = tables.exists(folder, TRIALS_FILE)
    if ended and not has_trials:
        raise ClsweepError(
            f"--resume: {folder / TRIALS_FILE} is missing but {studies.name} records {ended} "
            "ended trial(s); restore trials.parquet and tasks.parquet from a backup, or start a "
            "new sweep with --name NEW (nothing was changed)"
        )
    if has_trials and not tables.exists(folder, TASKS_FILE):
        raise ClsweepError(
            f"--resume: {folder / TASKS_FILE} is missing while trials.parquet holds trials; "
            + restore
        )
    if has_trials and studies is None:
        raise ClsweepError(
            f"--resume: {study_file(folder)} is missing while trials.parquet holds trials; "
            + restore
        )


def _ended_in_studies(path: Path) -> int:
    """Trials the studies in ``path`` record as ended."""
    storage = open_storage(path, checking=True)
    try:
        ended = 0
        for name in optuna.get_all_study_names(storage):
            study = optuna.load_study(study_name=name, storage=storage)
            ended += sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
        return ended
    finally:
        close_storage(storage)


def open_store(spec: SweepSpec, folder: Path) -> ResultsStore:
    """The sweep's Parquet tables; a damaged part is a usage error that names it."""
    try:
        return ResultsStore(spec, folder)
    except tables.TableError as exc:
        raise ClsweepError(
            f"--resume: {exc}; restore it from a backup, or move it away to give up its trial "
            "(it will not be run again), then resume; nothing was changed"
        ) from None
