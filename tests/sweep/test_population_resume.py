"""Kill the driver of a population sweep (SIGKILL) once a member is in Parquet, then --resume:
nothing lost, nothing duplicated, every member its own Optuna trial and row. The CLI runs in a
subprocess with its own Ray (as tests/sweep/test_resume.py, whose helpers this uses)."""

from __future__ import annotations

import signal

import pandas as pd
import pytest
from optuna.trial import TrialState
from sweep_helpers import TINY_SPACE, study_trials, write_space
from test_resume import kill_after_first_trial, resume, sweep_command

# One slot: populations of 3 run one after another (6 search trials: two populations), then the
# final phase's two configs with one seed as one population.
SPACE = (
    TINY_SPACE.replace("budget: {trials: 4}", "budget: {trials: 6}").replace(
        "resources: {cpus: 1}", "resources: {cpus: 1, max_concurrent: 1, population: 3}"
    )
    + "final: {top_k: 2, seeds: 1}\nloggers: []\n"
)
CELL = "permuted-digits/domain/3"


@pytest.mark.slow
def test_population_sweep_resumes_after_a_killed_driver(tmp_path):
    space = write_space(tmp_path, SPACE, "popresume.yaml")
    out = tmp_path / "out"
    folder = out / "popresume"
    status = kill_after_first_trial(
        sweep_command(space, out), folder / "trials.parquet", signal.SIGKILL
    )
    assert status == -signal.SIGKILL
    before = pd.read_parquet(folder / "trials.parquet")
    assert 1 <= len(before) < 8 and before.population.notna().all()

    resume(space, out)
    after = pd.read_parquet(folder / "trials.parquet")
    assert after.trial_id.is_unique
    assert (after.phase == "search").sum() == 6 and (after.phase == "final").sum() == 2
    assert set(after.status) == {"completed"}
    # rows written before the kill are kept as they were: those members did not run again
    kept = after.set_index("trial_id").loc[before.trial_id]
    for column in ("started_at", "ended_at", "objective", "hp_lambda", "population"):
        assert list(kept[column]) == list(before[column]), column
    # members run again after the kill trained in the resumed run's populations (or alone, null,
    # when one was left over: a population of one runs per trial)
    again = after[~after.trial_id.isin(before.trial_id)]
    assert len(again) >= 1 and not set(again.population.dropna()) & set(before.population)
    final = after[after.phase == "final"]
    assert final.population.nunique() == 1  # the final phase is itself a population
    tasks = pd.read_parquet(folder / "tasks.parquet")
    assert not tasks.duplicated(["trial_id", "tasks_learned", "task", "split"]).any()
    assert set(tasks.trial_id) == set(after.trial_id)
    study = study_trials(folder, "ewc", CELL)
    assert len(study) == 6 and all(t.state == TrialState.COMPLETE for t in study)
    assert sorted(t.user_attrs["trial_id"] for t in study) == sorted(
        after[after.phase == "search"].trial_id
    )
    finals = study_trials(folder, "ewc", CELL, "final")
    assert sorted(t.user_attrs["trial_id"] for t in finals) == sorted(final.trial_id)
