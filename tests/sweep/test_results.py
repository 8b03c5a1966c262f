"""The Parquet writer on its own: typed columns, one part per trial, atomic parts, compaction,
tables readable as one by pandas, pyarrow, polars and DuckDB, group-readable files."""

from __future__ import annotations

import json
import os
import stat

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sweep_helpers import TINY_SPACE, write_space

from cl_core.config import RunConfig
from contract import tables
from contract.schema import TASKS_FILE, TASKS_SCHEMA, TRIALS_FILE
from sweep.results import ResultsStore, sweep_trials_schema, trial_rows
from sweep.space import load_space
from sweep.trial_config import TrialPlan, TrialRun, launch_run


def ended_trial(spec, trial_id: str, lam: float) -> tuple[TrialRun, dict]:
    plan = TrialPlan(trial_id, 0, "search", {"lambda": lam}, config_id="c", number=0)
    run = launch_run(RunConfig.from_dict(spec.base_config(*spec.units[0])), plan)
    val = [[0.1, 0.1, 0.1], [0.9, 0.2, 0.1], [0.8, 0.9, 0.1]]
    result = {
        "status": "running", "tasks_completed": 2, "val_avg_acc": 0.85, "test_avg_acc": 0.8,
        "val_bwt": float("nan"), "run_wall_s": 1.5, "device": "cpu", "node": "n",
        "started_at": "a", "ended_at": "b",
        "matrix": json.dumps({"val": val, "test": val, "loss": [None, 0.5, 0.4],
                              "seconds": [0.0, 1.0, 1.0]}),
    }  # fmt: skip
    return run, result


@pytest.fixture
def spec(tmp_path):
    return load_space(write_space(tmp_path, TINY_SPACE))


def test_store_writes_typed_rows_once_per_trial(spec, tmp_path):
    out = tmp_path / "out"
    store = ResultsStore(spec, out)
    row, tasks = trial_rows(spec, *ended_trial(spec, "t1", 10.0))
    assert row["status"] == "stopped" and row["objective"] == 0.85
    assert row["val_bwt"] is None and row["hp_lambda"] == 10.0 and row["hp_fisher"] == "empirical"
    assert (row["model"], row["conv_weights"], row["freeze_conv"]) == ("mlp", None, False)
    assert len(tasks) == 3 * 3 * 2 and tasks[0]["train_loss"] is None
    assert store.add(row, tasks)
    assert not store.add(row, tasks)  # the same trial id again: kept once
    assert [p.name for p in tables.parts(out, TRIALS_FILE)] == ["t1.parquet"]
    table = tables.read_table(out, TRIALS_FILE)
    assert table.schema == sweep_trials_schema(("ewc",)) and table.num_rows == 1
    assert tables.read_table(out, TASKS_FILE).num_rows == 18
    assert not list((out / tables.TMP_DIR).iterdir())  # nothing half-written left behind


def test_cost_of_recording_does_not_depend_on_earlier_trials(spec, tmp_path):
    """Each trial adds its own part; earlier parts are never rewritten."""
    out = tmp_path / "out"
    store = ResultsStore(spec, out)
    for i in range(5):
        store.add(*trial_rows(spec, *ended_trial(spec, f"t{i}", 10.0 + i)))
    first = tables.parts(out, TRIALS_FILE)[0]
    mtime = first.stat().st_mtime_ns
    store.add(*trial_rows(spec, *ended_trial(spec, "t9", 99.0)))
    assert first.stat().st_mtime_ns == mtime
    assert len(tables.parts(out, TRIALS_FILE)) == 6


def test_tables_read_as_one_by_pandas_pyarrow_polars_and_duckdb(spec, tmp_path):
    out = tmp_path / "out"
    store = ResultsStore(spec, out)
    for i in range(3):
        store.add(*trial_rows(spec, *ended_trial(spec, f"t{i}", 1.0 + i)))
    path = str(out / TRIALS_FILE)
    for when in ("mid-sweep", "compacted"):
        assert sorted(pd.read_parquet(path).trial_id) == ["t0", "t1", "t2"], when
        assert pq.read_table(path).num_rows == 3, when
        assert pl.read_parquet(path).height == 3, when
        assert duckdb.sql(f"SELECT count(*) FROM '{path}'").fetchall() == [(3,)], when
        store.compact()
    assert [p.name for p in tables.parts(out, TRIALS_FILE)] == [tables.COMPACTED]
    assert len(pd.read_parquet(out / TASKS_FILE)) == 54


def test_tasks_rows_of_an_unrecorded_trial_are_dropped_on_compaction(spec, tmp_path):
    out = tmp_path / "out"
    store = ResultsStore(spec, out)
    store.add(*trial_rows(spec, *ended_trial(spec, "t1", 10.0)))
    # A crash between the two parts of t2: its tasks part landed, its trials part did not.
    _, t2_tasks = trial_rows(spec, *ended_trial(spec, "t2", 10.0))
    tables.write_part(out, TASKS_FILE, pd.DataFrame(t2_tasks).pipe(_arrow), "t2")
    reloaded = ResultsStore(spec, out)
    assert reloaded.ids == {"t1"}
    reloaded.compact()
    assert set(pd.read_parquet(out / TASKS_FILE).trial_id) == {"t1"}


def test_a_sweep_whose_trials_all_failed_before_a_task_compacts(spec, tmp_path):
    """Trials that end before their first task have no tasks rows: every tasks part is empty,
    and compaction must still merge them (it once failed on the empty filter's type)."""
    out = tmp_path / "out"
    store = ResultsStore(spec, out)
    for i in range(2):
        row, _ = trial_rows(spec, *ended_trial(spec, f"t{i}", 10.0))
        assert store.add(row, [])
    store.compact()
    assert pd.read_parquet(out / TASKS_FILE).empty
    assert sorted(pd.read_parquet(out / TRIALS_FILE).trial_id) == ["t0", "t1"]


def _arrow(frame: pd.DataFrame):
    import pyarrow as pa

    return pa.Table.from_pandas(frame, schema=TASKS_SCHEMA, preserve_index=False)


def test_an_interrupted_compaction_is_finished_or_undone(spec, tmp_path):
    out = tmp_path / "out"
    store = ResultsStore(spec, out)
    for i in range(3):
        store.add(*trial_rows(spec, *ended_trial(spec, f"t{i}", 1.0 + i)))
    # Crash after the old folder moved aside, before the compacted one moved in.
    tmp = out / tables.TMP_DIR
    new = tmp / f"{TRIALS_FILE}.new-x"
    new.mkdir()
    tables.write_file(out, tables.read_table(out, TRIALS_FILE), new / tables.COMPACTED)
    os.replace(out / TRIALS_FILE, tmp / f"{TRIALS_FILE}.old-x")
    assert not tables.exists(out, TRIALS_FILE)
    tables.recover(out, TRIALS_FILE)
    assert tables.read_table(out, TRIALS_FILE).num_rows == 3
    assert not list(tmp.glob(f"{TRIALS_FILE}.*"))


def test_a_damaged_part_is_named(spec, tmp_path):
    out = tmp_path / "out"
    store = ResultsStore(spec, out)
    store.add(*trial_rows(spec, *ended_trial(spec, "t1", 10.0)))
    (out / TRIALS_FILE / "t1.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(tables.TableError, match=r"t1\.parquet is not readable Parquet"):
        ResultsStore(spec, out)


def test_files_follow_the_umask(spec, tmp_path):
    """Results on shared storage must be readable by the lab's group (no 0600 temp files)."""
    old = os.umask(0o002)
    try:
        store = ResultsStore(spec, tmp_path / "out")
        store.add(*trial_rows(spec, *ended_trial(spec, "t1", 10.0)))
        store.compact()
    finally:
        os.umask(old)
    for path in (tmp_path / "out").rglob("*.parquet"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o664, path


def test_error_from_tune_overrides_the_last_report(spec):
    row, _ = trial_rows(spec, *ended_trial(spec, "t1", 10.0), error_message="worker died")
    assert row["status"] == "error" and row["message"] == "worker died"
    assert row["objective"] is None


def test_several_methods_share_one_schema():
    names = sweep_trials_schema(("finetune", "ewc", "lwf")).names
    assert {"hp_lambda", "hp_temperature", "hp_weight"} <= set(names)
    assert load_space("baseline.yaml").methods == ("finetune", "joint")


def test_curve_rows_land_in_their_own_part_and_compaction_keeps_recorded_trials(spec, tmp_path):
    """A stream run's curve (sweep/curves.py) is written as the trial's curves part, before its
    trials part; curves of a trial whose trials part never landed are dropped on compaction."""
    from types import SimpleNamespace

    from contract.schema import CURVES_FILE, CURVES_SCHEMA
    from sweep.curves import curve_rows, encode_curve

    points = [
        SimpleNamespace(iteration=i, tasks_seen=1 + i // 20, task=j, split=s, accuracy=0.5)
        for i in (0, 10, 20)
        for j in range(3)
        for s in ("val", "test")
    ]
    out = tmp_path / "out"
    store = ResultsStore(spec, out)
    run, result = ended_trial(spec, "t1", 10.0)
    result["curve"] = encode_curve(points)
    row, tasks = trial_rows(spec, run, result)
    curves = curve_rows(row, result)
    assert len(curves) == 18 and curves[3] == {
        "schema_version": row["schema_version"], "sweep": row["sweep"], "trial_id": "t1",
        "phase": "search", "iteration": 0, "tasks_seen": 1, "task": 1, "split": "test",
        "accuracy": 0.5,
    }  # fmt: skip
    assert store.add(row, tasks, curves)
    assert [p.name for p in tables.parts(out, CURVES_FILE)] == ["t1.parquet"]
    assert tables.read_table(out, CURVES_FILE).schema == CURVES_SCHEMA
    store.add(*trial_rows(spec, *ended_trial(spec, "t2", 10.0)))  # task-based: no curve
    assert len(tables.parts(out, CURVES_FILE)) == 1
    # A crash between t3's curves part and its trials part.
    t3_row, _ = trial_rows(spec, *ended_trial(spec, "t3", 10.0))
    t3 = curve_rows(t3_row, result)
    tables.write_part(out, CURVES_FILE, pa.Table.from_pylist(t3, schema=CURVES_SCHEMA), "t3")
    reloaded = ResultsStore(spec, out)
    reloaded.compact()
    kept = pd.read_parquet(out / CURVES_FILE)
    assert set(kept.trial_id) == {"t1"} and len(kept) == 18
    assert [p.name for p in tables.parts(out, CURVES_FILE)] == [tables.COMPACTED]


def test_parts_written_before_a_settings_column_existed_are_compacted_with_nulls(spec, tmp_path):
    """A sweep resumed after an upgrade that added settings columns (the stream settings) within
    one schema version: its older parts lack them; compaction keeps their rows, null there."""
    out = tmp_path / "out"
    store = ResultsStore(spec, out)
    added = ("stream", "update_every", "transition", "eval_every")
    old_schema = pa.schema([f for f in store.schema if f.name not in added])
    row, tasks = trial_rows(spec, *ended_trial(spec, "t1", 10.0))
    old_row = {k: v for k, v in row.items() if k not in added}
    tables.write_part(out, TASKS_FILE, pa.Table.from_pylist(tasks, schema=TASKS_SCHEMA), "t1")
    tables.write_part(out, TRIALS_FILE, pa.Table.from_pylist([old_row], schema=old_schema), "t1")
    resumed = ResultsStore(spec, out)
    resumed.add(*trial_rows(spec, *ended_trial(spec, "t2", 20.0)))
    resumed.compact()
    table = tables.read_table(out, TRIALS_FILE)
    assert table.schema == store.schema
    rows = {r["trial_id"]: r for r in table.to_pylist()}
    assert rows["t1"]["stream"] is None and rows["t1"]["hp_lambda"] == 10.0
    assert rows["t2"]["stream"] == "none" and rows["t2"]["update_every"] == 100
