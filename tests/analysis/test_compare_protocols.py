"""``clsweep compare-protocols``: one space under several selection protocols, side by side.

The sweeps are written by hand with the contract's schema (trials_schema, TASKS_SCHEMA), with
known numbers: which configuration each protocol chose, its test mean ± SEM, the ranks, the
reading of ranking changes, the cost, and exit code 2 on bad input. One test builds a report of
two real fixture sweeps relabelled as two protocols and finds the new section in it.
"""

from __future__ import annotations

import html
import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.__main__ import main as analysis_main
from analysis.compare_protocols import compare_protocols
from clsweep.cli import main as clsweep_main
from contract.schema import TASKS_SCHEMA, trials_schema

CELL = "permuted-digits/domain/4"
HYPERPARAMS = [("lambda", "float"), ("c", "float"), ("alpha", "float")]
SEARCHED = [
    {"name": "lambda", "column": "hp_lambda", "distribution": "loguniform", "methods": ["ewc"],
     "low": 1.0, "high": 1e4, "log": True},
    {"name": "c", "column": "hp_c", "distribution": "loguniform", "methods": ["si"],
     "low": 0.01, "high": 10.0, "log": True},
    {"name": "alpha", "column": "hp_alpha", "distribution": "uniform", "methods": ["derpp"],
     "low": 0.0, "high": 1.0, "log": False},
    {"name": "lr", "column": "lr", "distribution": "loguniform",
     "methods": ["ewc", "si", "er", "derpp"], "low": 1e-4, "high": 0.1, "log": True},
]  # fmt: skip
KNOB = {"ewc": "lambda", "si": "c", "derpp": "alpha", "er": None}
SEARCH_S, FINAL_S = 360.0, 720.0  # CPU-seconds of each search and final trial
SPREAD = (-0.01, 0.0, 0.01)  # final-phase seeds scatter around the mean: SEM = 0.01 / sqrt(3)


def _trial(sweep: str, method: str, phase: str, config: tuple, **row) -> dict:
    """A trials.parquet row: ``config`` = (config_id, knob value, lr)."""
    config_id, knob, lr = config
    benchmark, scenario, n_tasks = row.pop("cell", CELL).split("/")
    study = row.pop("study", CELL)
    base = {
        "schema_version": 5, "sweep": sweep, "phase": phase, "cell": study, "config_id": config_id,
        "method": method, "benchmark": benchmark, "scenario": scenario, "n_tasks": int(n_tasks),
        "task_start": 0, "data_seed": 0, "train_seed": 0, "lr": lr, "optimizer": "adam",
        "status": "completed", "tasks_completed": 4, "device": "cpu", "wall_time_s": 1.0,
        "cpu_time_s": SEARCH_S if phase == "search" else FINAL_S, "gpu_time_s": 0.0,
    }  # fmt: skip
    if KNOB[method]:
        base[f"hp_{KNOB[method]}"] = knob
    base.update(row)
    base["objective"] = base.get("val_avg_acc")
    return base


def _study(
    sweep: str, method: str, finals: dict[int, float], k: int = 0, tune: str = CELL
) -> list[dict]:
    """Three search trials (configs a, b, c; b has the best validation value) and the final phase
    (rank r re-runs config a, b, c in the order b, a, c) with three seeds each around the
    given test means, on CELL. ``k``: the first-tasks window; ``tune``: the cell searched (a
    transfer sweep's, where the study is named)."""
    configs = {
        "a": (f"{method}-a", 10.0, 0.01),
        "b": (f"{method}-b", 123.456789, 0.001),
        "c": (f"{method}-c", 2000.0, 0.05),
    }
    vals = {"a": 0.70, "b": 0.80, "c": 0.60}
    window = {"task_stop": k} if k else {}
    rows = [
        _trial(sweep, method, "search", configs[name], trial_id=f"{method}-s{i}", cell=tune,
               study=tune, val_avg_acc=vals[name], test_avg_acc=vals[name] - 0.05, **window)
        for i, name in enumerate("abc")
    ]  # fmt: skip
    window = {"task_start": k} if k else {}
    for rank, mean in finals.items():
        name = "bac"[rank - 1]
        for offset, seed in zip(SPREAD, (1000, 1001, 1002), strict=True):
            rows.append(
                _trial(sweep, method, "final", configs[name], final_rank=rank,
                       trial_id=f"{method}-final-{name}-{seed}", data_seed=seed, train_seed=seed,
                       val_avg_acc=0.5, test_avg_acc=mean + offset, study=tune, **window)
            )  # fmt: skip
    return rows


def _write_sweep(folder: Path, name: str, rows: list[dict], selection: dict | None) -> Path:
    """A sweep folder as python -m sweep writes it (single-file tables, as schema 1 had)."""
    path = folder / name
    path.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=trials_schema(HYPERPARAMS)),
                   path / "trials.parquet")  # fmt: skip
    pq.write_table(pa.Table.from_pylist([], schema=TASKS_SCHEMA), path / "tasks.parquet")
    meta = {
        "schema_version": 5,
        "name": name,
        "methods": sorted({r["method"] for r in rows}),
        "searched": SEARCHED,
        "objective": {"metrics": ["val_avg_acc"], "modes": ["max"]},
        "cells": [CELL],
    }
    if selection is not None:
        meta["selection"] = selection
    (path / "sweep.json").write_text(json.dumps(meta))
    return path


# test means of the rank-1 configuration per protocol; derpp is not run under transfer
EOS = {"derpp": 0.90, "er": 0.85, "ewc": 0.80, "si": 0.75}
FIRST = {"derpp": 0.88, "ewc": 0.84, "er": 0.82, "si": 0.70}
TRANSFER = {"er": 0.70, "ewc": 0.60, "si": 0.50}


@pytest.fixture
def sweeps(tmp_path: Path) -> list[Path]:
    """The space run under end-of-sequence (no selection record, as older sweeps),
    first-tasks (k = 2) and transfer (searched on permuted-mnist, evaluated on CELL, cost not
    recorded): all three report on CELL, where they are compared."""
    eos = [r for m, v in EOS.items() for r in _study("eos", m, {1: v, 2: 0.99})]
    first = [r for m, v in FIRST.items() for r in _study("ft", m, {1: v}, k=2)]
    transfer = [
        r | {"cpu_time_s": None, "gpu_time_s": None}
        for m, v in TRANSFER.items()
        for r in _study("tr", m, {1: v}, tune="permuted-mnist/domain/4")
    ]
    tuned = "permuted-mnist/domain/4"
    return [
        _write_sweep(tmp_path, "eos", eos, None),
        _write_sweep(tmp_path, "ft", first, {
            "protocol": "first-tasks", "tasks": 2, "evaluated_on": {CELL: CELL},
            "described": {CELL: f"first-tasks: searched on tasks 0-1 of {CELL}; final phase "
                                "learns and reports tasks 2-3 alone"}}),
        _write_sweep(tmp_path, "tr", transfer, {
            "protocol": "transfer", "evaluate": {"benchmark": "permuted-digits"},
            "evaluated_on": {tuned: CELL},
            "described": {tuned: f"transfer: searched on {tuned}; final phase on {CELL}, "
                                 "reported alone"}}),
    ]  # fmt: skip


def _row(rows: pd.DataFrame, method: str, protocol: str) -> pd.Series:
    found = rows[(rows["method"] == method) & (rows["protocol"] == protocol)]
    assert len(found) == 1
    return found.iloc[0]


def test_chosen_configs_means_ranks_and_cost(sweeps):
    comparison = compare_protocols(sweeps)
    rows = comparison.rows
    assert list(comparison.protocols) == ["end-of-sequence", "first-tasks", "transfer"]
    assert list(rows["method"].drop_duplicates()) == ["ewc", "si", "er", "derpp"]
    assert len(rows) == 4 * 3  # derpp's transfer row is kept, blank
    expected_sem = 0.01 / math.sqrt(3)
    for protocol, means in (("end-of-sequence", EOS), ("first-tasks", FIRST),
                            ("transfer", TRANSFER)):  # fmt: skip
        order = sorted(means, key=means.get, reverse=True)
        for method, mean in means.items():
            row = _row(rows, method, protocol)
            # rank 1 of the final phase: config b, never rank 2's better test number (0.99)
            assert row["config_id"] == f"{method}-b" and row["source"] == "final"
            assert row["test_avg_acc_mean"] == pytest.approx(mean)
            assert row["test_avg_acc_sem"] == pytest.approx(expected_sem)
            assert row["n"] == 3 and row["seeds"] == "1000, 1001, 1002"
            assert row["rank"] == order.index(method) + 1
    ewc = _row(rows, "ewc", "end-of-sequence")
    assert ewc["params"] == "lambda=123.456789, lr=0.001"
    assert ewc["params_shown"] == "lambda=123.5, lr=0.001"
    assert _row(rows, "er", "first-tasks")["params"] == "lr=0.001"
    # cost: 3 search + 6 final trials (two ranks) under end-of-sequence, 3 + 3 otherwise
    assert ewc["search_trials"] == 3 and ewc["final_trials"] == 6
    assert ewc["cpu_time_s"] == pytest.approx(3 * SEARCH_S + 6 * FINAL_S)  # 1.5 h
    assert ewc["gpu_time_s"] == 0
    first = _row(rows, "ewc", "first-tasks")
    assert first["cpu_time_s"] == pytest.approx(3 * SEARCH_S + 3 * FINAL_S)  # 0.9 h
    assert math.isnan(_row(rows, "ewc", "transfer")["cpu_time_s"])
    # where it was searched and reported
    assert ewc["searched_on"] == f"{CELL}, all 4 tasks" == ewc["reported_on"]
    assert first["searched_on"] == f"{CELL}, tasks 0-1"
    assert first["reported_on"] == f"{CELL}, tasks 2-3"
    assert (first["task_start"], first["task_stop"]) == (2, 4)
    transfer = _row(rows, "ewc", "transfer")
    assert transfer["searched_on"] == "permuted-mnist/domain/4, all 4 tasks"
    assert transfer["reported_on"] == f"{CELL}, all 4 tasks"
    assert transfer["reported_benchmark"] == "permuted-digits"
    assert set(rows["cell"]) == {"permuted-digits/domain"}  # compared where they report
    blank = _row(rows, "derpp", "transfer")
    assert blank["source"] == "not run" and pd.isna(blank["rank"]) and pd.isna(blank["sweep"])


def test_display_and_numbers(sweeps):
    comparison = compare_protocols(sweeps)
    display = comparison.display
    assert list(display.columns) == [
        "cell", "method", "protocol", "searched on", "configuration", "reported on",
        "test avg. acc. (%)", "rank", "trials (search + final)", "CPU time", "GPU time",
    ]  # fmt: skip
    shown = display.set_index(["method", "protocol"])
    ewc = shown.loc[("ewc", "end-of-sequence")]
    assert ewc["configuration"] == "lambda=123.5, lr=0.001"
    where = ewc[["cell", "searched on", "reported on"]].tolist()
    assert where == ["permuted-digits/domain", f"{CELL}, all 4 tasks", f"{CELL}, all 4 tasks"]
    assert shown.loc[("ewc", "first-tasks"), "searched on"] == f"{CELL}, tasks 0-1"
    assert shown.loc[("ewc", "first-tasks"), "reported on"] == f"{CELL}, tasks 2-3"
    assert shown.loc[("ewc", "transfer"), "searched on"] == "permuted-mnist/domain/4, all 4 tasks"
    assert ewc["test avg. acc. (%)"] == "80.0 ± 0.6 (n=3)"
    assert ewc["rank"] == "3"
    assert ewc["trials (search + final)"] == "3 + 6"
    assert (ewc["CPU time"], ewc["GPU time"]) == ("1 h 30 min", "0.0 s")
    assert shown.loc[("ewc", "first-tasks"), "CPU time"] == "54 min 00 s"
    assert shown.loc[("ewc", "transfer"), "CPU time"] == "not recorded"
    assert shown.loc[("ewc", "transfer"), "GPU time"] == "not recorded"
    derpp = shown.loc[("derpp", "transfer")]
    assert derpp["configuration"] == "not run"
    assert (derpp["test avg. acc. (%)"], derpp["rank"], derpp["CPU time"]) == ("", "", "")
    numbers = comparison.numbers.set_index(["method", "protocol"])
    assert numbers.loc[("si", "first-tasks"), "test_avg_acc_mean_pct"] == pytest.approx(70.0)
    assert numbers.loc[("ewc", "end-of-sequence"), "cpu_hours"] == pytest.approx(1.5)
    caption = comparison.caption
    assert "end-of-sequence (sweep eos): searched on the validation data of every task" in caption
    assert "| first-tasks (sweep ft): searched on tasks 0-1 of" in caption
    tuned = "permuted-mnist/domain/4"
    assert f"| transfer (sweep tr): searched on {tuned}; final phase on {CELL}" in caption


def test_reading_says_which_rankings_change(sweeps):
    assert compare_protocols(sweeps).reading == [
        "ranking end-of-sequence: derpp > er > ewc > si; first-tasks: derpp > ewc > er > si: "
        "changes",
        "ranking end-of-sequence: er > ewc > si; transfer: er > ewc > si: unchanged "
        "(not under both: derpp)",
        "ranking first-tasks: ewc > er > si; transfer: er > ewc > si: changes "
        "(not under both: derpp)",
    ]


def test_no_final_phase_takes_the_best_search_trial(tmp_path: Path, sweeps):
    """Without a final phase: the best completed search trial by the objective (validation),
    its test value on one seed; a tie in the means is written with '='."""
    rows = [r for m in ("ewc", "si") for r in _study("old", m, {}) if r["phase"] == "search"]
    old = _write_sweep(tmp_path / "more", "old", rows, {"protocol": "end-of-sequence"})
    comparison = compare_protocols([old, sweeps[1]])
    ewc = _row(comparison.rows, "ewc", "end-of-sequence")
    assert ewc["source"] == "search" and ewc["config_id"] == "ewc-b"  # val 0.80, not test
    assert ewc["test_avg_acc_mean"] == pytest.approx(0.75) and ewc["n"] == 1
    assert math.isnan(ewc["test_avg_acc_sem"])
    shown = comparison.display.set_index(["method", "protocol"])
    assert shown.loc[("ewc", "end-of-sequence"), "test avg. acc. (%)"] == "75.0 (n=1)"
    assert shown.loc[("ewc", "end-of-sequence"), "configuration"] == (
        "lambda=123.5, lr=0.001 (best search trial: no final phase)"
    )
    assert comparison.reading[0] == (
        "ranking end-of-sequence: ewc = si; first-tasks: ewc > si: changes "
        "(not under both: er, derpp)"
    )


def _one_error_line(capsys, text: str) -> None:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], err


def test_cli_prints_and_writes(sweeps, tmp_path: Path, capsys):
    out = tmp_path / "out"
    assert clsweep_main(["compare-protocols", *map(str, sweeps), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Selection protocols compared\n  end-of-sequence: sweep eos\n")
    assert "| ewc      | end-of-sequence |" in printed
    assert "80.0 ± 0.6 (n=3)" in printed
    assert "derpp > er > ewc > si; first-tasks: derpp > ewc > er > si: changes" in printed
    for suffix in (".md", ".csv", ".tex"):
        assert (out / f"protocols{suffix}").stat().st_size > 0
    markdown = (out / "protocols.md").read_text()
    assert markdown.startswith("Selection protocols compared: ")
    assert "- ranking end-of-sequence: er > ewc > si; transfer: er > ewc > si: unchanged" in (
        markdown
    )
    csv = pd.read_csv(out / "protocols.csv")
    assert len(csv) == 12
    ewc = csv[(csv["method"] == "ewc") & (csv["protocol"] == "first-tasks")].iloc[0]
    assert ewc["test_avg_acc_mean_pct"] == pytest.approx(84.0) and ewc["rank"] == 2
    assert ewc["params"] == "lambda=123.456789, lr=0.001" and ewc["task_start"] == 2
    assert "\\toprule" in (out / "protocols.tex").read_text()


def test_bad_input_is_one_line_and_exit_2(sweeps, tmp_path: Path, capsys):
    assert analysis_main(["compare-protocols", str(tmp_path / "nope")]) == 2
    _one_error_line(capsys, "does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert clsweep_main(["compare-protocols", str(sweeps[0]), str(empty)]) == 2
    _one_error_line(capsys, "is not a sweep")
    assert clsweep_main(["compare-protocols", str(sweeps[0])]) == 2
    _one_error_line(capsys, "ran the end-of-sequence selection protocol")
    again = tmp_path / "again"
    shutil.copytree(sweeps[1], again / "ft2")
    meta = json.loads((again / "ft2" / "sweep.json").read_text())
    (again / "ft2" / "sweep.json").write_text(json.dumps(meta | {"name": "ft2"}))
    assert clsweep_main(["compare-protocols", str(sweeps[0]), str(sweeps[1]), str(again)]) == 2
    _one_error_line(
        capsys, "derpp reported on permuted-digits/domain under first-tasks in sweeps ft and ft2"
    )
    with pytest.raises(SystemExit) as usage:  # argparse exits, as for every subcommand
        clsweep_main(["compare-protocols"])
    assert usage.value.code == 2
    _one_error_line(capsys, "the following arguments are required: results")


def test_protocol_settings_tell_apart_two_runs_of_one_protocol(sweeps, tmp_path: Path):
    """first-tasks with k = 2 and with k = 3 are two protocols of the comparison."""
    rows = [r for m, v in FIRST.items() for r in _study("ft3", m, {1: v - 0.1}, k=3)]
    ft3 = _write_sweep(tmp_path / "k3", "ft3", rows, {"protocol": "first-tasks", "tasks": 3})
    comparison = compare_protocols([sweeps[1], ft3])
    assert list(comparison.protocols) == ["first-tasks (tasks=2)", "first-tasks (tasks=3)"]
    assert comparison.reading == [
        "ranking first-tasks (tasks=2): derpp > ewc > er > si; first-tasks (tasks=3): "
        "derpp > ewc > er > si: unchanged"
    ]
    # ft3 records no description of its cells: the caption never borrows end-of-sequence's
    assert "first-tasks (tasks=3) (sweep ft3): tasks=3; sweep.json does not describe" in (
        comparison.caption
    )


def test_report_has_the_section_with_two_protocols(tmp_path: Path):
    """Two real sweeps (the schema-4 fixture, once as recorded, once relabelled first-tasks
    with er's final numbers lowered): the report gains the section, table and reading."""
    from analysis.report import build_report

    fixture = Path(__file__).parent / "fixtures_v4" / "two-methods"
    eos, first = tmp_path / "eos", tmp_path / "first"
    shutil.copytree(fixture, eos)
    shutil.copytree(fixture, first)
    meta = json.loads((first / "sweep.json").read_text())
    meta["name"] = "two-methods-first"
    meta["selection"] = {"protocol": "first-tasks", "tasks": 1, "described": {
        c: f"first-tasks: searched on tasks 0-0 of {c}; final phase learns and reports tasks "
           "1-2 alone" for c in meta["cells"]}}  # fmt: skip
    (first / "sweep.json").write_text(json.dumps(meta))
    trials = pd.read_parquet(first / "trials.parquet")
    lowered = (trials["method"] == "er") & (trials["phase"] == "final")
    trials.loc[lowered, "test_avg_acc"] = 0.05
    shutil.rmtree(first / "trials.parquet")
    trials.to_parquet(first / "trials.parquet")
    report = build_report([eos, first], tmp_path / "report")
    page = html.unescape(report.html.read_text())
    section = page.split("<h2>Selection protocols compared", 1)[1].split("<h2>", 1)[0]
    assert "Selection protocols compared: for each method" in section
    assert "end-of-sequence (sweep two-methods): searched on the validation data" in section
    assert "| first-tasks (sweep two-methods-first): searched on tasks 0-0" in section
    assert (
        "Reading: permuted-digits/domain: ranking end-of-sequence: er > finetune; first-tasks: "
        "finetune > er: changes. permuted-digits/class: ranking" in section
    )
    assert page.index("<h2>Selection protocols compared") < page.index("<h2>Figures")
    assert (tmp_path / "report" / "tables" / "protocols.csv").is_file()
    assert any(p.name == "protocols.md" for p in report.tables)
