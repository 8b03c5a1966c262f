"""Loading sweep folders: the forms of path accepted, and a clear error for each bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from analysis_fixtures import FIXTURES, SWEEPS
from import_checks import CONFIG_ONLY, modules_after

from analysis.load import AnalysisError, load_results


def test_loads_every_row_of_every_sweep(results, raw_trials, raw_tasks):
    assert len(results.trials) == len(raw_trials)
    assert len(results.tasks) == len(raw_tasks)
    assert sorted(results.sweeps) == sorted(
        json.loads((p / "sweep.json").read_text())["name"] for p in SWEEPS
    )
    for info in results.sweeps.values():
        searched = json.loads((info.path / "sweep.json").read_text())["searched"]
        assert [p.column for p in info.params] == [s["column"] for s in searched]


def test_sweep_folder_results_folder_and_glob_agree(results):
    one = load_results(SWEEPS[0])
    assert set(one.trials["trial_id"]) == set(
        results.trials.loc[results.trials["sweep"] == one.sweep().name, "trial_id"]
    )
    globbed = load_results(str(FIXTURES / "*"))
    assert len(globbed.trials) == len(results.trials)
    listed = load_results(SWEEPS)
    pd.testing.assert_frame_equal(listed.trials, results.trials)


def test_matrix_is_the_long_rows_pivoted(results, raw_tasks, raw_trials):
    trial = raw_trials[raw_trials["status"] == "completed"].iloc[0]
    rows = raw_tasks[
        (raw_tasks["trial_id"] == trial["trial_id"])
        & (raw_tasks["sweep"] == trial["sweep"])
        & (raw_tasks["split"] == "test")
    ]
    T = int(trial["n_tasks"])
    expected = np.full((T + 1, T), np.nan)
    for _, r in rows.iterrows():
        expected[int(r["tasks_learned"]), int(r["task"])] = r["accuracy"]
    matrix = results.matrix(trial["sweep"], trial["trial_id"], "test")
    np.testing.assert_array_equal(matrix, expected)
    # final average accuracy = mean of the last row over the tasks learned (docs/references.md)
    assert math.isclose(expected[T].mean(), trial["test_avg_acc"], rel_tol=1e-9)


def test_not_a_sweep_is_a_clear_error(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(AnalysisError, match="is not a sweep: it holds no trials.parquet"):
        load_results(tmp_path)
    with pytest.raises(AnalysisError, match="does not exist"):
        load_results(tmp_path / "missing")
    with pytest.raises(AnalysisError, match="matches is a sweep"):
        load_results(str(tmp_path / "nothing-*"))


def test_schema_version_mismatch_is_a_clear_error(sweep_copy: Path):
    meta = json.loads((sweep_copy / "sweep.json").read_text())
    meta["schema_version"] = 99
    (sweep_copy / "sweep.json").write_text(json.dumps(meta))
    with pytest.raises(
        AnalysisError, match="schema_version 99, this analysis reads schema_version 1-5"
    ):
        load_results(sweep_copy)


def test_schema_version_in_the_parquet_is_checked(sweep_copy: Path):
    trials = pd.read_parquet(sweep_copy / "trials.parquet")
    trials["schema_version"] = 7
    trials.to_parquet(sweep_copy / "trials.parquet")
    with pytest.raises(AnalysisError, match="schema_version 7"):
        load_results(sweep_copy)


def test_missing_file_and_missing_column(sweep_copy: Path):
    trials = pd.read_parquet(sweep_copy / "trials.parquet")
    trials.drop(columns=["config_id"]).to_parquet(sweep_copy / "trials.parquet")
    with pytest.raises(AnalysisError, match="lacks the column"):
        load_results(sweep_copy)
    (sweep_copy / "tasks.parquet").unlink()
    trials.to_parquet(sweep_copy / "trials.parquet")
    with pytest.raises(AnalysisError, match="tasks.parquet is missing"):
        load_results(sweep_copy)


def test_zero_completed_trials_is_a_clear_error(sweep_copy: Path):
    trials = pd.read_parquet(sweep_copy / "trials.parquet")
    trials[trials["status"] != "completed"].to_parquet(sweep_copy / "trials.parquet")
    results = load_results(sweep_copy)  # loading works: the statuses are worth seeing
    with pytest.raises(AnalysisError, match="no completed trials in"):
        results.require_completed()


def test_analysis_needs_neither_ray_nor_optuna_to_import():
    """docs/design.md: analysis reads Parquet and the contract only (so it installs without
    torch and Ray; the contract reads the torch-free run configuration); optuna is imported
    lazily, for importance."""
    heavy, core = modules_after("import analysis.report, analysis.__main__")
    assert heavy == [] and core == CONFIG_ONLY
