"""Cost in the report (schema 4) and the CLEVA-Compass export, on a real two-method sweep; older
sweeps (the schema-1 fixtures) still load and read "not recorded" where cost is missing."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from analysis_fixtures import FIXTURES

from analysis.compass import COLORS, INNER_LEVEL, OUTER_LEVEL, compass_entries, problems
from analysis.cost import ALL, cost_display, cost_numbers
from analysis.load import load_results
from analysis.plots import plot_accuracy_cost
from analysis.tables import best_configs

REPO = Path(__file__).resolve().parents[2]
TWO_METHODS = Path(__file__).parent / "fixtures_v4" / "two-methods"

COMPASS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["entries"],
    "additionalProperties": False,
    "properties": {
        "entries": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["color", "label", "inner_level", "outer_level"],
                "additionalProperties": False,
                "properties": {
                    "color": {"enum": list(COLORS)},
                    "label": {"type": "string", "minLength": 1},
                    "inner_level": {
                        "type": "object",
                        "required": list(INNER_LEVEL),
                        "additionalProperties": False,
                        "properties": {k: {"enum": [0, 1, 2]} for k in INNER_LEVEL},
                    },
                    "outer_level": {
                        "type": "object",
                        "required": list(OUTER_LEVEL),
                        "additionalProperties": False,
                        "properties": {k: {"type": "boolean"} for k in OUTER_LEVEL},
                    },
                },
            },
        }
    },
}
"""The compass repository's README, "JSON Data Format" (github.com/ml-research/CLEVA-Compass;
Mundt et al. 2022), written as a JSON Schema: it publishes none. The key names are those its
create_compass.py reads; the colours those the README lists."""


@pytest.fixture(scope="module")
def two() -> object:
    return load_results(TWO_METHODS)


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return pd.read_parquet(TWO_METHODS / "trials.parquet")


def test_cost_table_sums_the_raw_rows(two, raw):
    numbers = cost_numbers(two).set_index("method")
    assert list(numbers.index) == ["finetune", "er", ALL]
    for method in ("finetune", "er"):
        mine = raw[raw["method"] == method]
        for phase in ("search", "final"):
            part = mine[mine["phase"] == phase]
            assert numbers.loc[method, f"{phase}_trials"] == len(part)
            for column in ("wall_time_s", "cpu_time_s", "gpu_time_s"):
                assert numbers.loc[method, f"{phase}_{column}"] == pytest.approx(part[column].sum())
        assert numbers.loc[method, "max_trainable_params"] == mine["trainable_params"].max()
    total = numbers.loc[ALL]
    assert total["search_trials"] + total["final_trials"] == len(raw)
    assert total["search_cpu_time_s"] == pytest.approx(
        raw.loc[raw["phase"] == "search", "cpu_time_s"].sum()
    )
    # the known budget: ER keeps 10 samples per class of 3 permuted tasks x 10 digits
    assert numbers.loc["er", "max_stored_samples"] == 10 * 3 * 10
    assert numbers.loc["finetune", "max_stored_samples"] == 0
    assert math.isnan(numbers.loc["er", "max_peak_memory_bytes"])  # a CPU reports no peak
    shown = cost_display(cost_numbers(two)).set_index("method")
    assert shown.loc["er", "stored samples"] == "300"
    assert shown.loc["er", "trials (search / final)"] == "8 / 4"
    assert shown.loc["er", "peak memory (MiB)"] == "–"


def test_older_sweeps_still_load_and_read_not_recorded():
    """Schema-1 sweeps (no cost columns) beside a schema-4 one: one report, cost where known."""
    results = load_results([FIXTURES / "quickstart", TWO_METHODS])
    assert set(results.trials["schema_version"]) == {1, 4}
    shown = cost_display(cost_numbers(results))
    old = shown[shown["sweep"] == "quickstart"].iloc[0]
    assert old["CPU time (search / final)"] == "not recorded"
    assert old["trainable parameters"] == "–"
    assert old["trial time (search / final)"] != "not recorded"  # wall time was always there
    new = shown[shown["sweep"] == "two-methods"]
    assert (new["CPU time (search / final)"] != "not recorded").all()


def test_accuracy_cost_figure_draws_each_chosen_configuration(two, raw):
    best = best_configs(two)
    fig = plot_accuracy_cost(two, best)
    drawn = {}
    for ax in fig.axes:
        for bar in ax.containers:  # one error bar per method: its point is lines[0]
            x, y = bar.lines[0].get_data()
            drawn[(ax.get_title(), bar.get_label().split(" ")[0])] = (x[0], y[0])
    assert len(drawn) == len(best) == 4
    for _, row in best.iterrows():
        title = next(t for t, m in drawn if m == row["method"] and row["scenario"].title() in t)
        x, y = drawn[(title, row["method"])]
        study = raw[(raw["method"] == row["method"]) & (raw["scenario"] == row["scenario"])]
        assert x == pytest.approx(study["cpu_time_s"].sum() / 3600)  # search + final
        assert y == pytest.approx(100 * row["test_avg_acc_mean"])
    assert fig.axes[0].get_xscale() == "log"
    assert "CPU-hours" in fig.axes[0].get_xlabel()


def test_compass_of_a_two_method_sweep_validates(two):
    document = {"entries": compass_entries(two, "two-methods")}
    assert problems(document) == []
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(document, COMPASS_SCHEMA)
    finetune, er = document["entries"]
    assert finetune["label"].startswith("finetune") and er["label"].startswith("er")
    assert finetune["color"] != er["color"]
    # set-up from the declarations: ER declares a memory, selected at random (unsupervised)
    assert er["inner_level"]["episodic_memory"] == 2
    assert finetune["inner_level"]["episodic_memory"] == 0
    for entry in (finetune, er):
        assert entry["inner_level"]["task_agnostic"] == 2  # ran domain- and class-IL
        assert entry["inner_level"]["generative"] == entry["inner_level"]["online"] == 0
        outer = entry["outer_level"]
        assert outer["compute_time"] and outer["parameters"] and outer["stored_data"]
        assert outer["forgetting"] and outer["backward_transfer"] and outer["per_task_metric"]
        assert not outer["memory"]  # CPU: no peak memory recorded
        assert not outer["mac_operations"] and not outer["generated_data"]


def test_compass_of_an_older_sweep_marks_what_it_lacks():
    results = load_results(FIXTURES / "quickstart")
    (entry,) = compass_entries(results, "quickstart")
    assert problems({"entries": [entry]}) == []
    assert entry["outer_level"]["compute_time"]  # wall time
    assert not entry["outer_level"]["parameters"] and not entry["outer_level"]["stored_data"]


def test_problems_names_what_departs_from_the_format(two):
    (entry, _) = compass_entries(two, "two-methods")
    assert problems({"entries": [dict(entry, color="red")]}) == [
        f"entries[0].color 'red' is not one of {COLORS}"
    ]
    bad = dict(entry, inner_level={**entry["inner_level"], "online": 3})
    assert problems({"entries": [bad]}) == ["entries[0].inner_level.online = 3"]
    bad = dict(entry, outer_level={**entry["outer_level"], "memory": 1})
    assert problems({"entries": [bad]}) == ["entries[0].outer_level.memory = 1"]
    missing = dict(
        entry, outer_level={k: v for k, v in entry["outer_level"].items() if k != "memory"}
    )
    assert "exactly the keys" in problems({"entries": [missing]})[0]
    assert problems({"entries": [], "extra": 1}) != []


def test_report_compass_cli_writes_valid_files(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-m", "clsweep", "report", str(TWO_METHODS), "--out", str(tmp_path),
         "--compass"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "compass:" in done.stdout
    combined = json.loads((tmp_path / "compass" / "two-methods.json").read_text())
    assert problems(combined) == [] and len(combined["entries"]) == 2
    for method in ("finetune", "er"):
        single = json.loads((tmp_path / "compass" / "two-methods" / f"{method}.json").read_text())
        assert single["entries"] == [
            e for e in combined["entries"] if e["label"] == single["entries"][0]["label"]
        ]
    page = (tmp_path / "report.html").read_text()
    assert "Accuracy vs cost" in page and "CPU time (search / final)" in page
    cost = pd.read_csv(tmp_path / "tables" / "cost.csv")
    assert np.isclose(cost["search_cpu_time_s"].iloc[-1], cost["search_cpu_time_s"][:-1].sum())
