"""The Optuna side of a sweep: one search study per method and cell, one final study beside it.

Optuna is told the truth (docs/design.md, "The custom searcher"): every value a search trial
reports reaches its Optuna trial at its step (tasks learned), the report that made the scheduler
stop it included; a trial stopped early is PRUNED (its value: that last report), a diverged or
failed one FAIL, only a full-length run COMPLETE. Each trial carries the Parquet ``trial_id``,
its status, the tasks it reached and its test metrics as user attributes; studies name their
metrics. The final phase's
re-runs are added to the final study with the search config's parameters; their seed is a user
attribute, not a parameter, since nothing searched it.

Ray's OptunaSearch is not used: the runner asks and tells itself (:mod:`sweep.units`), which also
lets a resumed sweep continue an interrupted trial in its own Optuna trial. Only public Optuna
APIs are used, but for :func:`reopen_trial`, which says why. The studies live in the sweep
folder's study file (:mod:`sweep.study_storage`: SQLite, or a journal file on NFS).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from contract import METRICS
from contract.schema import (
    ATTR_CONFIG_ID,
    ATTR_FINAL_RANK,
    ATTR_SEED,
    ATTR_STATUS,
    ATTR_TASKS,
    ATTR_TRIAL_ID,
    COMPLETED,
    FAILED_STATUSES,
    study_name,
)
from sweep.seeds import cell_sampler_seed
from sweep.space import SweepSpec, optuna_distribution
from sweep.trial_config import TrialPlan


def reopen_trial(
    study: optuna.Study, storage: optuna.storages.BaseStorage, number: int
) -> optuna.Trial:
    """The live handle of trial ``number`` of ``study``, asked earlier (by this driver or by
    one that was interrupted) and still RUNNING.

    Optuna has no public API for this: a :class:`optuna.Trial` comes only from ``Study.ask``
    (which always creates a new trial) or ``Study.optimize``. Continuing an interrupted trial
    (its parameters, number and intermediate values kept) needs the handle to report further
    values and set attributes. It is built from public pieces: the trial's storage id from the
    storage's ``get_study_id_from_name`` and ``get_trial_id_from_study_id_trial_number``, then the
    ``Trial`` constructor, which Optuna documents but advises against calling directly. This is
    the one place the sweep depends on that; an Optuna upgrade that changes the constructor
    breaks here (tests/sweep/test_state.py resumes through it).
    """
    study_id = storage.get_study_id_from_name(study.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
    return optuna.Trial(study, trial_id)


class GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler, without its ``study.stop()`` after the last grid point: that call
    raises outside ``study.optimize`` (ask-and-tell), which would leave the last trial RUNNING;
    the sweep's budget ends the search instead."""

    def after_trial(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        return None


def make_sampler(spec: SweepSpec, method: str, seed: int | None) -> optuna.samplers.BaseSampler:
    """The Optuna sampler the space asks for (TPE with constant liar for parallel trials), for
    the study of ``method`` (the grid sampler lists that method's parameters); ``seed`` is the
    study's own (:func:`sweep.seeds.cell_sampler_seed`)."""
    if spec.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    if spec.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    grid = {p.name: list(p.choices) for p in spec.params_for(method)}
    return GridSampler(grid, seed=seed)


def distributions(spec: SweepSpec, method: str) -> dict[str, optuna.distributions.BaseDistribution]:
    """The distributions ``method``'s study searches (a hyperparameter only its declarers)."""
    return {p.name: optuna_distribution(p) for p in spec.params_for(method)}


def outcome(spec: SweepSpec, row: dict[str, Any]) -> tuple[TrialState, list[float] | None]:
    """The Optuna state (and values, for COMPLETE) of a trial recorded as ``row``."""
    if row["status"] in FAILED_STATUSES:
        return TrialState.FAIL, None
    if row["status"] != COMPLETED:
        return TrialState.PRUNED, None
    values = [row.get(m) for m in spec.metrics]
    if any(v is None or not math.isfinite(v) for v in values):
        return TrialState.FAIL, None
    return TrialState.COMPLETE, [float(v) for v in values]


def result_attrs(row: dict[str, Any]) -> dict[str, Any]:
    """User attributes of an ended trial: its Parquet id, status, tasks reached, test metrics."""
    attrs: dict[str, Any] = {
        ATTR_TRIAL_ID: row["trial_id"],
        ATTR_STATUS: row["status"],
        ATTR_TASKS: row["tasks_completed"],
    }
    for metric in METRICS.values():
        value = row.get(metric.column("test"))
        if value is not None:
            attrs[metric.column("test")] = value
    if row.get("message"):
        attrs["message"] = str(row["message"])[:500]
    return attrs


class UnitStudies:
    """The search and final studies of one unit (a method in a cell)."""

    def __init__(self, spec: SweepSpec, store: optuna.storages.BaseStorage, unit: int) -> None:
        method, cell = spec.units[unit]
        self.spec = spec
        self.storage = store
        self.single = len(spec.metrics) == 1
        self.dists = distributions(spec, method)
        directions = ["maximize" if m == "max" else "minimize" for m in spec.modes]
        seed = cell_sampler_seed(spec.sampler_seed, method, cell.key)
        self.search = optuna.create_study(
            storage=store,
            study_name=study_name(spec.name, method, cell.key, "search"),
            sampler=make_sampler(spec, method, seed),
            directions=directions,
            load_if_exists=True,
        )
        self.final = optuna.create_study(
            storage=store,
            study_name=study_name(spec.name, method, cell.key, "final"),
            sampler=optuna.samplers.RandomSampler(seed=0),
            directions=directions,
            load_if_exists=True,
        )
        for study in (self.search, self.final):
            if study.metric_names != list(spec.metrics):
                with warnings.catch_warnings():  # "experimental" since Optuna 3.2
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    study.set_metric_names(list(spec.metrics))
        self.asked: dict[int, optuna.Trial] = {}
        self.running: dict[str, optuna.Trial] = {}
        self.reported: dict[str, set[int]] = {}
        self.reported_before: dict[int, frozenset[int]] = {}  # interrupted trials' steps

    # -- search trials ---------------------------------------------------------------------------

    def ask(self) -> tuple[int, dict[str, Any]]:
        trial = self.search.ask(self.dists)
        self.asked[trial.number] = trial
        return trial.number, dict(trial.params)

    def interrupted(self, number: int, reported: frozenset[int]) -> None:
        """Trial ``number`` was interrupted with values at ``reported`` steps; it will run again
        in the same Optuna trial (:mod:`sweep.resume`)."""
        self.reported_before[number] = reported

    def start(self, plan: TrialPlan) -> None:
        """Attach a launched search plan to its Optuna trial (new, or continued on resume)."""
        trial = self._trial(plan.number)
        steps = set(self.reported_before.pop(plan.number, ()))
        trial.set_user_attr(ATTR_TRIAL_ID, plan.trial_id)
        self.running[plan.trial_id] = trial
        self.reported[plan.trial_id] = steps

    def report(self, plan: TrialPlan, step: int, value: Any) -> None:
        """One intermediate value (the first objective after ``step`` tasks) at its step."""
        trial = self.running.get(plan.trial_id)
        steps = self.reported.get(plan.trial_id)
        if not self.single or trial is None or steps is None or step in steps:
            return
        if value is None or not math.isfinite(value):
            return
        trial.report(float(value), step)
        steps.add(step)

    def tell(self, plan: TrialPlan, row: dict[str, Any]) -> None:
        """The trial's outcome, after its row is in Parquet."""
        trial = self.running.pop(plan.trial_id, None) or self._trial(plan.number)
        self.reported.pop(plan.trial_id, None)
        for key, value in result_attrs(row).items():
            if key != ATTR_TRIAL_ID or trial.user_attrs.get(key) != value:
                trial.set_user_attr(key, value)
        state, values = outcome(self.spec, row)
        self.search.tell(trial, values, state=state)

    def requeue(self, trial_id: str, values: dict[str, Any]) -> None:
        """A search trial that a lost node ended (its FAIL trial stays, superseded): a new Optuna
        trial with its parameters and trial id, left RUNNING, which resuming then runs again
        as an interrupted trial (:func:`sweep.resume.unit_start`)."""
        self.search.enqueue_trial(values, user_attrs={ATTR_TRIAL_ID: trial_id})
        self.search.ask(self.dists)

    def abandon(self, plan: TrialPlan, why: str) -> None:
        """An interrupted trial that will not run again: FAIL, never left RUNNING."""
        trial = self._trial(plan.number)
        trial.set_user_attr(ATTR_STATUS, why)
        self.search.tell(trial, state=TrialState.FAIL)

    def _trial(self, number: int | None) -> optuna.Trial:
        """The handle of search trial ``number``: the one ``ask`` gave, else reopened."""
        trial = self.asked.pop(number, None)
        return trial if trial is not None else reopen_trial(self.search, self.storage, number)

    # -- final phase -----------------------------------------------------------------------------

    def add_final(self, plan: TrialPlan, row: dict[str, Any], curve: dict[int, float]) -> None:
        """A final-phase re-run, with its intermediate values (``curve``: step -> value)."""
        state, values = outcome(self.spec, row)
        if state == TrialState.PRUNED:
            state = TrialState.FAIL  # nothing stops a final-phase trial early but a failure
        attrs = {
            **result_attrs(row),
            ATTR_CONFIG_ID: plan.config_id,
            ATTR_FINAL_RANK: plan.final_rank,
            ATTR_SEED: plan.seed,
        }
        intermediate = {s: v for s, v in curve.items() if math.isfinite(v)} if self.single else None
        self.final.add_trial(
            optuna.trial.create_trial(
                state=state,
                values=values,
                params=dict(plan.values),
                distributions=self.dists,
                user_attrs=attrs,
                intermediate_values=intermediate,
            )
        )

    def final_ids(self) -> set[str]:
        return {t.user_attrs.get(ATTR_TRIAL_ID) for t in self.final.get_trials(deepcopy=False)}
