"""YAML -> Ray Tune + Optuna -> Parquet on a real local Ray, with the real trainer.

Covers: the documented columns and row counts, values that agree across the three files and the
study, a trial that raises and one that diverges (recorded, the sweep goes on), and the final
phase re-running the best search config with fresh seeds.
"""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest
import ray.cloudpickle
from optuna.trial import TrialState
from sweep_helpers import TINY_SPACE, documented_columns, study_trials, write_space

from cl_core.trainer import train
from contract.schema import SCHEMA_VERSION
from sweep.runner import Options, run_sweep
from sweep.seeds import cell_sampler_seed
from sweep.space import load_space

# Ray workers import this module by value: tests/ is not on their path.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def raising_trainer(cfg, dataset=None, checkpoint=None):
    """The real trainer, except that lr == 0.1 raises after the first task."""
    for report in train(cfg, dataset=dataset):
        yield report
        if cfg.lr == 0.1 and report.tasks_learned == 1:
            raise RuntimeError("boom: injected failure")


@pytest.fixture(scope="module")
def ewc_sweep(local_ray, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    text = TINY_SPACE + "final: {top_k: 1, seeds: 2}\n"
    spec = load_space(write_space(tmp, text, "tiny.yaml"))
    folder = run_sweep(spec, Options(out=tmp / "out", command="pytest"))
    return spec, folder


def test_tensorboard_logs_by_default_one_folder_per_trial(ewc_sweep):
    _, folder = ewc_sweep
    trials = pd.read_parquet(folder / "trials.parquet")
    (run,) = (folder / "ray").glob("run-*")
    for trial_id in trials.trial_id:
        assert list((run / trial_id).glob("events.out.tfevents.*")), trial_id
    assert not list(run.rglob("progress.csv"))  # csv is not on unless the space says so


def test_loggers_from_the_space(local_ray, tmp_path):
    text = TINY_SPACE.replace("budget: {trials: 4}", "budget: {trials: 1}") + "loggers: [csv]\n"
    spec = load_space(write_space(tmp_path, text, "logs.yaml"))
    folder = run_sweep(spec, Options(out=tmp_path / "out", quiet=True))
    (run,) = (folder / "ray").glob("run-*")
    assert len(list(run.rglob("progress.csv"))) == 1
    assert not list(run.rglob("events.out.tfevents.*"))


def test_files_have_the_documented_columns(ewc_sweep):
    _, folder = ewc_sweep
    trials = pd.read_parquet(folder / "trials.parquet")
    documented = documented_columns("trials")
    pattern_free = {c for c in documented if "<" not in c}
    assert pattern_free <= set(trials.columns)
    assert all(c in documented or c.startswith("hp_") for c in trials.columns)
    assert {"hp_lambda", "hp_fisher", "hp_merge"} <= set(trials.columns)
    tasks = pd.read_parquet(folder / "tasks.parquet")
    assert set(tasks.columns) == documented_columns("tasks")


def test_one_row_per_trial_and_per_matrix_cell(ewc_sweep):
    spec, folder = ewc_sweep
    trials = pd.read_parquet(folder / "trials.parquet")
    assert trials.trial_id.is_unique
    assert (trials.phase == "search").sum() == 4
    assert (trials.phase == "final").sum() == 2
    assert set(trials.status) == {"completed"}
    tasks = pd.read_parquet(folder / "tasks.parquet")
    per_trial = tasks.groupby("trial_id").size()
    n = 3
    assert (per_trial == (n + 1) * n * 2).all() and len(per_trial) == 6
    assert not tasks.duplicated(["trial_id", "tasks_learned", "task", "split"]).any()


def test_metrics_agree_with_the_accuracy_matrix(ewc_sweep):
    _, folder = ewc_sweep
    trials = pd.read_parquet(folder / "trials.parquet").set_index("trial_id")
    tasks = pd.read_parquet(folder / "tasks.parquet")
    for trial_id, row in trials.iterrows():
        for split in ("val", "test"):
            cells = tasks[(tasks.trial_id == trial_id) & (tasks.split == split)]
            last = cells[cells.tasks_learned == 3].sort_values("task").accuracy.to_numpy()
            assert row[f"{split}_avg_acc"] == pytest.approx(last.mean())
            diag = [
                cells[(cells.tasks_learned == j + 1) & (cells.task == j)].accuracy.item()
                for j in range(3)
            ]
            assert row[f"{split}_plasticity"] == pytest.approx(sum(diag) / 3)
        assert row.objective == row.val_avg_acc
        assert 0 <= row.val_avg_acc <= 1 and row.tasks_completed == 3
        assert row.device == "cpu" and row.node and row.wall_time_s > 0


def test_study_holds_each_search_trial_with_its_objective(ewc_sweep):
    _, folder = ewc_sweep
    trials = pd.read_parquet(folder / "trials.parquet").set_index("trial_id")
    study = study_trials(folder, "ewc", "permuted-digits/domain/3")
    assert len(study) == 4
    for ot in study:
        assert ot.state == TrialState.COMPLETE
        row = trials.loc[ot.user_attrs["trial_id"]]
        assert ot.value == pytest.approx(row.objective)
        assert ot.params["lambda"] == pytest.approx(row.hp_lambda)


def test_final_phase_reruns_the_best_config_with_fresh_seeds(ewc_sweep):
    _, folder = ewc_sweep
    trials = pd.read_parquet(folder / "trials.parquet")
    search = trials[trials.phase == "search"]
    best = search.loc[search.objective.idxmax()]
    final = trials[trials.phase == "final"]
    assert set(final.config_id) == {best.config_id}
    assert (final.final_rank == 1).all()
    assert (final.hp_lambda == best.hp_lambda).all()
    assert sorted(final.train_seed) == [1000, 1001] and sorted(final.data_seed) == [1000, 1001]
    assert search.final_rank.isna().all()
    study = study_trials(folder, "ewc", "permuted-digits/domain/3", "final")
    # The seed is recorded, not posed as a searched parameter.
    assert sorted(t.user_attrs["seed"] for t in study) == [1000, 1001]
    assert all(set(t.params) == {"lambda"} for t in study)
    assert {t.user_attrs["config_id"] for t in study} == {best.config_id}
    by_id = final.set_index("trial_id")
    for ot in study:
        assert ot.state == TrialState.COMPLETE
        assert ot.value == pytest.approx(by_id.loc[ot.user_attrs["trial_id"]].val_avg_acc)


def test_sweep_json_records_the_run(ewc_sweep):
    spec, folder = ewc_sweep
    doc = json.loads((folder / "sweep.json").read_text())
    assert doc["schema_version"] == SCHEMA_VERSION and doc["name"] == spec.name
    assert doc["space"]["budget"]["trials"] == 4
    assert doc["searched"][0]["column"] == "hp_lambda"
    assert doc["objective"] == {"metrics": ["val_avg_acc"], "modes": ["max"]}
    assert doc["cells"] == ["permuted-digits/domain/3"]
    assert doc["command"] == "pytest" and doc["ended_at"] >= doc["started_at"]
    assert doc["versions"]["ray"] and doc["versions"]["optuna"]
    protocol = doc["protocol"]  # the resolved protocol the report shows
    train = protocol["fixed"]["ewc"]["train"]
    assert train["hidden"] == {"value": [32], "set_by": "space"}
    assert train["val_fraction"] == {"value": 0.1, "set_by": "default"}
    assert "lambda" not in protocol["fixed"]["ewc"]["hyperparams"]  # searched, not fixed
    assert protocol["sampler"]["study_seeds"] == {
        "ewc on permuted-digits/domain/3": cell_sampler_seed(0, "ewc", "permuted-digits/domain/3")
    }
    assert protocol["budget"]["trials_per_cell"] == 4 and protocol["final"]["seeds"] == 2


def test_raising_and_diverging_trials_are_recorded_and_the_sweep_goes_on(local_ray, tmp_path):
    text = """
method: finetune
train: {hidden: "16", epochs: 1, batch_size: 32, optimizer: sgd}
search:
  lr: {type: categorical, choices: [0.05, 0.1, 1.0e20]}
grid: {benchmark: permuted-digits, scenario: domain, n_tasks: 2}
sampler: grid
"""
    spec = load_space(write_space(tmp_path, text, "failing.yaml"))
    folder = run_sweep(spec, Options(out=tmp_path / "out", train_fn=raising_trainer))
    trials = pd.read_parquet(folder / "trials.parquet").set_index("lr")
    assert len(trials) == 3
    ok, raised, diverged = trials.loc[0.05], trials.loc[0.1], trials.loc[1e20]
    assert ok.status == "completed" and ok.tasks_completed == 2 and pd.isna(ok.message)
    assert raised.status == "error" and raised.message == "RuntimeError: boom: injected failure"
    assert raised.tasks_completed == 1 and pd.isna(raised.objective)
    assert diverged.status == "diverged" and "loss became nan" in diverged.message
    assert diverged.tasks_completed == 0 and pd.isna(diverged.objective)
    tasks = pd.read_parquet(folder / "tasks.parquet")
    assert len(tasks[tasks.trial_id == raised.trial_id]) == 2 * 2 * 2  # untrained + 1 task
    states = {
        ot.user_attrs["trial_id"]: ot.state
        for ot in study_trials(folder, "finetune", "permuted-digits/domain/2")
    }
    assert states == {
        ok.trial_id: TrialState.COMPLETE,
        raised.trial_id: TrialState.FAIL,
        diverged.trial_id: TrialState.FAIL,
    }
