"""The Parquet writer on its own: typed columns, one row per trial id, atomic rewrites."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
from sweep_helpers import TINY_SPACE, write_space

from sweep.results import TASKS_SCHEMA, ResultsStore, trial_rows, trials_schema, write_atomic
from sweep.space import load_space
from sweep.trial_config import param_space


def ended_trial(spec, lam: float) -> tuple[dict, dict]:
    config = {**param_space(spec, "ewc", spec.cells[0], "search"), "lambda": lam}
    val = [[0.1, 0.1, 0.1], [0.9, 0.2, 0.1], [0.8, 0.9, 0.1]]
    result = {
        "status": "running", "tasks_completed": 2, "val_avg_acc": 0.85, "test_avg_acc": 0.8,
        "val_bwt": float("nan"), "run_wall_s": 1.5, "device": "cpu", "node": "n",
        "started_at": "a", "ended_at": "b",
        "matrix": json.dumps({"val": val, "test": val, "loss": [None, 0.5, 0.4],
                              "seconds": [0.0, 1.0, 1.0]}),
    }  # fmt: skip
    return config, result


def test_store_writes_typed_rows_once_per_trial(tmp_path):
    spec = load_space(write_space(tmp_path, TINY_SPACE))
    store = ResultsStore(spec, tmp_path / "out")
    config, result = ended_trial(spec, 10.0)
    row, tasks = trial_rows(spec, "t1", config, result)
    assert row["status"] == "stopped" and row["objective"] == 0.85
    assert row["val_bwt"] is None and row["hp_lambda"] == 10.0 and row["hp_fisher"] == "empirical"
    assert (row["model"], row["conv_weights"], row["freeze_conv"]) == ("mlp", None, False)
    assert len(tasks) == 3 * 3 * 2 and tasks[0]["train_loss"] is None
    assert store.add(row, tasks)
    assert not store.add(row, tasks)  # the same trial id again: kept once
    table = pq.read_table(tmp_path / "out" / "trials.parquet")
    assert table.schema == trials_schema(("ewc",)) and table.num_rows == 1
    assert pq.read_table(tmp_path / "out" / "tasks.parquet").num_rows == 18
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def test_tasks_rows_of_an_unrecorded_trial_are_dropped_on_load(tmp_path):
    spec = load_space(write_space(tmp_path, TINY_SPACE))
    store = ResultsStore(spec, tmp_path / "out")
    config, result = ended_trial(spec, 10.0)
    store.add(*trial_rows(spec, "t1", config, result))
    # A crash between the two writes: tasks.parquet has t2, trials.parquet does not.
    store.tasks.extend(trial_rows(spec, "t2", config, result)[1])
    write_atomic(pa.Table.from_pylist(store.tasks, schema=TASKS_SCHEMA), store.tasks_path)
    reloaded = ResultsStore(spec, tmp_path / "out")
    assert {r["trial_id"] for r in reloaded.tasks} == {"t1"}
    assert reloaded.add(*trial_rows(spec, "t2", config, result))
    assert len(reloaded.tasks) == 36


def test_error_from_tune_overrides_the_last_report(tmp_path):
    spec = load_space(write_space(tmp_path, TINY_SPACE))
    config, result = ended_trial(spec, 10.0)
    row, _ = trial_rows(spec, "t1", config, result, error_message="worker died")
    assert row["status"] == "error" and row["message"] == "worker died"
    assert row["objective"] is None


def test_several_methods_share_one_schema():
    names = trials_schema(("finetune", "ewc", "lwf")).names
    assert {"hp_lambda", "hp_temperature", "hp_weight"} <= set(names)
    assert load_space("baseline.yaml").methods == ("finetune", "joint")
