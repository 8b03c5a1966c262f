"""Figures that answer the questions a sweep is run for, from the loaded Parquet frames.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (no global figure
state, no GUI backend needed); :func:`save_figure` writes it as PNG and PDF. Accuracies are
fractions in the files and percent on the axes (docs/results-schema.md). Colours per method are
fixed, so a method looks the same in every figure of a report.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from analysis.importance import param_importances
from analysis.load import CELL_KEYS, COMPLETED, STUDY, AnalysisError, Param, Results
from analysis.tables import METHOD_ORDER, chosen_trials, method_order, params_text, sem

STATUS_STYLE = {
    "stopped": {"marker": "v", "color": "0.55", "label": "stopped early (last value)"},
    "diverged": {"marker": "X", "color": "tab:red", "label": "diverged (no value)"},
}
"""How trials that did not complete are marked in the search plots."""
LABELS = {
    "avg_acc": "average accuracy (%)",
    "forgetting": "forgetting (% points)",
    "plasticity": "plasticity: mean R[j][j] (%)",
    "bwt": "backward transfer (% points)",
    "fwt": "forward transfer (% points)",
}


def save_figure(fig: Figure, stem: str | Path) -> list[Path]:
    """Write ``stem``.png (for HTML and eyes) and ``stem``.pdf (for papers); return both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=110)
    fig.savefig(paths[1])
    return paths


def method_color(method: str) -> str:
    """A fixed colour per method (tab10 by the table order); unknown methods get later colours."""
    if method in METHOD_ORDER:
        return f"C{METHOD_ORDER.index(method)}"
    return f"C{len(METHOD_ORDER) + sum(map(ord, method)) % (10 - len(METHOD_ORDER))}"


def plot_accuracy_matrix(
    results: Results, sweep: str, trial_id: str, split: str = "test"
) -> Figure:
    """Heatmap of one trial's accuracy matrix: row i = after learning task i (R5's R[i][j]).

    The top row is the untrained model (b_j); cells right of the diagonal are tasks not yet learned
    (they feed FWT). Reading down a column shows a task being forgotten.
    """
    matrix = 100 * results.matrix(sweep, trial_id, split)
    trial = results.trial(sweep, trial_id)
    n_rows, n_tasks = matrix.shape
    size = max(3.8, 0.65 * n_tasks + 2.4)
    fig = Figure(figsize=(size + 1.2, max(3.4, 0.55 * n_rows + 2.0)), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(matrix, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    for i in range(n_rows):
        for j in range(n_tasks):
            if not math.isnan(matrix[i, j]):
                future = j >= i  # row i has learned tasks 0..i-1
                color = "white" if matrix[i, j] < 60 else "black"
                ax.text(
                    j,
                    i,
                    f"{matrix[i, j]:.0f}",
                    ha="center",
                    va="center",
                    fontsize=9,
                    color=color,
                    alpha=0.55 if future else 1.0,
                )
    ax.set_xticks(range(n_tasks), [str(j + 1) for j in range(n_tasks)])
    ax.set_yticks(range(n_rows), ["untrained"] + [f"after {i}" for i in range(1, n_rows)])
    ax.set_xlabel("task evaluated")
    ax.set_ylabel("tasks learned")
    fig.colorbar(image, ax=ax, label=f"{split} accuracy (%)")
    ax.set_title(_trial_title(results, trial, f"Accuracy matrix ({split})"), fontsize=10)
    return fig


def plot_task_curves(results: Results, sweep: str, trial_id: str, split: str = "test") -> Figure:
    """Accuracy on each task as more tasks are learned: a falling line is forgetting.

    Solid from the point a task is learned on, dotted before it (zero-shot accuracy, the FWT part).
    """
    matrix = 100 * results.matrix(sweep, trial_id, split)
    trial = results.trial(sweep, trial_id)
    n_rows, n_tasks = matrix.shape
    steps = np.arange(n_rows)
    fig = Figure(figsize=(7.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for j in range(n_tasks):
        color = f"C{j % 10}"
        learned = steps >= j + 1
        ax.plot(steps[: j + 2], matrix[: j + 2, j], ls=":", color=color, alpha=0.6)
        ax.plot(steps[learned], matrix[learned, j], "-o", color=color, ms=4, label=f"task {j + 1}")
    ax.plot(steps[1:], 100 * average_accuracy(matrix[1:] / 100), "k--", lw=2, label="average (R5)")
    ax.set_xticks(steps, ["0"] + [str(s) for s in steps[1:]])
    ax.set_xlabel("tasks learned")
    ax.set_ylabel(f"{split} accuracy (%)")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.legend(
        fontsize=8, ncols=2 if n_tasks > 10 else 1, loc="center left", bbox_to_anchor=(1.01, 0.5)
    )
    ax.set_title(_trial_title(results, trial, f"Per-task accuracy ({split})"), fontsize=10)
    return fig


def plot_average_accuracy(results: Results, best: pd.DataFrame, split: str = "test") -> Figure:
    """Average accuracy after each task (R5) per method, mean ± SEM band over the chosen seeds.

    One panel per scenario cell; each method uses its best configuration (``best`` from
    :func:`analysis.tables.best_configs`) and the trials the table's numbers come from.
    """
    cells = best[CELL_KEYS[1:]].drop_duplicates().to_numpy().tolist()
    fig, axes = _panels(len(cells), width=4.6, height=3.6)
    for ax, (benchmark, scenario, n_tasks) in zip(axes, cells, strict=False):
        rows = best[
            (best["benchmark"] == benchmark)
            & (best["scenario"] == scenario)
            & (best["n_tasks"] == n_tasks)
        ]
        for _, row in rows.iterrows():
            curves = np.array(
                [
                    average_accuracy(results.matrix(row["sweep"], tid, split)[1:])
                    for tid in chosen_trials(results, row)["trial_id"]
                ]
            )
            curves = 100 * curves
            x = np.arange(1, curves.shape[1] + 1)
            mean = curves.mean(axis=0)
            color = method_color(row["method"])
            ax.plot(x, mean, "-o", ms=4, color=color, label=f"{row['method']} (n={len(curves)})")
            if len(curves) > 1:
                err = np.array([sem(column) for column in curves.T])
                ax.fill_between(x, mean - err, mean + err, color=color, alpha=0.2)
        ax.set_title(f"{benchmark}, {scenario}-IL, {n_tasks} tasks", fontsize=10)
        ax.set_xlabel("tasks learned")
        ax.set_ylabel(f"{split} average accuracy (%)")
        ax.set_xticks(range(1, int(n_tasks) + 1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _suptitle(fig, "Average accuracy over the tasks learned so far (best config per method, ± SEM)")
    return fig


def plot_sensitivity(results: Results, sweep: str) -> Figure:
    """The search objective against each searched hyperparameter, one panel per parameter.

    Log axis where the space is logarithmic. Trials stopped early by the scheduler are drawn at
    their last reported value; diverged trials have no value and sit on the bottom edge, marked.
    """
    info = results.sweep(sweep)
    if not info.params:
        raise AnalysisError(f"sweep {sweep} searched no hyperparameters; nothing to plot")
    trials = _search_trials(results, sweep)
    metric, _ = info.objective
    fig, axes = _panels(len(info.params), width=4.4, height=3.6)
    studies = sorted(trials[STUDY].unique())
    for ax, param in zip(axes, info.params, strict=False):
        x = _axis_values(ax, trials[param.column], param)
        bottom = _bottom(trials["objective"])
        for k, study in enumerate(studies):
            mask = (trials[STUDY] == study) & (trials["status"] == COMPLETED)
            ax.scatter(
                x[mask],
                100 * trials.loc[mask, "objective"],
                color=f"C{k}",
                s=28,
                label=study if len(studies) > 1 else "completed",
            )
        for status, style in STATUS_STYLE.items():
            mask = trials["status"] == status
            if mask.any():
                y = trials.loc[mask, "objective"].fillna(bottom)
                ax.scatter(
                    x[mask],
                    100 * y,
                    marker=style["marker"],
                    color=style["color"],
                    s=40,
                    label=style["label"],
                )
        ax.set_xlabel(param.name + (" (log scale)" if ax.get_xscale() == "log" else ""))
        ax.set_ylabel(f"{metric} (%)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()  # every panel has the same entries
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 3), fontsize=8)
    _suptitle(fig, f"Sensitivity of {metric} to each searched hyperparameter — sweep {sweep}")
    return fig


def plot_stability_plasticity(
    results: Results, split: str = "val", y: str = "plasticity"
) -> Figure:
    """Stability-plasticity trade-off: forgetting (x, lower is more stable) against plasticity or
    average accuracy (y), one point per completed trial, with each cell's Pareto front.

    Plasticity is R5's mean R[j][j], forgetting Chaudhry et al. 2018 (R5). The front holds the
    trials no other trial beats on both axes. Defaults to validation, because picking a point on
    the front is a selection.
    """
    done = results.require_completed()
    x_col, y_col = f"{split}_forgetting", f"{split}_{y}"
    cells = sorted(done["cell"].unique())
    fig, axes = _panels(len(cells), width=4.8, height=3.9)
    for ax, cell in zip(axes, cells, strict=False):
        rows = done[done["cell"] == cell].dropna(subset=[x_col, y_col])
        for method in method_order(rows["method"].unique()):
            part = rows[rows["method"] == method]
            ax.scatter(
                100 * part[x_col],
                100 * part[y_col],
                color=method_color(method),
                s=26,
                alpha=0.8,
                label=method,
            )
        front = pareto_front(rows[x_col].to_numpy(), rows[y_col].to_numpy())
        if len(front):
            points = rows.iloc[front].sort_values(x_col)
            ax.step(
                100 * points[x_col],
                100 * points[y_col],
                "k--",
                where="post",
                lw=1,
                label="Pareto front",
            )
        ax.set_xlabel(f"{split} {LABELS['forgetting']}")
        ax.set_ylabel(f"{split} {LABELS[y]}")
        ax.set_title(cell, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _suptitle(fig, "Stability vs plasticity (each point a completed trial; up and left is better)")
    return fig


def pareto_front(forgetting: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """Indices of points not dominated (another point with lower-or-equal forgetting and
    higher-or-equal gain, strictly better in one) — minimise x, maximise y."""
    order = np.lexsort((-gain, forgetting))  # by forgetting, ties: higher gain first
    front, best = [], -np.inf
    for index in order:
        if gain[index] > best:
            front.append(index)
            best = gain[index]
    return np.array(front, dtype=int)


def plot_importance(
    results: Results,
    sweep: str,
    study: str | None = None,
    evaluators: Sequence[str] = ("fanova", "ped-anova"),
) -> Figure:
    """Hyperparameter importance of the search objective, one bar group per evaluator.

    Computed from the trials table by Optuna's evaluators (:mod:`analysis.importance`); showing
    two evaluators side by side tells whether the ranking is robust or an artefact of one model.
    """
    frames = {name: param_importances(results, sweep, study, name) for name in evaluators}
    table = pd.DataFrame(frames).fillna(0.0)
    table = table.loc[table.max(axis=1).sort_values().index]
    fig = Figure(
        figsize=(6.4, 1.6 + 0.5 * len(table) * max(1, len(evaluators) / 2)), layout="constrained"
    )
    ax = fig.add_subplot()
    height = 0.8 / len(evaluators)
    for k, name in enumerate(evaluators):
        positions = np.arange(len(table)) + (k - (len(evaluators) - 1) / 2) * height
        ax.barh(positions, table[name], height=height, color=f"C{k}", label=name)
    ax.set_yticks(range(len(table)), table.index)
    ax.set_xlabel("importance (normalised to sum to 1)")
    ax.set_xlim(0, 1.05)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    label = study or ", ".join(sorted(_search_trials(results, sweep)[STUDY].unique()))
    n_trials = next(iter(frames.values())).attrs["n_trials"]
    ax.set_title(
        f"Hyperparameter importance — sweep {sweep}\n{label}, {n_trials} completed trials",
        fontsize=10,
    )
    return fig


def plot_search_progress(results: Results, sweep: str) -> Figure:
    """Best objective so far against trial number (trials in start order), per study.

    A curve that is still climbing at the end says the search budget was too small.
    """
    info = results.sweep(sweep)
    metric, mode = info.objective
    trials = _search_trials(results, sweep)
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for k, (study, rows) in enumerate(trials.groupby(STUDY, sort=True)):
        rows = rows.sort_values(["started_at", "trial_id"])
        number = np.arange(1, len(rows) + 1)
        values = 100 * rows["objective"].to_numpy(dtype=float)
        filled = np.where(np.isnan(values), -np.inf if mode == "max" else np.inf, values)
        best = np.maximum.accumulate(filled) if mode == "max" else np.minimum.accumulate(filled)
        best = np.where(np.isinf(best), np.nan, best)
        stopped = (rows["status"] == "stopped").to_numpy()
        ax.scatter(number[~stopped], values[~stopped], color=f"C{k}", s=18, alpha=0.6)
        ax.scatter(number[stopped], values[stopped], color=f"C{k}", s=24, alpha=0.6, marker="v")
        ax.step(number, best, where="post", color=f"C{k}", lw=2, label=f"{study} (best so far)")
    ax.set_xlabel("trial number (in start order)")
    ax.set_ylabel(f"{metric} (%)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(
        f"Search progress — sweep {sweep} ({mode} {metric})\n"
        "dots: each trial, triangles: stopped early (last value), diverged: not drawn",
        fontsize=10,
    )
    return fig


def average_accuracy(R: np.ndarray) -> np.ndarray:
    """Average accuracy after each task i: mean over j <= i of R[i][j] (REFERENCE.md R5).

    The same formula as ``cl_core.metrics.average_accuracy`` (a test checks they agree); analysis
    keeps its own copy so that it runs without the core (and torch) installed.
    """
    R = np.asarray(R, dtype=float)
    return np.array([R[i, : i + 1].mean() for i in range(len(R))])


def _trial_title(results: Results, trial: pd.Series, what: str) -> str:
    return (
        f"{what}: {trial['method']} ({params_text(results, trial)})\n"
        f"{trial['cell']}, {trial['phase']} trial {trial['trial_id']}, seed {trial['train_seed']}"
    )


def _search_trials(results: Results, sweep: str) -> pd.DataFrame:
    trials = results.trials
    trials = trials[(trials["sweep"] == results.sweep(sweep).name) & (trials["phase"] == "search")]
    trials = trials[trials["status"] != "error"]
    if trials.empty:
        raise AnalysisError(f"sweep {sweep} has no search trials that ran; nothing to plot")
    return trials.reset_index(drop=True)


def _axis_values(ax, values: pd.Series, param: Param) -> np.ndarray:
    """x positions for a parameter: numbers as they are (log axis if the space is log), categories
    as evenly spaced ticks."""
    if param.is_categorical(values):
        categories = sorted(values.dropna().astype(str).unique())
        ax.set_xticks(range(len(categories)), categories)
        ax.set_xlim(-0.5, len(categories) - 0.5)
        return (
            values.astype(str).map({c: i for i, c in enumerate(categories)}).to_numpy(dtype=float)
        )
    numbers = values.to_numpy(dtype=float)
    if param.log:
        ax.set_xscale("log")
        finite = numbers[np.isfinite(numbers) & (numbers > 0)]
        if len(finite) and finite.max() / finite.min() < 1e3:
            # under three decades matplotlib labels minor ticks as 2x10^2, 3x10^2, ...: crowded
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
    return numbers


def _suptitle(fig: Figure, text: str) -> None:
    """A figure title wrapped to the figure's width, so that it is never cut off."""
    fig.suptitle(textwrap.fill(text, width=int(fig.get_figwidth() * 10)), fontsize=11)


def _bottom(objective: pd.Series) -> float:
    """Where valueless (diverged) trials are drawn: just under the lowest value (0 if none)."""
    values = objective.dropna()
    return 0.0 if values.empty else float(values.min()) - 0.03


def _panels(count: int, width: float, height: float) -> tuple[Figure, list]:
    """A figure with ``count`` panels, at most three per row; spare axes are hidden."""
    columns = min(max(count, 1), 3)
    rows = math.ceil(max(count, 1) / columns)
    fig_width = max(width * columns, 6.4)
    fig = Figure(figsize=(fig_width, height * rows + 0.6), layout="constrained")
    axes = list(np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel())
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]
