"""The driver's side of populations without Ray: real Optuna and Parquet, reports as the
population trainable sends them. Which plans share a population, capacity counted in Ray
trials, every member recorded once."""

from __future__ import annotations

import math

import pytest
from optuna.trial import TrialState
from sweep_helpers import launched_config, plans_of, write_space

from cl_core.trainer import TaskReport
from sweep.population_trial import population_report, report_members
from sweep.results import ResultsStore
from sweep.space import load_space
from sweep.trainable import _Tracker
from sweep.units import FINISHED, SweepState

# batch_size fixes the shapes of a batch: configs that differ in it cannot share a population.
SPACE = """
method: finetune
train: {hidden: "8"}
search:
  lr: {type: uniform, low: 0.5, high: 1.0}
  batch_size: {type: categorical, choices: [16, 32]}
grid: {benchmark: permuted-digits, scenario: domain, n_tasks: 2}
sampler: {name: random, seed: 0}
budget: {trials: 8}
resources: {population: 4}
"""


def member_reports(state: SweepState, plans) -> list[dict[str, dict]]:
    """Per task, the members' metrics a population of ``plans`` reports (quality = lr)."""
    trackers = {}
    for plan in plans:
        tracker = _Tracker(launched_config(state, plan))
        n = tracker.cfg.n_tasks
        tracker.reports.append(TaskReport(0, [0.1] * n, [0.1] * n, None, 0.0))
        trackers[plan.trial_id] = (tracker, plan.values["lr"], n)
    rounds = []
    for i in range(1, 3):
        members = {}
        for trial_id, (tracker, quality, n) in trackers.items():
            acc = [quality - 0.1 * i if j < i else 0.1 for j in range(n)]
            tracker.reports.append(TaskReport(i, acc, acc, 1.0, 0.01))
            members[trial_id] = {**tracker.metrics(), "population": "p"}
        rounds.append(members)
    return rounds


def test_configs_that_cannot_share_train_in_separate_populations_visibly(tmp_path):
    spec = load_space(write_space(tmp_path, SPACE))
    folder = tmp_path / "out" / spec.name
    folder.mkdir(parents=True)
    said: list[str] = []
    state = SweepState(spec, folder, ResultsStore(spec, folder), capacity=1, say=said.append)
    launches = []
    while (plans := plans_of(state.next_launch(f"pop{len(launches)}"))) not in (None, FINISHED):
        assert state.next_launch("another") is None  # one slot: the population holds it
        assert len({p.values["batch_size"] for p in plans}) == 1, plans
        launches.append(plans)
        rounds = member_reports(state, plans)
        if len(plans) == 1:  # a population of one runs per trial
            plan = plans[0]
            for members in rounds:
                state.on_report(plan, members[plan.trial_id])
            state.on_end(plan, rounds[-1][plan.trial_id])
            continue
        launch_id = f"pop{len(launches) - 1}"
        for members in rounds:
            assert state.on_population_report(launch_id, members) == []  # no rungs: none stops
        assert state.live == 1  # recorded, but its Ray trial still holds the slot
        state.on_population_end(launch_id, rounds[-1])
    assert state.finished() and state.live == 0
    assert sum(len(p) for p in launches) == 8 and max(len(p) for p in launches) > 1
    assert said and all("batch_size differs" in line for line in said), said
    assert len(said) == 1  # one line per unit and reason
    study = state.units[0].studies.search.get_trials()
    assert len(study) == 8 and all(t.state == TrialState.COMPLETE for t in study)
    assert len(state.store.ids) == 8


def test_the_time_limit_stops_every_member_and_each_is_pruned(tmp_path):
    text = SPACE.replace("budget: {trials: 8}", "budget: {trials: 8, time_limit_s: 60}").replace(
        "  batch_size: {type: categorical, choices: [16, 32]}\n", ""
    )
    spec = load_space(write_space(tmp_path, text))
    folder = tmp_path / "out" / spec.name
    folder.mkdir(parents=True)
    state = SweepState(spec, folder, ResultsStore(spec, folder), capacity=2, say=lambda _: None)
    plans = plans_of(state.next_launch("pop0"))
    assert len(plans) == 4  # min(population 4, 8 trials over 2 free slots)
    first_task = member_reports(state, plans)[0]
    state.units[0].elapsed_before = 61.0  # the search's time is up
    stops = state.on_population_report("pop0", first_task)
    assert sorted(stops) == sorted(p.trial_id for p in plans)
    # out of time: nothing new is asked; the search is over (Tune lets the population end)
    assert state.next_launch("pop1") == FINISHED and state.live == 1
    assert len(state.units[0].studies.search.get_trials()) == 4
    state.on_population_end("pop0", first_task)
    assert state.finished() and state.live == 0
    study = state.units[0].studies.search.get_trials()
    assert len(study) == 4 and all(t.state == TrialState.PRUNED for t in study)
    assert all(t.intermediate_values == {1: pytest.approx(t.params["lr"] - 0.1)} for t in study)


def test_a_population_report_carries_each_member_and_their_mean():
    members = {
        "a": {"tasks_learned": 2, "val_avg_acc": 0.5, "status": "running"},
        "b": {"tasks_learned": 2, "val_avg_acc": float("nan"), "status": "diverged"},
        "c": {"tasks_learned": 1, "val_avg_acc": 0.7, "status": "running"},
    }
    report = population_report("p7", members)
    assert report["population"] == "p7" and report["tasks_learned"] == 2
    assert report["val_avg_acc"] == pytest.approx(0.6)  # the finite ones
    assert math.isnan(report["test_avg_acc"])
    back = report_members(report)
    assert back["a"] == members["a"] and math.isnan(back["b"]["val_avg_acc"])
    assert report_members({}) == {}
