"""The report's first screen: who wins in each cell, with which configuration, at what cost.

:func:`reading` says it in two lines of text; :func:`summary_display` is the table beside it (the
chosen configuration of each method and cell, its test average accuracy and its study's compute),
:func:`summary_numbers` the same numbers for the CSV file.
"""

from __future__ import annotations

import pandas as pd

from analysis.cost import cost_axis, cost_trials, study_cost
from analysis.load import CELL_KEYS, Results
from analysis.order import cell_title, scenario_label
from analysis.tables import PCT
from contract.formatting import format_duration, format_hours, format_pm


def reading(results: Results, best: pd.DataFrame) -> str:
    """Two lines: the leading method of each cell on test average accuracy and its lead over the
    next; then what the sweeps cost and how much of it the search took."""
    leads = []
    several = best["protocol"].nunique() > 1  # then each cell's lead is per protocol
    keys = ["benchmark", "n_tasks", "scenario", "protocol"]
    for _, rows in best.groupby(keys, sort=False):
        rows = rows.sort_values("test_avg_acc_mean", ascending=False, kind="stable")
        top = rows.iloc[0]
        where = cell_title(top["benchmark"], top["scenario"], top["n_tasks"])
        where += f" ({top['protocol']})" if several else ""
        text = (
            f"{where}: {top['method']} "
            f"{format_pm(top['test_avg_acc_mean'], top['test_avg_acc_sem'])}% (n={int(top['n'])})"
        )
        if len(rows) > 1:
            gap = 100 * (top["test_avg_acc_mean"] - rows.iloc[1]["test_avg_acc_mean"])
            text += f", {gap:.1f} points above {rows.iloc[1]['method']}"
        leads.append(text)
    first = "Best test average accuracy per cell: " + "; ".join(leads) + "."
    return f"{first} {_cost_sentence(results)}"


def _cost_sentence(results: Results) -> str:
    trials = cost_trials(results)
    column, unit = cost_axis(trials)
    total = trials[column].sum()
    search = trials.loc[trials["phase"] == "search", column].sum()
    share = f", {100 * search / total:.0f}% of it in the search" if total > 0 else ""
    return (
        f"Cost: {compute_text(total, unit)} over {len(trials)} trials{share} (per method: the "
        "cost table and the accuracy-vs-cost figure)."
    )


def compute_text(seconds: float, unit: str) -> str:
    """'1.25 CPU-hours', or under six minutes '21.2 s of CPU time' (hours that small read badly)."""
    if seconds < 360:
        return f"{format_duration(seconds)} of {_kind(unit)}"
    return f"{format_hours(seconds)} {unit.split(' (')[0]}"


def summary_display(results: Results, best: pd.DataFrame) -> pd.DataFrame:
    """method, cell, configuration (4 significant digits), test average accuracy, and what its
    study cost (search + final phase) as a span of CPU (or GPU) time."""
    cost = _with_cost(results, best)
    shared = best[["benchmark", "n_tasks"]].drop_duplicates().shape[0] == 1
    cells = [
        scenario_label(s) if shared else f"{b} ({n} tasks), {scenario_label(s)}"
        for b, s, n in best[["benchmark", "scenario", "n_tasks"]].itertuples(index=False)
    ]
    if best["protocol"].nunique() > 1:  # the selection protocol tells the rows of a cell apart
        cells = [
            f"{cell}, {protocol}" for cell, protocol in zip(cells, best["protocol"], strict=True)
        ]
    return pd.DataFrame(
        {
            "method": best["method"].to_numpy(),
            "cell": cells,
            "configuration": best["params_shown"].to_numpy(),
            "test avg. acc. (%)": [
                format_pm(m, s, int(n))
                for m, s, n in best[["test_avg_acc_mean", "test_avg_acc_sem", "n"]].itertuples(
                    index=False
                )
            ],
            _kind(cost["unit"].iloc[0]): [format_duration(3600 * h) for h in cost["hours"]],
        }
    )


def _kind(unit: str) -> str:
    """'CPU time' for CPU-hours, 'GPU time', or 'trial time' (wall clock)."""
    return f"{unit.split('-')[0]} time" if "-hours" in unit else "trial time"


def summary_numbers(results: Results, best: pd.DataFrame) -> pd.DataFrame:
    """The numbers of :func:`summary_display` (CSV): exact parameters, percent, hours."""
    cost = _with_cost(results, best)
    numbers = best[[*CELL_KEYS, "sweep", "config_id", "params", "n"]].copy()
    numbers[f"test_avg_acc_mean{PCT}"] = 100 * best["test_avg_acc_mean"]
    numbers[f"test_avg_acc_sem{PCT}"] = 100 * best["test_avg_acc_sem"]
    numbers["cost_hours"] = cost["hours"].to_numpy()
    numbers["cost_unit"] = cost["unit"].to_numpy()
    return numbers


def _with_cost(results: Results, best: pd.DataFrame) -> pd.DataFrame:
    """``best``'s rows with their study's compute (``hours``, ``unit``), in ``best``'s order."""
    keys = ["sweep", *CELL_KEYS]
    return best[keys].merge(study_cost(results), on=keys, how="left")
