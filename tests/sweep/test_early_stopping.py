"""Early-stopped trials reach Optuna as PRUNED, never as complete full-length results.

In continual learning the average accuracy after a few tasks is higher than after all of them,
so Ray's stock OptunaSearch, which tells a scheduler-stopped trial as COMPLETE with its last
value, would rank the stopped configs best. These tests inspect the Optuna study itself.
"""

from __future__ import annotations

import sys
import time

import pandas as pd
import pytest
import ray.cloudpickle
from optuna.trial import TrialState
from sweep_helpers import TINY_SPACE, study_trials, write_space

from cl_core.trainer import TaskReport
from sweep.runner import Options, run_sweep
from sweep.space import load_space
from sweep.studies import outcome

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def row(status: str, tasks: int, val: float | None = 0.5) -> dict:
    return {"status": status, "tasks_completed": tasks, "val_avg_acc": val, "val_forgetting": 0.1}


def test_outcome_is_the_truth(tmp_path):
    """Stopped early -> PRUNED (never COMPLETE with a short run's value); diverged, failed or
    NaN -> FAIL (Ray's stock searcher would leave a NaN trial RUNNING forever)."""
    spec = load_space(write_space(tmp_path, TINY_SPACE))
    assert outcome(spec, row("completed", 3)) == (TrialState.COMPLETE, [0.5])
    assert outcome(spec, row("stopped", 1)) == (TrialState.PRUNED, None)
    assert outcome(spec, row("diverged", 1)) == (TrialState.FAIL, None)
    assert outcome(spec, row("error", 0, None)) == (TrialState.FAIL, None)
    assert outcome(spec, row("completed", 3, float("nan"))) == (TrialState.FAIL, None)


def forgetting_trainer(cfg, dataset=None, checkpoint=None):
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
    return trials, study_trials(folder, "finetune", "permuted-digits/domain/4"), folder


def test_scheduler_stopped_some_trials(stopped_sweep):
    trials, _, _ = stopped_sweep
    assert len(trials) == 6
    assert (trials.status == "stopped").sum() >= 1
    assert (trials.status == "completed").sum() >= 1
    stopped = trials[trials.status == "stopped"]
    assert (stopped.tasks_completed < 4).all()
    # The trap's premise: a stopped trial's last value beats every full-length result.
    assert stopped.objective.max() > trials[trials.status == "completed"].objective.max()


def test_stopped_trials_are_pruned_in_the_study(stopped_sweep):
    trials, study, _ = stopped_sweep
    assert len(study) == 6
    for ot in study:
        row = trials.loc[ot.user_attrs["trial_id"]]
        if row.status == "stopped":
            assert ot.state == TrialState.PRUNED
        else:
            assert row.status == "completed"
            assert ot.state == TrialState.COMPLETE
            assert ot.value == pytest.approx(row.val_avg_acc)


def test_every_report_reaches_optuna_at_its_step_the_stopping_one_included(stopped_sweep):
    """Each pruned trial's last intermediate value in study.db is its Parquet value at the tasks
    it reached; every earlier report is there too, equal to the accuracy matrix's average."""
    trials, study, folder = stopped_sweep
    tasks = pd.read_parquet(folder / "tasks.parquet")
    val = tasks[(tasks.split == "val") & (tasks.task < tasks.tasks_learned)]
    average = val.groupby(["trial_id", "tasks_learned"]).accuracy.mean()
    pruned = [ot for ot in study if ot.state == TrialState.PRUNED]
    assert pruned
    for ot in study:
        row = trials.loc[ot.user_attrs["trial_id"]]
        steps = sorted(ot.intermediate_values)
        assert steps == list(range(1, row.tasks_completed + 1))
        assert ot.intermediate_values[steps[-1]] == pytest.approx(row.objective)
        for step in steps:
            expected = average.loc[(ot.user_attrs["trial_id"], step)]
            assert ot.intermediate_values[step] == pytest.approx(expected)
        assert ot.user_attrs["status"] == row.status
        assert ot.user_attrs["tasks_completed"] == row.tasks_completed
        if row.status == "completed":
            assert ot.user_attrs["test_avg_acc"] == pytest.approx(row.test_avg_acc)
    for ot in pruned:
        assert ot.value == pytest.approx(trials.loc[ot.user_attrs["trial_id"]].objective)


def test_study_names_its_metric(stopped_sweep):
    _, study, folder = stopped_sweep
    import optuna

    loaded = optuna.load_study(
        study_name="asha:finetune:permuted-digits/domain/4:search",
        storage=f"sqlite:///{folder / 'study.db'}",
    )
    assert loaded.metric_names == ["val_avg_acc"]


def test_best_trial_of_the_study_is_a_full_length_run(stopped_sweep):
    trials, study, _ = stopped_sweep
    complete = [t for t in study if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value)
    completed = trials[trials.status == "completed"]
    assert best.user_attrs["trial_id"] == completed.objective.idxmax()
    assert best.value == pytest.approx(completed.objective.max())


def slow_trainer(cfg, dataset=None, checkpoint=None):
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
