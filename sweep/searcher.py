"""Ray's Optuna searcher, corrected to tell Optuna what really happened to each trial.

Left alone, Ray 2.60's ``OptunaSearch.on_trial_complete`` tells Optuna that a trial stopped early
by the scheduler is COMPLETE with its last reported value. In continual learning the average
accuracy after a few tasks is higher than after all of them, so the sampler would be steered toward
the configs that were stopped. It also passes NaN to ``study.tell``, which raises; Ray only logs
that, leaving the Optuna trial RUNNING forever. Here a trial that did not learn every task reaches
Optuna as PRUNED, a diverged or failed one as FAIL, and only a full-length run as COMPLETE.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from sweep.seeds import cell_sampler_seed
from sweep.space import Param, SweepSpec

FAILED_STATUSES = ("diverged", "error")


def trial_outcome(
    result: dict[str, Any] | None, error: bool, metrics: list[str]
) -> tuple[TrialState, list[float] | None]:
    """The Optuna state (and values, for COMPLETE) of a trial that ended with ``result``."""
    if error or not result or result.get("status") in FAILED_STATUSES:
        return TrialState.FAIL, None
    if not result.get("done_all_tasks"):
        return TrialState.PRUNED, None
    values = [result.get(m) for m in metrics]
    if any(v is None or not math.isfinite(v) for v in values):
        return TrialState.FAIL, None
    return TrialState.COMPLETE, [float(v) for v in values]


def make_sampler(spec: SweepSpec, method: str, seed: int | None) -> optuna.samplers.BaseSampler:
    """The Optuna sampler the space asks for (TPE with constant liar for parallel trials), for
    the study of ``method`` (the grid sampler lists that method's parameters)."""
    if spec.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    if spec.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    grid = {p.name: list(p.choices) for p in spec.params_for(method)}
    return optuna.samplers.GridSampler(grid, seed=seed)


def storage_url(path: str) -> str:
    return f"sqlite:///{path}"


def study_name(spec: SweepSpec, method: str, cell_key: str, phase: str) -> str:
    """One study per method, cell and phase, e.g. ``ewc:ewc:permuted-mnist/domain/3:search``."""
    return f"{spec.name}:{method}:{cell_key}:{phase}"


def distributions(params: tuple[Param, ...]) -> dict[str, optuna.distributions.BaseDistribution]:
    return {p.name: p.optuna_distribution() for p in params}


class TruthfulOptunaSearch(OptunaSearch):
    """OptunaSearch whose tell() uses the trial's real outcome (see the module docstring)."""

    def suggest(self, trial_id: str) -> dict | None:
        """Ask Optuna; label its trial with Tune's trial id (the Parquet ``trial_id``)."""
        config = super().suggest(trial_id)
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None and "trial_id" not in ot_trial.user_attrs:
            ot_trial.set_user_attr("trial_id", trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Intermediate values (per task learned) feed Optuna's pruned-trial ranking; skip NaN."""
        if isinstance(self.metric, list) or trial_id in self._completed_trials:
            return
        if result.get("status") in FAILED_STATUSES:  # repeats the last step; told FAIL later
            return
        value = result.get(self.metric)
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or value is None or not math.isfinite(value):
            return
        # A trial already told before a driver restart cannot take intermediate values.
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            ot_trial.report(float(value), int(result.get("tasks_learned", 0)))

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        if trial_id not in self._ot_trials:
            return
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        state, values = trial_outcome(result, error, metrics)
        ot_trial = self._ot_trials[trial_id]
        try:
            self._ot_study.tell(ot_trial, values, state=state)
        except (ValueError, RuntimeError):  # already told, e.g. before a driver restart
            self._record_rerun(ot_trial.number, state, values)
        self._completed_trials.add(trial_id)

    def _record_rerun(self, number: int, state: TrialState, values: list | None) -> None:
        """A trial told FAIL when an interrupted driver killed it, then run again on resume:
        its real outcome is added as a new Optuna trial with the same parameters."""
        frozen = self._ot_study.trials[number]
        if frozen.state != TrialState.FAIL or state == TrialState.FAIL:
            return
        self._ot_study.add_trial(
            optuna.trial.create_trial(
                state=state,
                values=values,
                params=frozen.params,
                distributions=frozen.distributions,
                user_attrs={**frozen.user_attrs, "rerun_of": number},
            )
        )

    def restore(self, checkpoint_path: str) -> None:
        """Restore, then reconcile with study.db, which may be ahead of the checkpoint.

        A killed driver may have told Optuna about trials after its last experiment checkpoint:
        those count as completed here. Trials asked for after that checkpoint exist in study.db
        but not in the restored Tune state; they would stay RUNNING forever, so they fail.
        """
        super().restore(checkpoint_path)
        by_number = {t.number: tid for tid, t in self._ot_trials.items()}
        for frozen in self._ot_study.get_trials(deepcopy=False):
            tid = by_number.get(frozen.number)
            if tid is not None and frozen.state.is_finished():
                self._completed_trials.add(tid)
            elif tid is None and frozen.state == TrialState.RUNNING:
                self._ot_study.tell(frozen.number, state=TrialState.FAIL)


def make_searcher(
    spec: SweepSpec, method: str, cell_key: str, storage: str
) -> TruthfulOptunaSearch:
    """The searcher of one cell's search phase, its study kept in ``storage`` (SQLite)."""
    many = len(spec.metrics) > 1
    searcher = TruthfulOptunaSearch(
        space=distributions(spec.params_for(method)),
        metric=list(spec.metrics) if many else spec.metrics[0],
        mode=list(spec.modes) if many else spec.modes[0],
        sampler=make_sampler(spec, method, cell_sampler_seed(spec.sampler_seed, method, cell_key)),
        study_name=study_name(spec, method, cell_key, "search"),
        storage=optuna.storages.RDBStorage(storage_url(storage)),
    )
    # A fresh searcher over an existing study (a driver killed before Tune's first experiment
    # checkpoint): nothing of that study is running any more.
    for frozen in searcher._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        searcher._ot_study.tell(frozen.number, state=TrialState.FAIL)
    return searcher


def close_study(
    spec: SweepSpec, method: str, cell_key: str, storage: str, reports: dict[str, dict]
) -> None:
    """After a search phase: no Optuna trial may stay RUNNING.

    Tune's time limit stops running trials without telling the searcher. Each is told from the
    last report recorded in Parquet (``reports``, by trial id): a full-length run COMPLETE, a cut
    one PRUNED; one with no recorded report FAIL.
    """
    study = optuna.load_study(
        study_name=study_name(spec, method, cell_key, "search"), storage=storage_url(storage)
    )
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        report = reports.get(frozen.user_attrs.get("trial_id"))
        state, values = trial_outcome(report, False, list(spec.metrics))
        study.tell(frozen.number, values, state=state)
