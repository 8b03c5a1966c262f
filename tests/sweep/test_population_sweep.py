"""The sweep runs populations (``resources.population``): the same rows, numbers and Optuna trials
as per-trial mode, early stopping and divergence inside a population, per-trial fallback.

One real local Ray for the module; the real cl_core trainers on the bundled 8x8 digits.
"""

from __future__ import annotations

import contextlib
import io
import json

import pandas as pd
import pytest
from helpers import flip_tolerance, split_sizes
from optuna.trial import TrialState
from sweep_helpers import study_trials, write_space

from cl_core.config import RunConfig
from sweep.batching import batch_size
from sweep.runner import Options, run_sweep
from sweep.space import load_space

# EWC with plain SGD: lambda 1e13 explodes on task 1 (a diverging member), the others complete.
EWC_SPACE = """
method: ewc
train: {hidden: "32", epochs: 3, batch_size: 32, optimizer: sgd, lr: 0.05}
search:
  lambda: {type: categorical, choices: [1.0, 10.0, 100.0, 1.0e13]}
grid: {benchmark: permuted-digits, scenario: domain, n_tasks: 3}
sampler: grid
budget: {trials: 4}
resources: {cpus: 1}
final: {top_k: 2, seeds: 2}
loggers: []
"""
CELL = "permuted-digits/domain/3"


def run(tmp, text: str, name: str, population: int | None, loggers: str = "[]"):
    sets = [f"name={name}", f"loggers={loggers}"]
    if population is not None:
        sets.append(f"resources.population={population}")
    spec = load_space(write_space(tmp, text, f"{name}.yaml"), sets=sets)
    folder = run_sweep(spec, Options(out=tmp / "out", quiet=True))
    trials = pd.read_parquet(folder / "trials.parquet")
    tasks = pd.read_parquet(folder / "tasks.parquet")
    return folder, trials, tasks


@pytest.fixture(scope="module")
def both_modes(local_ray, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("population")
    per_trial = run(tmp, EWC_SPACE, "per-trial", None)
    population = run(tmp, EWC_SPACE, "population", 4)
    return per_trial, population


def test_batch_size_spreads_a_small_budget_over_the_free_slots():
    assert batch_size(16, 16, 2) == 8  # two populations of 8, no idle slot
    assert batch_size(16, 8, 1) == 8
    assert batch_size(4, 100, 2) == 4  # never more than asked
    assert batch_size(16, 0, 2) == 1 and batch_size(16, 3, 0) == 3


def test_population_rows_are_the_per_trial_rows(both_modes):
    (_, ours, our_tasks), (_, pop, pop_tasks) = both_modes
    assert list(pop.columns) == list(ours.columns) and "population" in pop.columns
    count = ["phase", "status"]
    assert pop.groupby(count).size().to_dict() == ours.groupby(count).size().to_dict()
    assert pop.groupby(count).size().to_dict() == {
        ("final", "completed"): 4,
        ("search", "completed"): 3,
        ("search", "diverged"): 1,
    }
    assert ours.population.isna().all()
    assert pop.population.notna().all()  # every configuration shared a Ray trial with another
    sizes = pop.groupby("population").size()
    assert (sizes > 1).all() and sizes.sum() == 8
    # final phase: one population per fresh seed (the data seed is shared inside a population)
    finals = pop[pop.phase == "final"]
    assert (finals.groupby("population").train_seed.nunique() == 1).all()
    assert sorted(pop.trial_id) == sorted(ours.trial_id)
    assert len(pop_tasks) == len(our_tasks)
    assert pop_tasks.groupby("trial_id").size().equals(our_tasks.groupby("trial_id").size())
    # cost: a member's size is its own run's; its CPU time a share of its population's
    sizes = ["trainable_params", "stored_samples"]
    one, many = ours.set_index("trial_id"), pop.set_index("trial_id").loc[ours.trial_id]
    assert (one[sizes].to_numpy() == many[sizes].to_numpy()).all()
    assert (one.trainable_params == 64 * 32 + 32 + 32 * 10 + 10).all()  # hidden 32, 10 outputs
    assert (pop.cpu_time_s > 0).all() and (pop.gpu_time_s == 0).all()


def test_each_member_matches_its_per_trial_run(both_modes):
    """Same config and seed: the same accuracy matrix within what float32 kernels may flip
    (tests/helpers.py), counted in samples of each task's split: permuted digits has 140
    validation and 397 test samples per task. The diverged member included, which leaves its
    population's others unchanged."""
    (_, ours, our_tasks), (_, pop, pop_tasks) = both_modes
    sizes = split_sizes(RunConfig(benchmark="permuted-digits", scenario="domain", n_tasks=3))
    assert sizes["val"].tolist() == [140] * 3 and sizes["test"].tolist() == [397] * 3
    flips = {split: flip_tolerance(int(n[0])) for split, n in sizes.items()}  # 3 and 6 samples
    key = ["phase", "config_id", "train_seed"]
    joined = ours.merge(pop, on=key, suffixes=("_one", "_pop"))
    assert len(joined) == len(ours) == 8
    assert (joined.status_one == joined.status_pop).all()
    assert (joined.tasks_completed_one == joined.tasks_completed_pop).all()
    ok = joined[joined.status_one == "completed"]
    # a mean over tasks moves at most as far as its furthest task; BWT is a difference of two
    bounds = {"val_avg_acc": ("val", 1), "objective": ("val", 1), "test_avg_acc": ("test", 1)}
    bounds["test_bwt"] = ("test", 2)
    for column, (split, terms) in bounds.items():
        diff = (ok[f"{column}_one"] - ok[f"{column}_pop"]).abs()
        assert diff.max() <= terms * flips[split] / sizes[split][0] + 1e-9, (column, diff.max())
    diverged = pop[pop.status == "diverged"]
    assert len(diverged) == 1 and diverged.hp_lambda.iloc[0] == 1e13
    assert "lower the learning rate" in diverged.message.iloc[0]
    mates = pop[(pop.population == diverged.population.iloc[0]) & (pop.status != "diverged")]
    assert len(mates) >= 1 and (mates.status == "completed").all()
    merged = our_tasks.merge(pop_tasks, on=["trial_id", "tasks_learned", "task", "split"])
    assert len(merged) == len(pop_tasks)
    apart = (merged.accuracy_x - merged.accuracy_y).abs() * merged.split.map(
        lambda split: int(sizes[split][0])
    )
    assert (apart.round() <= merged.split.map(flips)).all(), apart.max()


def test_one_optuna_trial_per_member_with_its_state(both_modes):
    (one_folder, _, _), (folder, pop, _) = both_modes
    study = study_trials(folder, "ewc", CELL)
    per_trial = study_trials(one_folder, "ewc", CELL)
    assert len(study) == len(per_trial) == 4
    search = pop[pop.phase == "search"].set_index("trial_id")
    assert sorted(t.user_attrs["trial_id"] for t in study) == sorted(search.index)
    for trial in study:
        row = search.loc[trial.user_attrs["trial_id"]]
        if row.status == "completed":
            assert trial.state == TrialState.COMPLETE
            assert trial.value == pytest.approx(row.val_avg_acc)
            assert sorted(trial.intermediate_values) == [1, 2, 3]
        else:
            assert row.status == "diverged" and trial.state == TrialState.FAIL
    states = sorted(t.state.name for t in study)
    assert states == sorted(t.state.name for t in per_trial)
    finals = study_trials(folder, "ewc", CELL, "final")
    assert len(finals) == 4 and all(t.state == TrialState.COMPLETE for t in finals)


# Six learning rates of clearly different quality, one population of six (one slot), ASHA on;
# er has no population form: its configs run per trial.
ASHA_SPACE = """
method: [finetune, er]
train: {hidden: "16", epochs: 1}
search:
  lr: {type: categorical, choices: [0.1, 0.01, 0.001, 0.0001, 0.00001, 0.000001]}
grid: {benchmark: permuted-digits, scenario: domain, n_tasks: 4}
sampler: grid
budget: {trials: 6}
early_stopping: {scheduler: asha, grace_tasks: 1, reduction_factor: 2}
resources: {max_concurrent: 1}
"""


@pytest.fixture(scope="module")
def asha_population(local_ray, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("asha-population")
    driver_err = io.StringIO()
    with contextlib.redirect_stderr(driver_err):  # the driver's console lines
        folder, trials, tasks = run(tmp, ASHA_SPACE, "asha", 6, loggers="[json]")
    return folder, trials, tasks, driver_err.getvalue()


def test_asha_stops_members_inside_a_population(asha_population):
    folder, trials, tasks, _ = asha_population
    ft = trials[trials.method == "finetune"].set_index("trial_id")
    assert len(ft) == 6 and ft.population.nunique() == 1  # one population of all six
    stopped = ft[ft.status == "stopped"]
    assert len(stopped) >= 1 and (ft.status == "completed").sum() >= 1
    assert (stopped.tasks_completed < 4).all()
    # pruned in Optuna with the last value, each member its own trial (as per-trial mode)
    study = {
        t.user_attrs["trial_id"]: t
        for t in study_trials(folder, "finetune", "permuted-digits/domain/4")
    }
    assert sorted(study) == sorted(ft.index)
    for trial_id, row in ft.iterrows():
        trial = study[trial_id]
        steps = sorted(trial.intermediate_values)
        assert steps == list(range(1, row.tasks_completed + 1))
        if row.status == "stopped":
            assert trial.state == TrialState.PRUNED
            assert trial.intermediate_values[steps[-1]] == pytest.approx(row.objective)
        else:
            assert trial.state == TrialState.COMPLETE
    learned = tasks.groupby("trial_id").tasks_learned.max()
    assert (learned.loc[stopped.index] == stopped.tasks_completed).all()
    # the stopped members left the batch: later reports of the population do not carry them
    population = ft.population.iloc[0]
    lines = (folder / "ray").glob(f"run-*/{population}/result.json")
    reports = [json.loads(line) for path in lines for line in path.read_text().splitlines()]
    carried = [set(json.loads(r["members"])) for r in reports]
    assert len(carried) == 4 and carried[0] == set(ft.index)
    for trial_id, row in stopped.iterrows():
        in_reports = [trial_id in members for members in carried]
        assert in_reports == [i < row.tasks_completed for i in range(4)]


def test_a_config_without_population_form_runs_per_trial_with_one_line(asha_population):
    _, trials, _, err = asha_population
    er = trials[trials.method == "er"]
    assert len(er) == 6 and er.population.isna().all()
    notices = [line for line in err.splitlines() if "runs per trial" in line]
    assert notices == [
        "er permuted-digits/domain/4: runs per trial: method 'er' has no population form"
    ], notices
