"""Accuracy over time of task-free stream runs: trial reports -> curves.parquet rows.

A stream run (cl_core/stream.py) evaluates every task on validation and test every
``eval_every`` steps and at each nominal task end. The trainable carries those points in its
reports as a JSON list (``curve``, :func:`encode_curve`); when the trial ends the driver's store
writes them as the trial's part of ``curves.parquet`` (:mod:`contract.schema`, one row per step,
task and split), next to its tasks part. Sweeps without stream runs write no curves table.
"""

from __future__ import annotations

import json
from typing import Any

from contract.schema import CURVE_POINT_COLUMNS

CURVE_KEY = "curve"
"""The report key that carries a stream run's curve points."""


def encode_curve(points: list[Any]) -> str:
    """A trial's curve points (cl_core.stream.CurvePoint) as the JSON its reports carry."""
    return json.dumps([[getattr(p, c) for c in CURVE_POINT_COLUMNS] for p in points])


def curve_rows(row: dict[str, Any], result: dict[str, Any]) -> list[dict[str, Any]]:
    """The curves.parquet rows of one ended trial (``row``: its trials.parquet row; ``result``:
    its last report, empty or without a curve for task-based runs)."""
    points = json.loads(result.get(CURVE_KEY) or "[]")
    keys = {k: row[k] for k in ("schema_version", "sweep", "trial_id", "phase")}
    return [{**keys, **dict(zip(CURVE_POINT_COLUMNS, point, strict=True))} for point in points]
