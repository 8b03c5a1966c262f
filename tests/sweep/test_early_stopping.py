"""Early-stopped trials reach Optuna as PRUNED, never as complete full-length results.

In continual learning the average accuracy after a few tasks is higher than after all of them,
so Ray's stock OptunaSearch, which tells a scheduler-stopped trial as COMPLETE with its last
value, would rank the stopped configs best. These tests inspect the Optuna study itself.
"""

from __future__ import annotations

import sys
import time

import optuna
import pandas as pd
import pytest
import ray.cloudpickle
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch
from sweep_helpers import study_trials, write_space

from cl_core.trainer import TaskReport
from sweep.runner import Options, run_sweep
from sweep.searcher import TruthfulOptunaSearch
from sweep.space import load_space

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

SPACE = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
STOPPED_EARLY = {
    "val_avg_acc": 0.9,
    "tasks_learned": 1,
    "done_all_tasks": False,
    "status": "running",
}


def told_state(searcher_cls, result: dict) -> TrialState:
    searcher = searcher_cls(space=SPACE, metric="val_avg_acc", mode="max")
    searcher.suggest("t1")
    searcher.on_trial_complete("t1", result=result)
    return searcher._ot_study.trials[0].state


def test_stock_searcher_has_the_trap_and_ours_does_not():
    assert told_state(OptunaSearch, STOPPED_EARLY) == TrialState.COMPLETE  # the trap
    assert told_state(TruthfulOptunaSearch, STOPPED_EARLY) == TrialState.PRUNED


def test_nan_leaves_stock_trial_running_and_ours_failed():
    nan_result = {
        **STOPPED_EARLY,
        "val_avg_acc": float("nan"),
        "done_all_tasks": True,
        "status": "completed",
    }
    assert told_state(OptunaSearch, nan_result) == TrialState.RUNNING  # the second trap
    assert told_state(TruthfulOptunaSearch, nan_result) == TrialState.FAIL
    diverged = {**STOPPED_EARLY, "status": "diverged"}
    assert told_state(TruthfulOptunaSearch, diverged) == TrialState.FAIL


def forgetting_trainer(cfg, dataset=None):
    """A stand-in for the trainer with CL's shape: accuracy falls as tasks accumulate.

    ``lr`` plays the config's quality q: after i tasks every learned task scores q - 0.1 i.
    """
    n = cfg.n_tasks
    yield TaskReport(0, [0.1] * n, [0.1] * n, None, 0.0)
    for i in range(1, n + 1):
        acc = [cfg.lr - 0.1 * i if j < i else 0.1 for j in range(n)]
        yield TaskReport(i, acc, acc, 1.0, 0.01)


@pytest.fixture(scope="module")
def stopped_sweep(local_ray, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("asha")
    text = """
method: finetune
train: {hidden: "8"}
search:
  lr: {type: categorical, choices: [0.95, 0.9, 0.85, 0.8, 0.75, 0.7]}
grid: {benchmark: permuted-digits, scenario: domain, n_tasks: 4}
sampler: grid
early_stopping: {scheduler: asha, grace_tasks: 1, reduction_factor: 2}
resources: {max_concurrent: 1}
"""
    spec = load_space(write_space(tmp, text, "asha.yaml"))
    folder = run_sweep(spec, Options(out=tmp / "out", train_fn=forgetting_trainer))
    trials = pd.read_parquet(folder / "trials.parquet").set_index("trial_id")
    return trials, study_trials(folder, "finetune", "permuted-digits/domain/4")


def test_scheduler_stopped_some_trials(stopped_sweep):
    trials, _ = stopped_sweep
    assert len(trials) == 6
    assert (trials.status == "stopped").sum() >= 1
    assert (trials.status == "completed").sum() >= 1
    stopped = trials[trials.status == "stopped"]
    assert (stopped.tasks_completed < 4).all()
    # The trap's premise: a stopped trial's last value beats every full-length result.
    assert stopped.objective.max() > trials[trials.status == "completed"].objective.max()


def test_stopped_trials_are_pruned_in_the_study(stopped_sweep):
    trials, study = stopped_sweep
    assert len(study) == 6
    for ot in study:
        row = trials.loc[ot.user_attrs["trial_id"]]
        if row.status == "stopped":
            assert ot.state == TrialState.PRUNED
        else:
            assert row.status == "completed"
            assert ot.state == TrialState.COMPLETE
            assert ot.value == pytest.approx(row.val_avg_acc)


def test_best_trial_of_the_study_is_a_full_length_run(stopped_sweep):
    trials, study = stopped_sweep
    complete = [t for t in study if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value)
    completed = trials[trials.status == "completed"]
    assert best.user_attrs["trial_id"] == completed.objective.idxmax()
    assert best.value == pytest.approx(completed.objective.max())


def slow_trainer(cfg, dataset=None):
    """Like forgetting_trainer, 0.4 s per task."""
    for report in forgetting_trainer(cfg):
        time.sleep(0.4 if report.tasks_learned else 0.0)
        yield report


def test_time_limit_ends_the_search_and_cut_trials_are_pruned(local_ray, tmp_path):
    text = """
method: finetune
train: {hidden: "8"}
search:
  lr: {type: uniform, low: 0.5, high: 1.0}
grid: {benchmark: permuted-digits, scenario: domain, n_tasks: 5}
budget: {trials: 100, time_limit_s: 10}
"""
    spec = load_space(write_space(tmp_path, text, "timed.yaml"))
    folder = run_sweep(spec, Options(out=tmp_path / "out", train_fn=slow_trainer))
    trials = pd.read_parquet(folder / "trials.parquet").set_index("trial_id")
    assert 1 <= len(trials) < 100
    assert set(trials.status) <= {"completed", "stopped"}
    study = study_trials(folder, "finetune", "permuted-digits/domain/5")
    assert not [t for t in study if t.state == TrialState.RUNNING]
    for ot in study:
        if ot.user_attrs["trial_id"] in trials.index:
            row = trials.loc[ot.user_attrs["trial_id"]]
            expected = TrialState.COMPLETE if row.status == "completed" else TrialState.PRUNED
            assert ot.state == expected


def test_multi_objective_search_tells_both_values(local_ray, tmp_path):
    text = """
method: finetune
train: {hidden: "8"}
search:
  lr: {type: uniform, low: 0.5, high: 1.0}
grid: {benchmark: permuted-digits, scenario: domain, n_tasks: 3}
objective: {metric: [val_avg_acc, val_forgetting], mode: [max, min]}
sampler: nsga2
budget: {trials: 4}
final: {top_k: 1, seeds: 1}
"""
    spec = load_space(write_space(tmp_path, text, "pareto.yaml"))
    folder = run_sweep(spec, Options(out=tmp_path / "out", train_fn=forgetting_trainer))
    trials = pd.read_parquet(folder / "trials.parquet").set_index("trial_id")
    assert len(trials) == 5 and set(trials.status) == {"completed"}
    for ot in study_trials(folder, "finetune", "permuted-digits/domain/3"):
        row = trials.loc[ot.user_attrs["trial_id"]]
        assert ot.state == TrialState.COMPLETE
        assert ot.values == pytest.approx([row.val_avg_acc, row.val_forgetting])
