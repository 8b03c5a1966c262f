"""Result tables: the best configuration per method and scenario cell; method x scenario.

Selection follows the project's protocol (docs/design.md, Conventions): configurations are chosen
on validation, test accuracy is only reported. Numbers are mean ± SEM over seeds, SEM = sample
standard deviation (ddof=1) / sqrt(n), as in the three-scenario literature (van de Ven & Tolias
2019; docs/references.md, The three-scenario protocol). Frames keep fractions;
what a reader sees is percent in one format (:mod:`contract.formatting`), and the CSV files hold
the same numbers in percent at full precision, one number per column.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from analysis.load import CELL_KEYS, AnalysisError, Results
from analysis.order import (  # noqa: F401 - re-exported: older notebooks import them from here
    METHOD_ORDER,
    SCENARIO_LABELS,
    method_order,
    scenario_label,
    scenario_rank,
    sort_rows,
)
from analysis.protocol import END_OF_SEQUENCE, protocol_name
from contract.formatting import format_param, format_pm, format_short, sem

__all__ = [
    "METRICS",
    "best_configs",
    "chosen_trials",
    "comparison_numbers",
    "comparison_table",
    "format_pm",
    "params_shown",
    "params_text",
    "selection_display",
    "selection_numbers",
    "sem",
    "metrics_display",
    "metrics_numbers",
    "write_table",
]

METRICS = ("avg_acc", "forgetting", "bwt", "fwt", "plasticity")
"""The metrics reported per table row, on the test split (docs/references.md, Metrics)."""
METRIC_HEADERS = {
    "avg_acc": "avg. acc. (%)",
    "forgetting": "forgetting (pp)",
    "bwt": "BWT (pp)",
    "fwt": "FWT (pp)",
    "plasticity": "plasticity (%)",
}
"""Display headers: accuracies in percent, differences of accuracies in percentage points."""
PCT = "_pct"
"""Suffix of CSV columns in percent (percentage points for forgetting, BWT, FWT)."""


def best_configs(results: Results, select_on: str = "val_avg_acc") -> pd.DataFrame:
    """One row per (method, benchmark, scenario, n_tasks): the configuration chosen on validation.

    Candidates are configurations ``(sweep, config_id)`` of completed trials. Where the cell has a
    final phase (top-k configurations re-run with fresh seeds), the candidates are those re-runs,
    scored by their mean ``select_on`` over the fresh seeds, and the test metrics are mean ± SEM
    over those final-phase seeds (``source = final``). Without a final phase the search trials are
    used the same way (``source = search``), usually with n = 1 and so no SEM.

    Columns: the cell keys, ``sweep``, ``config_id``, ``params`` (the searched values, exactly),
    ``params_shown`` (the same to 4 significant digits, for tables a reader reads),
    one column per searched parameter (its trials.parquet column, e.g. ``hp_lambda``), ``source``,
    ``n``, ``select_on``, ``val_score`` / ``val_sem`` (the selection score over the chosen trials),
    ``search_val`` (the chosen configuration's ``select_on`` in the search: the number it won the
    search with), ``configs_searched`` and ``test_<metric>_mean`` / ``test_<metric>_sem`` for each
    metric of :data:`METRICS`. Whether higher or lower ``select_on`` is better is read from the
    sweeps' sweep.json (the objective's recorded mode, else the metric registry it recorded).
    """
    if not select_on.startswith("val_"):
        raise AnalysisError(
            f"select_on={select_on!r}: configurations are chosen on validation; use a val_ metric"
        )
    done = results.require_completed()
    if select_on not in done.columns:
        raise AnalysisError(f"trials have no column {select_on!r}; try val_avg_acc")
    # Sweeps of different selection protocols are never pooled (their validation numbers
    # measure different things); a transfer sweep reports its evaluation cell, not the cell its
    # search ran on (docs/selection.md).
    protocols = {name: protocol_name(info) for name, info in results.sweeps.items()}
    done = done.assign(protocol=done["sweep"].map(protocols))
    rows = []
    for key, trials in done.groupby([*CELL_KEYS, "protocol"], sort=False):
        cell, protocol = key[:-1], key[-1]
        search = trials[trials["phase"] == "search"]
        lower_is_better = results.direction(select_on, trials["sweep"].unique()) == "min"
        phase = "final" if (trials["phase"] == "final").any() else "search"
        if protocol != END_OF_SEQUENCE and phase == "search":
            continue  # only the final phase of these protocols is reported
        trials = trials[trials["phase"] == phase]
        scores = trials.groupby(["sweep", "config_id"], sort=True)[select_on].mean()
        scores = scores.dropna().sort_values(ascending=lower_is_better, kind="stable")
        if scores.empty:
            continue  # no validation score (val_fraction = 0): nothing to select on
        sweep, config_id = scores.index[0]
        chosen = trials[(trials["sweep"] == sweep) & (trials["config_id"] == config_id)]
        searched = search[(search["sweep"] == sweep) & (search["config_id"] == config_id)]
        row = dict(zip(CELL_KEYS, cell, strict=True))
        row.update(
            protocol=protocol,
            sweep=sweep,
            config_id=config_id,
            params=params_text(results, chosen.iloc[0]),
            params_shown=params_shown(results, chosen.iloc[0]),
            **{p.column: chosen.iloc[0][p.column] for p in results.sweeps[sweep].params},
            source=phase,
            n=len(chosen),
            select_on=select_on,
            val_score=float(scores.iloc[0]),
            val_sem=sem(chosen[select_on]),
            search_val=float(searched[select_on].mean()) if len(searched) else math.nan,
            configs_searched=int(search.loc[search["sweep"] == sweep, "config_id"].nunique()),
        )
        for metric in METRICS:
            values = chosen[f"test_{metric}"]
            row[f"test_{metric}_mean"] = float(values.mean())
            row[f"test_{metric}_sem"] = sem(values)
        rows.append(row)
    if not rows:
        raise AnalysisError(f"no completed trial has a {select_on} value to select on")
    return sort_rows(pd.DataFrame(rows))


def chosen_trials(results: Results, row: pd.Series) -> pd.DataFrame:
    """The completed trials behind one row of :func:`best_configs` (its mean ± SEM is over them)."""
    done = results.completed
    mask = (done["sweep"] == row["sweep"]) & (done["config_id"] == row["config_id"])
    mask &= done["phase"] == row["source"]
    for key in CELL_KEYS:
        mask &= done[key] == row[key]
    return done[mask]


def params_text(results: Results, trial: pd.Series, fmt=format_param) -> str:
    """'lambda=50.98612345678901, lr=0.001': one trial's searched values, exactly (re-typeable;
    the CSV files keep this), or as ``fmt`` writes them."""
    # a parameter searched for other methods of the sweep only is null in this trial's row
    params = [p for p in results.sweeps[trial["sweep"]].params if pd.notna(trial[p.column])]
    return ", ".join(f"{p.name}={fmt(trial[p.column])}" for p in params) or "(defaults)"


def params_shown(results: Results, trial: pd.Series) -> str:
    """'lambda=50.99, lr=0.001': the searched values to 4 significant digits, as tables and
    figure titles show them (the exact ones are in the CSV files and trials.parquet)."""
    return params_text(results, trial, format_short)


def comparison_table(best: pd.DataFrame, metric: str = "avg_acc") -> pd.DataFrame:
    """Methods x (benchmark, scenario): test ``metric`` as 'mean ± SEM (n=..)' in percent.

    The layout of the three-scenario papers (van de Ven & Tolias 2019, 2022): one row per method
    (the index, named ``method``), one column per scenario, grouped by benchmark and task count: a
    two-level column index ``(benchmark (n tasks), Task-IL)``. Empty where a method was not run in
    a cell.
    """
    numbers = comparison_numbers(best, metric)
    value = numbers.apply(
        lambda r: format_pm(
            r[f"test_{metric}_mean{PCT}"] / 100, r[f"test_{metric}_sem{PCT}"] / 100, r["n"]
        ),
        axis=1,
    )
    group = numbers["benchmark"] + " (" + numbers["n_tasks"].astype(str) + " tasks)"
    if "protocol" in numbers:
        group = group + ", " + numbers["protocol"]  # never two protocols in one column
    frame = numbers.assign(
        group=group,
        label=numbers["scenario"].map(scenario_label),
        value=value,
    )
    columns = list(dict.fromkeys(zip(frame["group"], frame["label"], strict=True)))
    table = frame.pivot(index="method", columns=["group", "label"], values="value")
    table = table.reindex(columns=pd.MultiIndex.from_tuples(columns)).fillna("")
    table = table.reindex(method_order(table.index))
    table.columns.names = [None, None]
    table.index.name = "method"
    return table


def comparison_numbers(best: pd.DataFrame, metric: str = "avg_acc") -> pd.DataFrame:
    """The numbers of :func:`comparison_table`, one row per method and cell, in percent (CSV)."""
    numbers = best[CELL_KEYS + ["protocol", "n"]].copy()
    several = numbers["protocol"].nunique() > 1  # then each row says which protocol it is
    numbers[f"test_{metric}_mean{PCT}"] = 100 * best[f"test_{metric}_mean"]
    numbers[f"test_{metric}_sem{PCT}"] = 100 * best[f"test_{metric}_sem"]
    columns = [f"test_{metric}_mean{PCT}", f"test_{metric}_sem{PCT}", "n"]
    return numbers[CELL_KEYS + (["protocol"] if several else []) + columns]


def selection_display(best: pd.DataFrame) -> pd.DataFrame:
    """The chosen configuration of each method and cell, and how it was chosen.

    'search val.' is the validation value the configuration won the search with (one seed, the
    best of 'search candidates'); 'final val.' is its mean ± SEM over the final phase's fresh
    seeds. The gap between them is selection bias (see the report's text).
    """
    select_on = best["select_on"].iloc[0]
    display = _cell_columns(best)
    display["parameters"] = best["params_shown"].to_numpy()
    display["search candidates"] = best["configs_searched"].astype(int).to_numpy()
    display[f"search {select_on} (%)"] = [format_pm(v) for v in best["search_val"]]
    display[f"final {select_on} (%)"] = [
        format_pm(m, s, n) if source == "final" else "no final phase"
        for m, s, n, source in zip(
            best["val_score"], best["val_sem"], best["n"], best["source"], strict=True
        )
    ]
    return display


def selection_numbers(best: pd.DataFrame) -> pd.DataFrame:
    """The numbers of :func:`selection_display` (CSV): percent, one number per column, the
    searched values exact in ``params`` and one column each."""
    select_on = best["select_on"].iloc[0]
    keys = CELL_KEYS + ["sweep", "config_id", "params"]
    params = [c for c in best.columns if c not in _BEST_FIXED_COLUMNS]
    numbers = best[keys + params + ["source", "configs_searched"]].copy()
    final = best["source"] == "final"
    numbers[f"search_{select_on}{PCT}"] = 100 * best["search_val"]
    numbers[f"final_{select_on}_mean{PCT}"] = (100 * best["val_score"]).where(final)
    numbers[f"final_{select_on}_sem{PCT}"] = (100 * best["val_sem"]).where(final)
    numbers["n"] = best["n"].where(final)
    return numbers


def metrics_display(best: pd.DataFrame) -> pd.DataFrame:
    """Test metrics of the chosen configurations: mean ± SEM over its n seeds, in percent."""
    display = _cell_columns(best)
    for metric in METRICS:
        display[METRIC_HEADERS[metric]] = [
            format_pm(m, s)
            for m, s in zip(best[f"test_{metric}_mean"], best[f"test_{metric}_sem"], strict=True)
        ]
    display["n"] = best["n"].astype(int).to_numpy()
    return display


def metrics_numbers(best: pd.DataFrame) -> pd.DataFrame:
    """The numbers of :func:`metrics_display` (CSV), in percent (pp for differences)."""
    numbers = best[CELL_KEYS + ["sweep", "config_id", "source", "n"]].copy()
    for metric in METRICS:
        numbers[f"test_{metric}_mean{PCT}"] = 100 * best[f"test_{metric}_mean"]
        numbers[f"test_{metric}_sem{PCT}"] = 100 * best[f"test_{metric}_sem"]
    return numbers


_BEST_FIXED_COLUMNS = {
    *CELL_KEYS,
    "sweep",
    "config_id",
    "params",
    "params_shown",
    "source",
    "n",
    "select_on",
    "val_score",
    "val_sem",
    "search_val",
    "configs_searched",
    *(f"test_{m}_{s}" for m in METRICS for s in ("mean", "sem")),
}


def _cell_columns(best: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "method": best["method"].to_numpy(),
            "benchmark": best["benchmark"].to_numpy(),
            "scenario": best["scenario"].map(scenario_label).to_numpy(),
            "tasks": best["n_tasks"].astype(int).to_numpy(),
        }
    )


def write_table(
    display: pd.DataFrame,
    out_dir: str | Path,
    name: str,
    numbers: pd.DataFrame | None = None,
    caption: str = "",
) -> list[Path]:
    """Write ``name``.md, .csv and .tex into ``out_dir``; return the paths.

    Markdown (pandas ``to_markdown``) and LaTeX (``Styler.to_latex``: booktabs rules, caption,
    label ``tab:<name>``) show ``display``; the CSV holds ``numbers`` when given (percent at full
    precision, one number per column), else ``display``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.md", out / f"{name}.csv", out / f"{name}.tex"]
    paths[0].write_text(to_markdown(display))
    (display if numbers is None else numbers).to_csv(paths[1], index=False)
    paths[2].write_text(to_latex(display, caption=caption, label=f"tab:{name}"))
    return paths


def flat(display: pd.DataFrame) -> pd.DataFrame:
    """The table with its (named) index as the first column(s), and labels of two-level columns
    joined by ' · ' (empty levels dropped): one header row, nothing empty."""
    frame = display.reset_index() if display.index.name is not None else display
    if isinstance(frame.columns, pd.MultiIndex):
        frame = frame.set_axis(
            [" · ".join(str(part) for part in column if str(part)) for column in frame.columns],
            axis=1,
        )
    return frame


def to_markdown(display: pd.DataFrame) -> str:
    """A GitHub Markdown table (pandas ``to_markdown``; two-level column labels joined by ' · ')."""
    return flat(display).to_markdown(index=False, disable_numparse=True) + "\n"


def to_latex(display: pd.DataFrame, caption: str = "", label: str | None = None) -> str:
    """A booktabs LaTeX table from ``Styler.to_latex``; a two-level column index becomes a
    ``\\multicolumn`` header row above the scenario labels."""
    frame = header_frame(display)
    styler = frame.style.hide(axis="index").format(escape="latex")
    styler = styler.format_index(escape="latex", axis=1)
    text_columns = _text_columns(frame)
    column_format = "".join("l" if c in text_columns else "r" for c in range(frame.shape[1]))
    latex = styler.to_latex(
        hrules=True,
        caption=latex_escape(caption) or None,
        label=label,
        multicol_align="c",
        column_format=column_format,
        position_float="centering",
    )
    return latex.replace("±", r"$\pm$").replace("–", "--").replace("·", r"$\cdot$")


LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}  # fmt: skip


def latex_escape(text: str) -> str:
    """Plain text as LaTeX text (captions; cells are escaped by the Styler)."""
    return "".join(LATEX_SPECIAL.get(char, char) for char in text)


def header_frame(display: pd.DataFrame) -> pd.DataFrame:
    """The table with its named index as a column; under a two-level header the index's name
    goes on the lower row (so no header row is empty)."""
    if display.index.name is None:
        return display
    name = display.index.name
    frame = display.reset_index()
    if isinstance(display.columns, pd.MultiIndex):
        frame.columns = pd.MultiIndex.from_tuples(
            [("", name), *display.columns.to_list()], names=display.columns.names
        )
    return frame


def _text_columns(frame: pd.DataFrame) -> set[int]:
    """Positions of columns that hold words (left-aligned) rather than numbers."""
    out = set()
    for position in range(frame.shape[1]):
        values = frame.iloc[:, position].astype(str)
        if not values.str.match(r"^[\s\d.+\-–±()n=%e]*$").all():
            out.add(position)
    return out
