"""Accuracy over time of task-free stream runs (``curves.parquet``, docs/results-schema.md).

A stream run evaluates every task every few steps; this module loads those points, averages
them per method (mean ± SEM over the chosen trials: the final phase's seeds where a method has
one, else its completed search trials) and draws the figure: the average accuracy over all tasks
against training steps, one line per method, the transitions between tasks shaded, and below it
one panel per method with each task's own accuracy. The table is read through the contract
(:mod:`contract.schema`, :mod:`contract.tables`), like trials and tasks.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.load import CELL_KEYS, TRIAL_KEY, AnalysisError, Results, _read_parquet
from analysis.order import method_order
from analysis.plots import method_color
from contract import tables as parquet
from contract.formatting import sem
from contract.schema import CURVE_KEY_COLUMNS, CURVES_FILE


def has_curves(results: Results) -> bool:
    """Whether any loaded sweep holds curves (only task-free stream runs record them)."""
    return any(parquet.exists(info.path, CURVES_FILE) for info in results.sweeps.values())


def load_curves(results: Results) -> pd.DataFrame:
    """Every curve point of the loaded sweeps, with its trial's method, cell and stream settings.

    Raises AnalysisError when no sweep holds curves (only task-free stream runs record them).
    """
    frames = []
    for info in results.sweeps.values():
        if parquet.exists(info.path, CURVES_FILE):
            frame = _read_parquet(info.path, CURVES_FILE, CURVE_KEY_COLUMNS)
            frame["sweep"] = info.name
            frames.append(frame)
    if not frames:
        raise AnalysisError(
            f"no {CURVES_FILE} in {', '.join(sorted(results.sweeps))}: accuracy over time is "
            "recorded by task-free stream runs; set train: {stream: fuzzy-boundaries} in the space"
        )
    keys = [*TRIAL_KEY, *CELL_KEYS, "phase", "status"]
    keys += [c for c in ("stream", "iterations", "transition") if c in results.trials.columns]
    points = pd.concat(frames, ignore_index=True).drop(columns=["phase"], errors="ignore")
    return points.merge(results.trials[keys], on=TRIAL_KEY)


def chosen(curves: pd.DataFrame) -> pd.DataFrame:
    """Completed trials only; per method and cell the final phase where there is one."""
    done = curves[curves["status"] == "completed"]
    if done.empty:
        raise AnalysisError("no completed stream trial has curves; check trials.parquet's status")
    has_final = done.groupby(CELL_KEYS)["phase"].transform(lambda p: (p == "final").any())
    return done[~has_final | (done["phase"] == "final")]


def average_curves(curves: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Per method, cell and step: mean and SEM over trials of the accuracy averaged over all
    tasks (columns ``mean``, ``sem``, ``n``)."""
    points = chosen(curves)
    points = points[points["split"] == split]
    per_trial = (
        points.groupby([*CELL_KEYS, *TRIAL_KEY, "iteration"], sort=True)["accuracy"]
        .mean()
        .reset_index()
    )
    grouped = per_trial.groupby([*CELL_KEYS, "iteration"], sort=True)["accuracy"]
    out = grouped.agg(mean="mean", n="count").reset_index()
    out["sem"] = grouped.agg(sem).to_numpy()
    return out


def task_curves(curves: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Per method, cell, task and step: the mean accuracy of that task over the chosen trials."""
    points = chosen(curves)
    points = points[points["split"] == split]
    keys = [*CELL_KEYS, "task", "iteration"]
    return points.groupby(keys, sort=True)["accuracy"].mean().reset_index()


def plot_accuracy_over_time(results: Results, split: str = "test") -> Figure:
    """The accuracy-over-time figure of every stream cell in ``results`` (see module doc)."""
    curves = load_curves(results)
    average = average_curves(curves, split)
    per_task = task_curves(curves, split)
    drawn = chosen(curves)  # the trials the lines average: their stream marks the tasks
    cells = average[CELL_KEYS[1:]].drop_duplicates().itertuples(index=False)
    cells = list(cells)
    if len(cells) > 1:
        raise AnalysisError(
            f"curves of {len(cells)} cells; plot one benchmark/scenario/task count at a time"
        )
    methods = method_order(set(average["method"]))
    fig = Figure(figsize=(9, 3.2 + 2.2 * math.ceil(len(methods) / 3)), layout="constrained")
    grid = fig.add_gridspec(1 + math.ceil(len(methods) / 3), 3)
    top = fig.add_subplot(grid[0, :])
    for method in methods:
        rows = average[average["method"] == method]
        x, y, e = rows["iteration"], 100 * rows["mean"], 100 * rows["sem"].fillna(0)
        n = int(rows["n"].max())
        top.plot(x, y, color=method_color(method), label=f"{method} (n = {n})")
        top.fill_between(x, y - e, y + e, color=method_color(method), alpha=0.2, linewidth=0)
    _mark_tasks(top, drawn)
    top.set_ylabel(f"{split} accuracy, all tasks (%)")
    top.set_xlabel("training step")
    top.set_ylim(0, 100)
    top.legend(loc="upper right", fontsize="small")
    benchmark, scenario, n_tasks = cells[0]
    stream = ", ".join(sorted(drawn["stream"].unique())) if "stream" in drawn else "stream"
    top.set_title(f"{benchmark}, {scenario}-IL, {n_tasks} tasks, {stream} stream")
    for k, method in enumerate(methods):
        ax = fig.add_subplot(grid[1 + k // 3, k % 3], sharex=top)
        rows = per_task[per_task["method"] == method]
        for task, line in rows.groupby("task"):
            ax.plot(line["iteration"], 100 * line["accuracy"], label=f"task {task}", lw=1)
        _mark_tasks(ax, drawn)
        ax.set_title(method, fontsize="medium")
        ax.set_ylim(0, 100)
        if k % 3 == 0:
            ax.set_ylabel("per task (%)")
        if k == 0:
            ax.legend(fontsize="x-small", ncol=2)
    return fig


def _mark_tasks(ax, curves: pd.DataFrame) -> None:
    """Dotted lines at the nominal task ends; the fuzzy transitions shaded."""
    if "iterations" not in curves or curves["iterations"].isna().all():
        return
    per_task = int(curves["iterations"].dropna().iloc[0])
    n_tasks = int(curves["n_tasks"].iloc[0])
    transition = 0
    if "transition" in curves and (curves.get("stream") == "fuzzy-boundaries").any():
        transition = int(curves["transition"].dropna().iloc[0])
    for boundary in np.arange(1, n_tasks) * per_task:
        ax.axvline(boundary, color="grey", lw=0.6, ls=":")
        if transition:
            start = boundary - transition // 2
            ax.axvspan(start, start + transition, color="grey", alpha=0.08, lw=0)
