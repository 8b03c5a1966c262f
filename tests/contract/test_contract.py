"""The contract module: one statement of names both sides share, importing neither torch nor Ray."""

from __future__ import annotations

from pathlib import Path

import pytest
from import_checks import CONFIG_ONLY, modules_after

from cl_core import metrics as core_metrics
from contract import METRICS, SearchParam, metric, objective_metrics
from contract.schema import (
    CURVE_KEY_COLUMNS,
    CURVES_SCHEMA,
    SETTINGS,
    TASKS_SCHEMA,
    trials_schema,
)

REPO = Path(__file__).resolve().parents[2]


def documented(table: str) -> set[str]:
    text = (REPO / "docs" / "results-schema.md").read_text()
    section = text.split(f"## `{table}.parquet`", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names.update(p.strip(" `") for p in line.split("|")[1].split(",") if "`" in p)
    return names


def test_contract_imports_neither_torch_nor_ray():
    """Of cl_core, only the run configuration (its settings columns), which is torch-free."""
    heavy, core = modules_after("import contract, contract.tables, contract.schema")
    assert heavy == [] and core == CONFIG_ONLY


def test_the_registry_covers_the_cores_metrics_with_directions():
    assert tuple(METRICS) == core_metrics.NAMES
    assert {m.direction for m in METRICS.values()} <= {"max", "min"}
    assert METRICS["forgetting"].direction == "min" and METRICS["bwt"].direction == "max"
    assert [m.name for m in METRICS.values() if m.before_last_task] == ["avg_acc"]
    assert metric("test_forgetting") is METRICS["forgetting"]
    with pytest.raises(KeyError):
        metric("val_accuracy")
    assert objective_metrics()["val_forgetting"] == "min"
    assert all(name.startswith("val_") for name in objective_metrics())


def test_columns_are_the_documented_ones():
    names = set(trials_schema([("lambda", "float")]).names)
    assert {n for n in documented("trials") if "<" not in n} | {"hp_lambda"} == names
    assert set(TASKS_SCHEMA.names) == documented("tasks")
    assert set(CURVES_SCHEMA.names) == documented("curves")
    assert set(CURVE_KEY_COLUMNS) <= set(CURVES_SCHEMA.names)
    assert {name for name, _ in SETTINGS} <= names


def test_search_param_round_trips_through_json():
    for param in (
        SearchParam("lambda", "hp_lambda", "loguniform", low=1.0, high=1e7, log=True),
        SearchParam("epochs", "epochs", "int", low=1, high=9, step=2),
        SearchParam("fisher", "hp_fisher", "categorical", choices=("batch", "empirical")),
    ):
        assert SearchParam.from_json(param.to_json()) == param
    old = SearchParam.from_json({"name": "half", "distribution": "choice", "values": [True]})
    assert old.categorical and old.column == "hp_half" and old.choices == (True,)
