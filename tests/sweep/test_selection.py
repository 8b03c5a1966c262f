"""Selection protocols (docs/selection.md) on toy digits sweeps: what each search read, and what
its final phase learned and reported, read back from the Parquet tables a real sweep wrote."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from sweep_helpers import write_space

from cl_core.config import RunConfig
from cl_core.trainer import RunResult, train
from sweep.runner import Options, run_sweep
from sweep.space import load_space

FIRST_TASKS = """
method: ewc
train: {hidden: "32", iterations: 40, epochs: null, batch_size: 32, lr: 0.01}
search:
  lambda: {type: loguniform, low: 1, high: 1.0e4}
grid: {benchmark: split-digits, scenario: task, n_tasks: 5}
budget: {trials: 3}
selection: {protocol: first-tasks, tasks: 2}
final: {top_k: 1, seeds: 2}
resources: {cpus: 1}
loggers: []
"""
TRANSFER = (
    FIRST_TASKS.replace("scenario: task", "scenario: class")
    .replace(
        "selection: {protocol: first-tasks, tasks: 2}",
        "selection: {protocol: transfer, evaluate: {benchmark: permuted-digits, n_tasks: 3}}",
    )
    .replace("seeds: 2", "seeds: 1")
)


def _tables(folder):
    trials = pd.read_parquet(folder / "trials.parquet")
    tasks = pd.read_parquet(folder / "tasks.parquet").merge(trials[["trial_id"]])
    return trials, tasks


@pytest.fixture(scope="module")
def first_tasks(local_ray, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("first")
    spec = load_space(write_space(tmp, FIRST_TASKS, "first.yaml"))
    return run_sweep(spec, Options(out=tmp / "out", quiet=True))


def test_first_tasks_search_never_evaluates_beyond_k(first_tasks):
    trials, tasks = _tables(first_tasks)
    search = trials[trials.phase == "search"]
    assert len(search) == 3 and (search.status == "completed").all()
    assert (search.task_start == 0).all() and (search.task_stop == 2).all()
    assert (search.tasks_completed == 2).all()
    searched = tasks[tasks.trial_id.isin(search.trial_id)]
    assert set(searched.task) == {0, 1} and searched.tasks_learned.max() == 2


def test_first_tasks_final_phase_learns_and_reports_the_rest_alone(first_tasks):
    trials, tasks = _tables(first_tasks)
    final = trials[trials.phase == "final"]
    assert len(final) == 2 and (final.status == "completed").all()
    assert (final.task_start == 2).all() and final.task_stop.isna().all()
    assert (final.tasks_completed == 3).all()
    reported = tasks[tasks.trial_id.isin(final.trial_id)]
    assert set(reported.task) == {0, 1, 2} and reported.tasks_learned.max() == 3
    # the row's number is the run of tasks 2-4 alone with the chosen configuration
    row = final.iloc[0]
    cfg = RunConfig(
        benchmark="split-digits", scenario="task", n_tasks=5, task_start=2, hidden=(32,),
        iterations=40, epochs=None, batch_size=32, lr=0.01, method="ewc",
        method_params={"lambda": row.hp_lambda}, data_seed=int(row.data_seed),
        train_seed=int(row.train_seed),
    )  # fmt: skip
    alone = RunResult.from_reports(cfg, list(train(cfg)))
    assert alone.acc_test.shape == (4, 3)
    assert abs(alone.acc_test[-1].mean() - row.test_avg_acc) < 1e-6
    doc = json.loads((first_tasks / "sweep.json").read_text())
    assert doc["selection"]["protocol"] == "first-tasks" and doc["selection"]["tasks"] == 2


def test_transfer_search_never_touches_the_evaluation_cell(local_ray, tmp_path):
    spec = load_space(write_space(tmp_path, TRANSFER, "transfer.yaml"))
    folder = run_sweep(spec, Options(out=tmp_path / "out", quiet=True))
    trials, tasks = _tables(folder)
    search, final = trials[trials.phase == "search"], trials[trials.phase == "final"]
    assert len(search) == 3 and len(final) == 1
    assert set(search.benchmark) == {"split-digits"} and set(search.n_tasks) == {5}
    assert set(search.scenario) == {"class"}
    assert set(final.benchmark) == {"permuted-digits"} and set(final.n_tasks) == {3}
    assert set(final.scenario) == {"class"} and (final.status == "completed").all()
    # the study is the tuning cell's; the final row re-runs its best search configuration
    assert set(trials.cell) == {"split-digits/class/5"}
    best = search.sort_values("objective", ascending=False).iloc[0]
    assert final.iloc[0].config_id == best.config_id
    assert set(tasks[tasks.trial_id.isin(final.trial_id)].task) == {0, 1, 2}
    doc = json.loads((folder / "sweep.json").read_text())
    assert doc["selection"]["evaluated_on"] == {"split-digits/class/5": "permuted-digits/class/3"}


PER_TASK = """
method: ewc
train: {hidden: "32", iterations: 40, epochs: null, batch_size: 32, lr: 0.001}
hyperparams: {lambda: 100.0}
grid: {benchmark: split-digits, scenario: class, n_tasks: 5}
budget: {trials: 1}
selection: {protocol: per-task, drop: 1.0, lr_grid: [0.01, 0.001]}
final: {top_k: 1, seeds: 1}
resources: {cpus: 1}
loggers: []
"""


def test_per_task_records_each_tasks_choice_and_lambda_follows_the_rule(local_ray, tmp_path):
    """p = 1 keeps every first attempt, so λ starts at its set value and doubles each task
    (α = 0.5: one step above the last value), in the search and in the final phase."""
    spec = load_space(write_space(tmp_path, PER_TASK, "per_task.yaml"))
    folder = run_sweep(spec, Options(out=tmp_path / "out", quiet=True))
    trials, _ = _tables(folder)
    assert len(trials) == 2 and (trials.status == "completed").all()
    for text in trials.per_task_choices:
        choices = json.loads(text)
        assert [c["values"]["lambda"] for c in choices] == [100.0, 200.0, 400.0, 800.0, 1600.0]
        assert all(len(c["attempts"]) == 1 for c in choices)
        for c in choices:  # lr: the grid's best at fine-tuning
            assert c["lr"] == max(c["finetune"], key=lambda item: item[1])[0]
    doc = json.loads((folder / "sweep.json").read_text())
    assert doc["selection"]["protocol"] == "per-task" and doc["selection"]["drop"] == 1.0
