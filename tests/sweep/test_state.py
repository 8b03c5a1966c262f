"""The sweep's driver-side state without Ray: real Optuna (study.db), real Parquet, real reports.

Covers the dispatch between cells, a cell's final phase starting when its own search ends, ASHA's
rungs (hand-computed), the report that stops a trial reaching Optuna, and resuming: an interrupted
trial runs again in its own Optuna trial; one recorded before a crash is told from its row.
"""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from sweep_helpers import launched_config, next_plan, write_space

from cl_core.trainer import TaskReport
from sweep.asha import Asha
from sweep.results import ResultsStore, trial_rows
from sweep.space import load_space
from sweep.trainable import _Tracker
from sweep.units import FINISHED, SweepState

TWO_CELLS = """
method: finetune
train: {hidden: "8"}
search:
  lr: {type: uniform, low: 0.5, high: 1.0}
grid: {benchmark: permuted-digits, scenario: domain, n_tasks: [2, 4]}
sampler: {name: random, seed: 0}
budget: {trials: 3}
final: {top_k: 1, seeds: 2}
"""


def make_state(tmp_path, text: str, capacity: int = 2, backend: str = "auto") -> SweepState:
    spec = load_space(write_space(tmp_path, text, "state.yaml"))
    folder = tmp_path / "out" / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    store = ResultsStore(spec, folder)
    return SweepState(spec, folder, store, capacity, say=lambda _: None, backend=backend)


def reports(state: SweepState, plan, upto: int | None = None, quality=None) -> list[dict]:
    """The reports the trainable would send for ``plan``: accuracy ``quality - 0.1 i``, where
    the quality is the searched lr unless given (so configs rank by lr)."""
    quality = plan.values["lr"] if quality is None else quality
    tracker = _Tracker(launched_config(state, plan))
    n = tracker.cfg.n_tasks
    tracker.reports.append(TaskReport(0, [0.1] * n, [0.1] * n, None, 0.0))
    out = []
    for i in range(1, (upto or n) + 1):
        acc = [quality - 0.1 * i if j < i else 0.1 for j in range(n)]
        tracker.reports.append(TaskReport(i, acc, acc, 1.0, 0.01))
        out.append(tracker.metrics())
    return out


def run_to_end(state: SweepState, plan, quality=None, upto: int | None = None) -> None:
    results = reports(state, plan, upto, quality)
    for result in results:
        state.decide(plan, result)  # what the scheduler does with every report
        state.on_report(plan, result)
    state.on_end(plan, results[-1])


def test_cells_take_turns_and_capacity_is_respected(tmp_path):
    state = make_state(tmp_path, TWO_CELLS, capacity=2)
    first, second = next_plan(state), next_plan(state)
    assert {first.unit, second.unit} == {0, 1}  # one trial of each cell, not two of one
    assert next_plan(state) is None  # both slots busy
    run_to_end(state, first)
    third = next_plan(state)
    assert third.unit == first.unit


def test_a_cells_final_phase_starts_when_its_own_search_ends(tmp_path):
    state = make_state(tmp_path, TWO_CELLS, capacity=4)
    plans = [next_plan(state) for _ in range(4)]
    short = [p for p in plans if p.unit == 0]
    other = [p for p in plans if p.unit == 1]
    for plan in short:
        run_to_end(state, plan)
    plan = next_plan(state)  # cell 0 still has one search trial to ask
    assert plan.unit == 0 and plan.phase == "search"
    run_to_end(state, plan)
    final = next_plan(state)
    assert final.unit == 0 and final.phase == "final"  # while cell 1 is still searching
    assert any(r.plan.phase == "search" for r in state.units[1].running.values())
    assert final.seed == 1000 and final.final_rank == 1
    best = max(state.store.studies[("finetune", "permuted-digits/domain/2")].completed)
    assert final.config_id == best[2] and final.values == best[3]
    assert final.values["lr"] == max(p.values["lr"] for p in [*short, plan])
    del other


def test_the_report_that_stops_a_trial_reaches_optuna(tmp_path):
    text = TWO_CELLS.replace("n_tasks: [2, 4]", "n_tasks: 4") + (
        "early_stopping: {scheduler: asha, grace_tasks: 1, reduction_factor: 2}\n"
    )
    state = make_state(tmp_path, text, capacity=1)
    good = next_plan(state)
    run_to_end(state, good, quality=0.9)
    weak = next_plan(state)
    stopped_at = None
    for result in reports(state, weak, quality=0.5):
        stop = state.decide(weak, result)  # the scheduler decides first ...
        state.on_report(weak, result)  # ... and every report still reaches Optuna
        if stop:
            stopped_at = result
            break
    assert stopped_at is not None and stopped_at["tasks_learned"] == 1
    row = state.on_end(weak, stopped_at)
    assert row["status"] == "stopped" and row["tasks_completed"] == 1
    trial = state.units[0].studies.search.trials[weak.number]
    assert trial.state == TrialState.PRUNED
    assert trial.intermediate_values == {1: pytest.approx(row["objective"])}
    assert trial.value == pytest.approx(row["objective"])
    assert trial.user_attrs["trial_id"] == weak.trial_id


@pytest.mark.parametrize("backend", ["sqlite", "journal"])
def test_resume_runs_an_interrupted_trial_again_in_its_own_optuna_trial(tmp_path, backend):
    state = make_state(tmp_path, TWO_CELLS, capacity=1, backend=backend)
    done = next_plan(state)
    run_to_end(state, done)
    cut = next_plan(state)
    first = reports(state, cut)[0]
    state.on_report(cut, first)  # one report, then the driver dies
    resumed = make_state(tmp_path, TWO_CELLS, capacity=1)  # the folder's file decides
    assert resumed.study_file.name == {"sqlite": "study.db", "journal": "study.journal"}[backend]
    rerun = next_plan(resumed)
    assert (rerun.trial_id, rerun.number, rerun.values) == (cut.trial_id, cut.number, cut.values)
    run_to_end(resumed, rerun)
    study = resumed.units[cut.unit].studies.search
    assert len(study.trials) == cut.number + 1  # no new Optuna trial for the re-run
    assert study.trials[cut.number].state == TrialState.COMPLETE
    values = study.trials[cut.number].intermediate_values  # the first report kept, not repeated
    assert values[1] == first["val_avg_acc"]
    assert sorted(values) == list(range(1, resumed.units[cut.unit].cell.n_tasks + 1))
    assert study.trials[cut.number].user_attrs["trial_id"] == cut.trial_id
    assert resumed.store.ids == {done.trial_id, cut.trial_id}


def test_resume_tells_optuna_a_trial_recorded_just_before_the_crash(tmp_path):
    state = make_state(tmp_path, TWO_CELLS, capacity=1)
    plan = next_plan(state)
    results = reports(state, plan)
    for result in results:
        state.on_report(plan, result)
    unit = state.units[plan.unit]
    state.store.add(*trial_rows(state.spec, unit.running[plan.trial_id], results[-1]))  # died
    assert unit.studies.search.trials[plan.number].state == TrialState.RUNNING
    resumed = make_state(tmp_path, TWO_CELLS, capacity=1)
    frozen = resumed.units[plan.unit].studies.search.trials[plan.number]
    assert frozen.state == TrialState.COMPLETE
    assert frozen.user_attrs["trial_id"] == plan.trial_id
    assert next_plan(resumed).trial_id != plan.trial_id  # not run again


def test_time_limit_stops_the_search_and_starts_the_final_phase(tmp_path, monkeypatch):
    text = TWO_CELLS.replace("budget: {trials: 3}", "budget: {trials: 50, time_limit_s: 60}")
    state = make_state(tmp_path, text, capacity=1)
    plan = next_plan(state)
    first = reports(state, plan)[0]
    assert not state.decide(plan, first)
    unit = state.units[plan.unit]
    unit.elapsed_before = 61.0  # as if a minute had passed
    assert state.decide(plan, first)
    state.on_end(plan, first)
    assert unit.search_ended and unit.end_reason == "time_limit"
    assert unit.studies.search.user_attrs["search_ended"] == "time_limit"
    nxt = next_plan(state)
    assert nxt.unit == 1 or nxt.phase == "final"


def test_everything_done_is_finished(tmp_path):
    state = make_state(tmp_path, TWO_CELLS.replace("final: {top_k: 1, seeds: 2}", ""), 4)
    while (plan := next_plan(state)) not in (None, FINISHED):
        run_to_end(state, plan)
    assert next_plan(state) == FINISHED
    assert state.finished()
    for unit in state.units:
        states = {t.state for t in unit.studies.search.trials}
        assert states == {TrialState.COMPLETE} and len(unit.studies.search.trials) == 3


# -- ASHA ----------------------------------------------------------------------------------------


def test_asha_rungs_and_cutoffs_by_hand():
    asha = Asha(grace=1, factor=2, max_t=5)
    assert asha.milestones == [1, 2, 4]
    assert not asha.on_result("a", 1, 0.5)  # first at the rung: nothing to compare with
    assert asha.on_result("b", 1, 0.4)  # below the median of [0.5]
    assert not asha.on_result("c", 1, 0.6)  # median of [0.4, 0.5] is 0.45
    assert not asha.on_result("c", 1, 0.0)  # judged once per rung
    assert asha.rungs[1] == [0.4, 0.5, 0.6]
    assert not asha.on_result("d", 1, float("nan"))  # never stops on NaN, never records it
    assert asha.rungs[1] == [0.4, 0.5, 0.6]


def test_asha_minimises_too_and_matches_numpys_percentile():
    asha = Asha(grace=1, factor=3, max_t=9, mode="min")
    rng = np.random.default_rng(0)
    values = rng.random(50)
    for i, v in enumerate(values[:-1]):
        asha.on_result(f"t{i}", 1, float(v))
    cutoff = asha.cutoff(1)
    assert cutoff == pytest.approx(np.percentile(-values[:-1], (1 - 1 / 3) * 100))
    assert asha.milestones == [1, 3]


def test_asha_rebuilt_from_intermediate_values():
    fresh, seeded = Asha(1, 2, 4), Asha(1, 2, 4)
    for i, v in enumerate([0.3, 0.7, 0.5]):
        fresh.on_result(f"t{i}", 1, v)
        fresh.on_result(f"t{i}", 2, v - 0.1)
        seeded.seed(f"t{i}", {1: v, 2: v - 0.1, 3: v - 0.2})
    assert fresh.rungs == seeded.rungs


def test_study_db_names_its_metrics(tmp_path):
    state = make_state(tmp_path, TWO_CELLS)
    for unit in state.units:
        assert unit.studies.search.metric_names == ["val_avg_acc"]
        assert unit.studies.final.metric_names == ["val_avg_acc"]
    assert optuna.get_all_study_names(state.storage)


def test_a_free_slot_goes_to_the_cell_that_used_the_least_run_time(tmp_path):
    """Fair share: a cell of short trials is not held back behind a cell of long ones."""
    state = make_state(tmp_path, TWO_CELLS.replace("trials: 3", "trials: 5"), capacity=1)
    seconds = {0: 1.0, 1: 30.0}  # cell 0's trials take a second, cell 1's half a minute
    picked = []
    for _ in range(5):
        plan = next_plan(state)
        picked.append(plan.unit)
        result = reports(state, plan)[-1]
        result["run_wall_s"] = seconds[plan.unit]
        state.on_end(plan, result)
    assert picked == [0, 1, 0, 0, 0]
    assert state.units[0].busy_s == 4.0 and state.units[1].busy_s == 30.0
