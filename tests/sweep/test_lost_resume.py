"""--resume runs again the trials that a lost node ended (retries spent), each in the same row:
a search trial in a new Optuna trial with its parameters and trial id, a final-phase trial once
its row is gone. Driver-side state only (no Ray): real Optuna, real Parquet."""

from __future__ import annotations

import pandas as pd
from optuna.trial import TrialState
from sweep_helpers import next_plan, write_space
from test_state import reports, run_to_end

from contract.schema import lost_to_node
from sweep.results import ResultsStore
from sweep.space import load_space
from sweep.units import FINISHED, SweepState

SPACE = """
method: finetune
train: {hidden: "8"}
search:
  lr: {type: uniform, low: 0.5, high: 1.0}
grid: {benchmark: permuted-digits, scenario: domain, n_tasks: 2}
sampler: {name: random, seed: 0}
budget: {trials: 3}
final: {top_k: 1, seeds: 1}
"""
LOST = "The actor died because its node has died. Node Id: 1234\n\tip: 10.0.0.7"


def make_state(tmp_path, lines: list[str]) -> SweepState:
    spec = load_space(write_space(tmp_path, SPACE, "lost.yaml"))
    folder = tmp_path / "out" / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    store = ResultsStore(spec, folder)
    return SweepState(spec, folder, store, capacity=1, say=lines.append)


def lose(state: SweepState, plan) -> dict:
    """The trial reports its first task, then its node is lost more often than allowed."""
    first = reports(state, plan)[0]
    state.on_report(plan, first)
    for _ in range(state.spec.max_failures):
        state.on_restart(plan.trial_id, LOST, gone=True)
    return state.on_end(plan, first, state.failure_message(plan.trial_id, LOST, gone=True))


def test_resume_runs_the_trials_a_lost_node_ended_again_in_their_rows(tmp_path):
    lines: list[str] = []
    state = make_state(tmp_path, lines)
    lost = None
    while (plan := next_plan(state)) not in (None, FINISHED):
        if lost is None:
            lost = plan
            row = lose(state, plan)
            assert row["status"] == "error" and row["restarts"] == 2 and lost_to_node(row)
            assert row["message"] == (
                "node lost (node 10.0.0.7); gave up after 2 restart(s), resources.max_failures: "
                "2; --resume runs it again"
            )
        elif plan.phase == "final":
            lose(state, plan)  # the final re-run is lost too
        else:
            run_to_end(state, plan)
    assert sum("restarting from its last finished task" in line for line in lines) == 4
    state.store.compact()
    final_study = state.units[0].studies.final
    assert final_study.trials == []  # a lost final is not added: --resume runs it again

    resumed = make_state(tmp_path, lines)
    assert any(line.startswith("--resume: 2 trial(s) that a lost node ended") for line in lines)
    rerun = next_plan(resumed)
    assert (rerun.trial_id, rerun.values, rerun.phase) == (lost.trial_id, lost.values, "search")
    assert rerun.number == 3  # a new Optuna trial: the FAIL one cannot be reopened
    run_to_end(resumed, rerun)
    while (plan := next_plan(resumed)) not in (None, FINISHED):
        assert plan.phase == "final"
        run_to_end(resumed, plan)
    resumed.store.compact()
    trials = pd.read_parquet(resumed.folder / "trials.parquet")
    assert sorted(trials.phase) == ["final", "search", "search", "search"]
    assert trials.trial_id.is_unique and set(trials.status) == {"completed"}
    tasks = pd.read_parquet(resumed.folder / "tasks.parquet")
    assert not tasks.duplicated(["trial_id", "tasks_learned", "task", "split"]).any()
    study = resumed.units[0].studies.search
    states = [t.state for t in study.trials]
    assert states == [
        TrialState.FAIL,
        TrialState.COMPLETE,
        TrialState.COMPLETE,
        TrialState.COMPLETE,
    ]
    assert study.trials[3].user_attrs["trial_id"] == lost.trial_id
    assert study.trials[3].params == study.trials[0].params
    assert len(resumed.units[0].studies.final.trials) == 1
    again = make_state(tmp_path, lines)  # nothing left: the superseded trial is not run again
    assert again.finished() and again.units[0].asked == 3
