"""What a sweep cost: per method and per sweep, search against final phase; accuracy per cost.

The cost columns of trials.parquet (schema 4, docs/results-schema.md) are summed per method and
sweep: trial time (wall), CPU-hours and GPU-hours (a fractional GPU counted as its share), split
into the search and the final phase, and the size of what was trained (trainable parameters,
stored samples) and the device's peak memory, the largest over the trials. CLEVA-Compass
(Mundt et al. 2022) and compute-budgeted CL (Prabhu et al. 2023) ask a comparison to state these.
Sweeps written before schema 4 have only the wall time: the rest reads "not recorded".
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.load import CELL_KEYS, Results
from analysis.order import method_order
from contract.formatting import DASH, format_count, format_duration
from contract.schema import COST_COLUMNS

ALL = "all methods"
"""The row of a sweep's totals in the cost table."""
MIB = 2**20


def cost_trials(results: Results) -> pd.DataFrame:
    """Every trial with the cost columns (NaN where a sweep did not record them)."""
    trials = results.trials.copy()
    for column in COST_COLUMNS:
        if column not in trials:
            trials[column] = np.nan
        trials[column] = pd.to_numeric(trials[column], errors="coerce")
    return trials


def has_gpu(trials: pd.DataFrame) -> bool:
    """Whether any trial held a GPU share (then compute is counted in GPU-hours)."""
    return bool((trials["gpu_time_s"].fillna(0) > 0).any())


def cost_numbers(results: Results) -> pd.DataFrame:
    """One row per sweep and method, then the sweep's total (method ``all methods``): trials,
    seconds of wall, CPU and GPU time by phase, and the largest size and peak memory (CSV)."""
    trials = cost_trials(results)
    rows = []
    for sweep in sorted(results.sweeps):
        mine = trials[trials["sweep"] == sweep]
        groups = [(m, mine[mine["method"] == m]) for m in method_order(mine["method"].unique())]
        for method, group in [*groups, (ALL, mine)]:
            rows.append({"sweep": sweep, "method": method, **_sums(group)})
    return pd.DataFrame(rows)


def _sums(trials: pd.DataFrame) -> dict[str, float]:
    out: dict[str, float] = {}
    for phase in ("search", "final"):
        part = trials[trials["phase"] == phase]
        out[f"{phase}_trials"] = len(part)
        for column in ("wall_time_s", "cpu_time_s", "gpu_time_s"):
            values = part[column]
            out[f"{phase}_{column}"] = float(values.sum()) if values.notna().any() else math.nan
    for column in ("trainable_params", "stored_samples", "peak_memory_bytes"):
        values = trials[column].dropna()
        out[f"max_{column}"] = float(values.max()) if len(values) else math.nan
    return out


def cost_display(numbers: pd.DataFrame) -> pd.DataFrame:
    """:func:`cost_numbers` for a reader: spans of time (``4.4 s``, ``2 h 07 min``), search /
    final phase."""

    def pair(row: pd.Series, column: str, fmt) -> str:
        search, final = row[f"search_{column}"], row[f"final_{column}"]
        if math.isnan(search) and math.isnan(final):
            return "not recorded"
        return f"{fmt(search)} / {fmt(final) if row['final_trials'] else DASH}"

    rows = []
    for _, row in numbers.iterrows():
        memory = row["max_peak_memory_bytes"]
        rows.append(
            {
                "sweep": row["sweep"],
                "method": row["method"],
                "trials (search / final)": f"{row['search_trials']} / {row['final_trials']}",
                "trial time (search / final)": pair(row, "wall_time_s", format_duration),
                "CPU time (search / final)": pair(row, "cpu_time_s", format_duration),
                "GPU time (search / final)": pair(row, "gpu_time_s", format_duration),
                "trainable parameters": format_count(row["max_trainable_params"]),
                "stored samples": format_count(row["max_stored_samples"]),
                "peak memory (MiB)": DASH if math.isnan(memory) else f"{memory / MIB:,.0f}",
            }
        )
    display = pd.DataFrame(rows)
    if display["sweep"].nunique() == 1:
        display = display.drop(columns="sweep")
    return display


def study_cost(results: Results) -> pd.DataFrame:
    """Compute per method and cell (search + final): ``hours`` in the unit ``unit`` says
    (GPU-hours if any trial held a GPU, else CPU-hours; wall-clock hours for sweeps that did not
    record CPU time)."""
    trials = cost_trials(results)
    column, unit = cost_axis(trials)
    hours = trials.groupby(["sweep", *CELL_KEYS], sort=False)[column].sum(min_count=1) / 3600
    return hours.rename("hours").reset_index().assign(unit=unit)


def cost_axis(trials: pd.DataFrame) -> tuple[str, str]:
    """(column, label) the accuracy-per-cost view measures cost in."""
    if has_gpu(trials):
        return "gpu_time_s", "GPU-hours"
    if trials["cpu_time_s"].notna().all():
        return "cpu_time_s", "CPU-hours"
    return "wall_time_s", "trial hours (wall clock; CPU time not recorded)"
