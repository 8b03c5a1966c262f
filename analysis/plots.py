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
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from matplotlib.transforms import blended_transform_factory

from analysis.cost import study_cost
from analysis.importance import param_importances
from analysis.load import CELL_KEYS, COMPLETED, AnalysisError, Param, Results
from analysis.order import (
    METHOD_ORDER,
    cell_layout,
    cell_title,
    method_order,
    ordered_cells,
    ordered_studies,
)
from analysis.tables import chosen_trials, params_shown
from contract.formatting import format_pm, sem

STATUS_STYLE = {
    "stopped": {"marker": "v", "color": "0.45", "label": "stopped early by the scheduler"},
    "diverged": {"marker": "X", "color": "tab:red", "label": "diverged"},
}
"""How trials that did not complete are marked in the search plots (drawn apart from the
completed ones: their objective is an average over fewer tasks, or none)."""
DPI = 150
"""PNG resolution: sharp in the HTML and, scaled to the PDF's text width, in print."""
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
    fig.savefig(paths[0], dpi=DPI)
    fig.savefig(paths[1])
    return paths


METHOD_COLORS = (*colormaps["tab20"].colors[0::2], *colormaps["tab20"].colors[1::2])
"""20 distinct colours: tab10's, then their light variants."""


def method_color(method: str) -> tuple:
    """A fixed colour per method (by the table order: tab10 first, then light variants); methods
    not in the order share the colours left, picked by name."""
    if method in METHOD_ORDER:
        return METHOD_COLORS[METHOD_ORDER.index(method) % len(METHOD_COLORS)]
    spare = len(METHOD_COLORS) - len(METHOD_ORDER)
    return METHOD_COLORS[len(METHOD_ORDER) + sum(map(ord, method)) % spare]


def plot_accuracy_matrix(
    results: Results, sweep: str, trial_id: str, split: str = "test"
) -> Figure:
    """Heatmap of one trial's accuracy matrix: row i = after learning task i (R[i][j],
    docs/references.md, Metrics).

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
    ax.set_title(_trial_title(results, trial, f"Accuracy matrix ({split})", fig), fontsize=10)
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
    ax.plot(steps[1:], 100 * average_accuracy(matrix[1:] / 100), "k--", lw=2, label="average")
    ax.set_xticks(steps, ["0"] + [str(s) for s in steps[1:]])
    ax.set_xlabel("tasks learned")
    ax.set_ylabel(f"{split} accuracy (%)")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.legend(
        fontsize=8, ncols=2 if n_tasks > 10 else 1, loc="center left", bbox_to_anchor=(1.01, 0.5)
    )
    ax.set_title(_trial_title(results, trial, f"Per-task accuracy ({split})", fig), fontsize=10)
    return fig


def in_cell(frame: pd.DataFrame, benchmark: str, scenario: str, n_tasks: int) -> pd.DataFrame:
    """The rows of ``frame`` in one scenario cell."""
    mask = (frame["benchmark"] == benchmark) & (frame["scenario"] == scenario)
    return frame[mask & (frame["n_tasks"] == n_tasks)]


def plot_average_accuracy(results: Results, best: pd.DataFrame, split: str = "test") -> Figure:
    """Average accuracy after each task (docs/references.md, Metrics) per method, mean ± SEM
    band over the chosen seeds.

    One panel per scenario cell (a row per benchmark and task count, a column per scenario, on
    one y-axis); each method uses its best configuration (``best`` from
    :func:`analysis.tables.best_configs`) and the trials the table's numbers come from.
    """
    cells = ordered_cells(best)
    fig, panels = _cell_panels(cells, width=4.6, height=3.6, sharey=True)
    protocols = list(dict.fromkeys(best["protocol"]))  # several: one line style each
    for (_, (benchmark, scenario, n_tasks)), (ax, _) in panels.items():
        for _, row in in_cell(best, benchmark, scenario, n_tasks).iterrows():
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
            label, style = f"{row['method']} (n={len(curves)})", "-o"
            if len(protocols) > 1:
                label += f", {row['protocol']}"
                style = ("-", "--", ":", "-.")[protocols.index(row["protocol"]) % 4] + "o"
            ax.plot(x, mean, style, ms=4, color=color, label=label)
            if len(curves) > 1:
                err = np.array([sem(column) for column in curves.T])
                ax.fill_between(x, mean - err, mean + err, color=color, alpha=0.2)
        ax.set_title(cell_title(benchmark, scenario, n_tasks), fontsize=10)
        ax.set_xlabel("tasks learned")
        ax.set_ylabel(f"{split} average accuracy (%)")
        ax.set_xticks(range(1, int(n_tasks) + 1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _suptitle(fig, "Average accuracy over the tasks learned so far (best config per method, ± SEM)")
    return fig


def plot_sensitivity(results: Results, sweep: str, param: str | None = None) -> Figure:
    """The search objective against each searched hyperparameter, as small multiples per cell: a
    row per benchmark and task count, a column per scenario (task, domain, class), a block of
    rows per parameter; all panels on one y-axis. Each method in a cell has its own colour.

    Only completed trials are points on the objective axis. A trial stopped early by the scheduler
    has an average over fewer tasks (usually higher than a full run's), a diverged one has none:
    both are drawn apart, in a strip under their panel, at their parameter value and the number
    of tasks they reached. Log axis where the space is logarithmic.
    """
    info = results.sweep(sweep)
    params = [p for p in info.params if param is None or p.name == param]
    if not params:
        missing = f" {param}" if param else ""
        raise AnalysisError(f"sweep {sweep} searched no hyperparameter{missing}; nothing to plot")
    trials = _search_trials(results, sweep)
    metric, _ = info.objective
    cells = ordered_cells(trials)
    cut = bool(trials["status"].isin(list(STATUS_STYLE)).any())
    fig, panels = _cell_panels(
        cells, width=4.4, height=3.0, sharey=True, blocks=len(params), strips=cut
    )
    methods = method_order(trials["method"].unique())
    for (block, (benchmark, scenario, n_tasks)), (ax, strip) in panels.items():
        p = params[block]
        in_cell = (trials["benchmark"] == benchmark) & (trials["scenario"] == scenario)
        rows = trials[in_cell & (trials["n_tasks"] == n_tasks)].reset_index(drop=True)
        x = _axis_values(ax, rows[p.column], p)
        for method in methods:
            done = ((rows["status"] == COMPLETED) & (rows["method"] == method)).to_numpy()
            ax.scatter(
                x[done],
                100 * rows.loc[done, "objective"],
                color=method_color(method),
                s=28,
                label=(f"{method}: " if len(methods) > 1 else "") + "completed (y: objective)",
            )
        ax.set_title(cell_title(benchmark, scenario, n_tasks), fontsize=10)
        ax.set_ylabel(f"{metric} (%)")
        ax.grid(alpha=0.3)
        xlabel = p.name + (" (log scale)" if ax.get_xscale() == "log" else "")
        if strip is None:
            ax.set_xlabel(xlabel)
            continue
        ax.tick_params(labelbottom=False)
        _cut_strip(strip, rows, x, int(n_tasks))
        strip.set_xlabel(xlabel)
    _figure_legend(fig, ncols=4)
    names = ", ".join(p.name for p in params)
    _suptitle(fig, f"Sensitivity of {metric} to {names} — sweep {sweep}")
    return fig


def _cut_strip(strip, rows: pd.DataFrame, x: np.ndarray, n_tasks: int) -> None:
    """Trials that did not complete, at their parameter value (x) and the tasks they reached (y)."""
    for status, style in STATUS_STYLE.items():
        mask = (rows["status"] == status).to_numpy()
        if mask.any():
            strip.scatter(
                x[mask],
                rows.loc[mask, "tasks_completed"],
                marker=style["marker"],
                color=style["color"],
                s=30,
                label=f"{style['label']} (y: tasks reached)",
            )
    strip.set_ylim(-0.6, n_tasks - 0.4)
    ticks = range(0, n_tasks) if n_tasks <= 6 else range(0, n_tasks, max(1, n_tasks // 4))
    strip.set_yticks(list(ticks), [f"{k}/{n_tasks}" for k in ticks], fontsize=7)
    strip.set_ylabel("tasks\nreached", fontsize=8)
    strip.grid(alpha=0.3)
    if not rows["status"].isin(list(STATUS_STYLE)).any():
        strip.text(0.5, 0.5, "none stopped or diverged", transform=strip.transAxes,
                   ha="center", va="center", fontsize=7, color="0.4")  # fmt: skip


def plot_stability_plasticity(
    results: Results, split: str = "val", y: str = "plasticity"
) -> Figure:
    """Stability-plasticity trade-off: forgetting (x, lower is more stable) against plasticity or
    average accuracy (y), one point per completed trial, with each cell's Pareto front.

    Plasticity is the mean R[j][j] (learning accuracy), forgetting Chaudhry et al.'s (2018)
    average forgetting (docs/references.md, Metrics). The front holds the
    trials no other trial beats on both axes. Defaults to validation, because picking a point on
    the front is a selection.
    """
    done = results.require_completed()
    x_col, y_col = f"{split}_forgetting", f"{split}_{y}"
    cells = ordered_cells(done)
    fig, panels = _cell_panels(cells, width=4.8, height=3.9, sharex=True, sharey=True)
    for (_, (benchmark, scenario, n_tasks)), (ax, _) in panels.items():
        in_cell = (done["benchmark"] == benchmark) & (done["scenario"] == scenario)
        rows = done[in_cell & (done["n_tasks"] == n_tasks)].dropna(subset=[x_col, y_col])
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
        ax.set_title(cell_title(benchmark, scenario, n_tasks), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _suptitle(fig, "Stability vs plasticity (each point a completed trial; up and left is better)")
    return fig


def plot_accuracy_cost(results: Results, best: pd.DataFrame) -> Figure:
    """Test average accuracy of each method's chosen configuration (mean ± SEM) against what its
    study cost, search and final phase together, one panel per cell (the stability-plasticity
    figure's sibling): up and left is better. Log cost axis."""
    cost = study_cost(results)
    unit = cost["unit"].iloc[0]
    chosen = best.merge(cost, on=["sweep", *CELL_KEYS], how="left")
    fig, panels = _cell_panels(ordered_cells(best), width=4.8, height=3.9, sharey=True)
    for (_, (benchmark, scenario, n_tasks)), (ax, _) in panels.items():
        for _, row in in_cell(chosen, benchmark, scenario, n_tasks).iterrows():
            err = row["test_avg_acc_sem"]
            ax.errorbar(
                row["hours"],
                100 * row["test_avg_acc_mean"],
                yerr=None if math.isnan(err) else 100 * err,
                fmt="o",
                ms=7,
                capsize=3,
                color=method_color(row["method"]),
                label=f"{row['method']} ({format_pm(row['test_avg_acc_mean'])}%)",
            )
        ax.set_xscale("log")
        ax.set_xlabel(f"{unit} (search + final phase)")
        ax.set_ylabel("test average accuracy (%)")
        ax.set_title(cell_title(benchmark, scenario, n_tasks), fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    _suptitle(fig, f"Accuracy vs cost (each method at its chosen configuration; {unit})")
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
    With one searched parameter importance is 1 by definition: that is refused, not drawn.
    """
    params = results.sweep(sweep).params
    if len(params) < 2:
        raise AnalysisError(
            f"sweep {sweep} searched {len(params)} parameter(s); importance compares two or more"
        )
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
    label = study or ", ".join(ordered_studies(_search_trials(results, sweep)))
    n_trials = next(iter(frames.values())).attrs["n_trials"]
    ax.set_title(
        f"Hyperparameter importance — sweep {sweep}\n{label}, {n_trials} completed trials",
        fontsize=10,
    )
    return fig


def plot_search_progress(results: Results, sweep: str) -> Figure:
    """Best objective so far against trial number (trials in start order): one panel per cell
    (a row per benchmark and task count, a column per scenario), on one y-axis; each method in a
    cell has its own colour.

    The running best is over completed trials only: a trial stopped early has an average over
    fewer tasks, not comparable with a full run's, so it is only marked (triangles on the bottom
    edge), as are diverged trials (crosses). A curve still climbing at the end says the search
    budget was too small.
    """
    info = results.sweep(sweep)
    metric, mode = info.objective
    trials = _search_trials(results, sweep)
    fig, panels = _cell_panels(ordered_cells(trials), width=4.4, height=3.4, sharey=True)
    methods = method_order(trials["method"].unique())
    for (_, (benchmark, scenario, n_tasks)), (ax, _) in panels.items():
        in_cell = (trials["benchmark"] == benchmark) & (trials["scenario"] == scenario)
        for method in methods:
            mine = in_cell & (trials["n_tasks"] == n_tasks) & (trials["method"] == method)
            rows = trials[mine].sort_values(["started_at", "trial_id"])
            if rows.empty:
                continue
            _progress_lines(ax, rows, mode, method_color(method), method, len(methods) > 1)
        ax.set_title(cell_title(benchmark, scenario, n_tasks), fontsize=10)
        ax.set_xlabel("trial number (in start order)")
        ax.set_ylabel(f"{metric} (%)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    _figure_legend(fig, ncols=4)
    _suptitle(fig, f"Search progress — sweep {sweep} ({mode} {metric})")
    return fig


def average_accuracy(R: np.ndarray) -> np.ndarray:
    """Average accuracy after each task i: mean over j <= i of R[i][j].

    Lopez-Paz & Ranzato 2017 (docs/references.md, Metrics).

    The same formula as ``cl_core.metrics.average_accuracy`` (a test checks they agree); analysis
    keeps its own copy so that it runs without the core (and torch) installed.
    """
    R = np.asarray(R, dtype=float)
    return np.array([R[i, : i + 1].mean() for i in range(len(R))])


def _progress_lines(ax, rows: pd.DataFrame, mode: str, color: tuple, method: str, named: bool):
    """One study's running best (completed trials), its values, and its cut trials marked."""
    prefix = f"{method}: " if named else ""
    number = np.arange(1, len(rows) + 1)
    done = (rows["status"] == COMPLETED).to_numpy()
    values = np.where(done, 100 * rows["objective"].to_numpy(dtype=float), np.nan)
    filled = np.where(np.isnan(values), -np.inf if mode == "max" else np.inf, values)
    best = np.maximum.accumulate(filled) if mode == "max" else np.minimum.accumulate(filled)
    best = np.where(np.isinf(best), np.nan, best)
    ax.step(number, best, where="post", color=color, lw=2, label=f"{prefix}best so far")
    ax.scatter(number[done], values[done], color=color, s=18, alpha=0.7, label=f"{prefix}completed")
    edge = blended_transform_factory(ax.transData, ax.transAxes)
    for status, style in STATUS_STYLE.items():
        mask = (rows["status"] == status).to_numpy()
        if mask.any():
            ax.scatter(
                number[mask],
                np.full(mask.sum(), 0.03),
                transform=edge,
                marker=style["marker"],
                color=style["color"],
                s=26,
                clip_on=False,
                label=f"{style['label']} (no comparable value)",
            )


def _figure_legend(fig: Figure, ncols: int) -> None:
    """One legend under the figure with every distinct entry of its panels."""
    handles, labels = [], []
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    if labels:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), ncols),
                   fontsize=8)  # fmt: skip


def _trial_title(results: Results, trial: pd.Series, what: str, fig: Figure) -> str:
    """What, method, parameters (4 significant digits), cell, trial and seed; wrapped to the
    figure's width."""
    width = int(fig.get_figwidth() * 9)
    lines = [
        f"{what}: {trial['method']} ({params_shown(results, trial)})",
        f"{trial['cell']}, {trial['phase']} trial {trial['trial_id']}, seed {trial['train_seed']}",
    ]
    return "\n".join(textwrap.fill(line, width) for line in lines)


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
        span = finite.max() / finite.min() if len(finite) else math.inf
        if span < 1e3:
            # under three decades matplotlib labels minor ticks as 2x10^2, 3x10^2, ...: crowded.
            # Label 1, 2, 5 x 10^k within two decades, powers of ten only beyond.
            if span < 1e2:
                ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            else:
                ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0,)))
            ax.xaxis.set_minor_formatter(NullFormatter())
    return numbers


def _suptitle(fig: Figure, text: str) -> None:
    """A figure title wrapped to the figure's width, so that it is never cut off."""
    fig.suptitle(textwrap.fill(text, width=int(fig.get_figwidth() * 10)), fontsize=11)


def _cell_panels(
    cells: list[tuple[str, str, int]],
    width: float,
    height: float,
    sharex: bool = False,
    sharey: bool = False,
    blocks: int = 1,
    strips: bool = False,
) -> tuple[Figure, dict]:
    """A figure with a panel per cell laid out like the comparison table (a row per benchmark
    and task count, a column per scenario: :func:`analysis.order.cell_layout`), repeated in
    ``blocks`` blocks of rows (one per searched parameter), each panel optionally with a strip
    under it. Returns the figure and ``{(block, cell): (ax, strip)}``. A single cell with
    several blocks puts the blocks side by side. Shared axes where panels are compared; every
    panel keeps its tick labels."""
    n_rows, n_cols, places = cell_layout(cells)
    if len(cells) == 1 and blocks > 1:
        n_rows, n_cols = 1, blocks
        positions = {(b, cells[0]): (0, b) for b in range(blocks)}
    else:
        positions = {
            (b, cell): (b * n_rows + r, c) for b in range(blocks) for cell, (r, c) in places.items()
        }
        n_rows *= blocks
    per_row = 2 if strips else 1
    fig = Figure(
        figsize=(max(width * n_cols, 6.4), (height + 0.9 * strips) * n_rows + 0.9),
        layout="constrained",
    )
    grid = fig.add_gridspec(
        n_rows * per_row, n_cols, height_ratios=[3, 1] * n_rows if strips else None
    )
    first = None
    panels = {}
    for key, (r, c) in positions.items():
        ax = fig.add_subplot(
            grid[r * per_row, c], sharex=first if sharex else None, sharey=first if sharey else None
        )
        first = first or ax
        strip = fig.add_subplot(grid[r * per_row + 1, c], sharex=ax) if strips else None
        panels[key] = (ax, strip)
    return fig, panels
