"""Result tables: the best configuration per method and scenario cell; method x scenario.

Selection follows the project's protocol (DESIGN.md, Data): configurations are chosen on validation,
test accuracy is only reported. Numbers are mean ± SEM over seeds, SEM = sample standard deviation
(ddof=1) / sqrt(n), as in the three-scenario literature (REFERENCE.md R4). Frames keep fractions;
the formatted tables show percent (docs/results-schema.md).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.load import CELL_KEYS, AnalysisError, Results

METRICS = ("avg_acc", "forgetting", "bwt", "fwt", "plasticity")
"""The R5 metrics (REFERENCE.md) reported per table row, on the test split."""
METHOD_ORDER = ("finetune", "ewc", "si", "lwf", "fromp", "dgr", "bir", "gen_classifier", "joint")
"""Lower bound first and the joint-training upper bound last, as in the three-scenario tables."""
SCENARIO_LABELS = {"task": "Task-IL", "domain": "Domain-IL", "class": "Class-IL"}


def sem(values: pd.Series | np.ndarray) -> float:
    """Standard error of the mean: sample std (ddof=1) / sqrt(n); NaN for fewer than two values."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) < 2:
        return math.nan
    return float(np.std(values, ddof=1) / math.sqrt(len(values)))


def best_configs(results: Results, select_on: str = "val_avg_acc") -> pd.DataFrame:
    """One row per (method, benchmark, scenario, n_tasks): the configuration chosen on validation.

    Candidates are configurations ``(sweep, config_id)`` of completed trials. Where the cell has a
    final phase (top-k configurations re-run with fresh seeds), the candidates are those re-runs,
    scored by their mean ``select_on`` over the fresh seeds, and the test metrics are mean ± SEM
    over those final-phase seeds (``source = final``). Without a final phase the search trials are
    used the same way (``source = search``), usually with n = 1 and so no SEM.
    Columns: the cell keys, ``sweep``, ``config_id``, ``params`` (the searched values), ``source``,
    ``n``, ``select_on``, ``val_score`` and ``test_<metric>_mean`` / ``test_<metric>_sem`` for each
    R5 metric. Higher ``select_on`` is better, except for forgetting.
    """
    if not select_on.startswith("val_"):
        raise AnalysisError(
            f"select_on={select_on!r}: configurations are chosen on validation; use a val_ metric"
        )
    lower_is_better = select_on.endswith("forgetting")
    done = results.require_completed()
    if select_on not in done.columns:
        raise AnalysisError(f"trials have no column {select_on!r}; try val_avg_acc")
    rows = []
    for cell, trials in done.groupby(CELL_KEYS, sort=False):
        phase = "final" if (trials["phase"] == "final").any() else "search"
        trials = trials[trials["phase"] == phase]
        scores = trials.groupby(["sweep", "config_id"], sort=True)[select_on].mean()
        scores = scores.dropna().sort_values(ascending=lower_is_better, kind="stable")
        if scores.empty:
            continue  # no validation score (val_fraction = 0): nothing to select on
        sweep, config_id = scores.index[0]
        chosen = trials[(trials["sweep"] == sweep) & (trials["config_id"] == config_id)]
        row = dict(zip(CELL_KEYS, cell, strict=True))
        row.update(
            sweep=sweep,
            config_id=config_id,
            params=params_text(results, chosen.iloc[0]),
            source=phase,
            n=len(chosen),
            select_on=select_on,
            val_score=float(scores.iloc[0]),
        )
        for metric in METRICS:
            values = chosen[f"test_{metric}"]
            row[f"test_{metric}_mean"] = float(values.mean())
            row[f"test_{metric}_sem"] = sem(values)
        rows.append(row)
    if not rows:
        raise AnalysisError(f"no completed trial has a {select_on} value to select on")
    return _ordered(pd.DataFrame(rows))


def chosen_trials(results: Results, row: pd.Series) -> pd.DataFrame:
    """The completed trials behind one row of :func:`best_configs` (its mean ± SEM is over them)."""
    done = results.completed
    mask = (done["sweep"] == row["sweep"]) & (done["config_id"] == row["config_id"])
    mask &= done["phase"] == row["source"]
    for key in CELL_KEYS:
        mask &= done[key] == row[key]
    return done[mask]


def params_text(results: Results, trial: pd.Series) -> str:
    """'lambda=100, lr=0.001': the searched values of one trial, for table cells and titles."""
    params = results.sweeps[trial["sweep"]].params
    values = (trial[p.column] for p in params)
    texts = (f"{v:.3g}" if isinstance(v, float) else str(v) for v in values)
    return ", ".join(f"{p.name}={t}" for p, t in zip(params, texts, strict=True)) or "(defaults)"


def comparison_table(best: pd.DataFrame, metric: str = "avg_acc") -> pd.DataFrame:
    """Methods x (benchmark, scenario): test ``metric`` as 'mean ± SEM (n=..)' in percent.

    The layout of the three-scenario papers (REFERENCE.md R4): one row per method, one column per
    scenario, grouped by benchmark and task count. Empty where a method was not run in a cell.
    """
    frame = best.assign(
        column=best["benchmark"] + " (" + best["n_tasks"].astype(str) + " tasks)",
        label=best["scenario"].map(SCENARIO_LABELS).fillna(best["scenario"]),
        value=[
            format_pm(r[f"test_{metric}_mean"], r[f"test_{metric}_sem"], r["n"])
            for _, r in best.iterrows()
        ],
    )
    table = frame.pivot(index="method", columns=["column", "label"], values="value").fillna("")
    order = list(SCENARIO_LABELS.values())
    order += sorted(set(frame["label"]) - set(order))
    group = dict(
        zip(frame["column"], zip(frame["benchmark"], frame["n_tasks"], strict=True), strict=False)
    )
    columns = sorted(table.columns, key=lambda c: (group[c[0]], order.index(c[1])))
    table = table[columns].reindex(method_order(table.index))
    table.columns.names = [None, None]
    table.index.name = "method"
    return table


def best_configs_display(best: pd.DataFrame) -> pd.DataFrame:
    """The best-configuration table for reading: percent, 'mean ± SEM', a column per metric."""
    display = best[CELL_KEYS + ["params", "sweep", "source", "n"]].copy()
    display.insert(
        len(CELL_KEYS) + 1,
        f"{best['select_on'].iloc[0]} (sel.)",
        [f"{100 * v:.1f}" for v in best["val_score"]],
    )
    for metric in METRICS:
        display[f"test {metric}"] = [
            format_pm(m, s)
            for m, s in zip(best[f"test_{metric}_mean"], best[f"test_{metric}_sem"], strict=True)
        ]
    return display


def format_pm(mean: float, sem_value: float, n: int | None = None) -> str:
    """'72.3 ± 1.2' in percent (fractions in files, percent in tables); '–' for a missing mean."""
    if mean is None or math.isnan(mean):
        return "–"
    text = (
        f"{100 * mean:.1f}"
        if math.isnan(sem_value)
        else f"{100 * mean:.1f} ± {100 * sem_value:.1f}"
    )
    return text if n is None else f"{text} (n={n})"


def write_table(
    display: pd.DataFrame, out_dir: str | Path, name: str, numbers: pd.DataFrame | None = None
) -> list[Path]:
    """Write ``name``.md, .csv and .tex into ``out_dir``; return the paths.

    Markdown and LaTeX show ``display``; the CSV holds ``numbers`` when given (full precision for
    further work), else ``display``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.md", out / f"{name}.csv", out / f"{name}.tex"]
    paths[0].write_text(to_markdown(display))
    (display if numbers is None else numbers).to_csv(
        paths[1], index=numbers is None and _has_index(display)
    )
    paths[2].write_text(to_latex(display))
    return paths


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table (two-level column labels joined by ' · ')."""
    header, rows = _cells(table)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_latex(table: pd.DataFrame) -> str:
    """A booktabs LaTeX tabular; a two-level column index becomes a \\multicolumn header row."""
    index_names = _index_names(table)
    _, rows = _cells(table)
    width = len(index_names) + len(table.columns)
    lines = [
        r"\begin{tabular}{" + "l" * len(index_names) + "r" * len(table.columns) + "}",
        r"\toprule",
    ]
    if isinstance(table.columns, pd.MultiIndex):
        groups: list[tuple[str, int]] = []
        for top, _ in table.columns:
            if groups and groups[-1][0] == top:
                groups[-1] = (top, groups[-1][1] + 1)
            else:
                groups.append((top, 1))
        top_row = [""] * len(index_names) + [
            rf"\multicolumn{{{k}}}{{c}}{{{_tex(str(g))}}}" for g, k in groups
        ]
        lines.append(" & ".join(top_row) + r" \\")
        labels = [str(c[1]) for c in table.columns]
    else:
        labels = [str(c) for c in table.columns]
    lines.append(" & ".join(_tex(c) for c in index_names + labels) + r" \\")
    lines.append(r"\midrule")
    lines += [" & ".join(_tex(c) for c in row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    assert all(len(row) == width for row in rows)
    return "\n".join(lines) + "\n"


def _cells(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    index = _has_index(table)
    labels = [" · ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in table.columns]
    header = (_index_names(table) if index else []) + labels
    rows = [
        ([str(i)] if index else []) + [_value_text(v) for v in values]
        for i, values in zip(table.index, table.to_numpy(), strict=True)
    ]
    return header, rows


def _has_index(table: pd.DataFrame) -> bool:
    """A named index (e.g. ``method``) is a column to print; a default RangeIndex is not."""
    return table.index.name is not None


def _index_names(table: pd.DataFrame) -> list[str]:
    return [str(table.index.name)] if _has_index(table) else []


def _value_text(value: object) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:g}"
    return str(value)


TEX_ESCAPES = (
    ("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
    ("±", r"$\pm$"), ("–", "--"), ("·", r"$\cdot$"),
)  # fmt: skip


def _tex(text: str) -> str:
    for char, escaped in TEX_ESCAPES:
        text = text.replace(char, escaped)
    return text


def method_order(methods: pd.Index | list[str]) -> list[str]:
    """Lower bound and known methods first, others alphabetically, joint (upper bound) last."""
    present = set(methods)
    known = [m for m in METHOD_ORDER[:-1] if m in present]
    joint = [m for m in METHOD_ORDER[-1:] if m in present]
    return known + sorted(present - set(METHOD_ORDER)) + joint


def _ordered(best: pd.DataFrame) -> pd.DataFrame:
    """Rows by benchmark, task count, scenario (task, domain, class), then method order."""
    scenario_rank = {s: i for i, s in enumerate(SCENARIO_LABELS)}
    method_rank = {m: i for i, m in enumerate(method_order(list(best["method"].unique())))}
    key = best.assign(
        _s=best["scenario"].map(scenario_rank).fillna(99), _m=best["method"].map(method_rank)
    )
    key = key.sort_values(["benchmark", "n_tasks", "_s", "_m"], kind="stable")
    return key.drop(columns=["_s", "_m"]).reset_index(drop=True)
