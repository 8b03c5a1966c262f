"""Accuracy over time of task-free stream runs -> curves.parquet (docs/results-schema.md).

A stream run (cl_core/stream.py) evaluates every task on validation and test every
``eval_every`` steps and at each nominal task end; its trial reports carry those points as a
JSON list (``curve``), and the results writer lands them here in long form, one row per
(trial, step, task, split). Sweeps without stream runs write no curves file.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

CURVES_FILE = "curves.parquet"
CURVE_FIELDS = ("iteration", "tasks_seen", "task", "split", "accuracy")
CURVES_SCHEMA = pa.schema(
    [
        ("schema_version", pa.int64()),
        ("sweep", pa.string()),
        ("trial_id", pa.string()),
        ("phase", pa.string()),
        ("iteration", pa.int64()),
        ("tasks_seen", pa.int64()),
        ("task", pa.int64()),
        ("split", pa.string()),
        ("accuracy", pa.float64()),
    ]
)


def encode_curve(points: list[Any]) -> str:
    """A trial's curve points (cl_core.stream.CurvePoint) as the JSON its reports carry."""
    return json.dumps([[getattr(p, f) for f in CURVE_FIELDS] for p in points])


def curve_rows(row: dict[str, Any], result: dict[str, Any]) -> list[dict[str, Any]]:
    """The curves.parquet rows of one ended trial (``row``: its trials.parquet row)."""
    points = json.loads(result.get("curve") or "[]")
    keys = {k: row[k] for k in ("schema_version", "sweep", "trial_id", "phase")}
    return [{**keys, **dict(zip(CURVE_FIELDS, point, strict=True))} for point in points]
