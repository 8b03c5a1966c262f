"""Table numbers recomputed independently from the raw Parquet rows with plain pandas/numpy."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.load import AnalysisError
from analysis.tables import (
    best_configs,
    comparison_numbers,
    comparison_table,
    format_pm,
    metrics_display,
    metrics_numbers,
    selection_display,
    selection_numbers,
    sem,
    write_table,
)
from contract.formatting import format_param, format_short

CELL = ["method", "benchmark", "scenario", "n_tasks"]


def _mean_sem(values: np.ndarray) -> tuple[float, float]:
    """By hand: mean, and SEM = sqrt(sum (x - mean)^2 / (n - 1)) / sqrt(n)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((x - mean) ** 2 for x in values) / (n - 1)) / math.sqrt(n)


def _expected(raw: pd.DataFrame) -> dict[tuple, dict]:
    """The protocol by hand: completed trials; final phase if the cell has one; the config with the
    best mean val_avg_acc; its test metrics over its seeds."""
    out = {}
    done = raw[raw["status"] == "completed"]
    for key, group in done.groupby(CELL):
        if (group["phase"] == "final").any():
            group = group[group["phase"] == "final"]
        else:
            group = group[group["phase"] == "search"]
        scores = {
            cfg: float(np.mean(rows["val_avg_acc"].to_numpy()))
            for cfg, rows in group.groupby(["sweep", "config_id"])
        }
        chosen_key = max(scores, key=scores.get)
        chosen = group[(group["sweep"] == chosen_key[0]) & (group["config_id"] == chosen_key[1])]
        row = {
            "sweep": chosen_key[0],
            "config_id": chosen_key[1],
            "n": len(chosen),
            "val_score": scores[chosen_key],
        }
        for metric in ("avg_acc", "forgetting", "bwt", "fwt", "plasticity"):
            row[metric] = _mean_sem(chosen[f"test_{metric}"].to_numpy())
        out[key] = row
    return out


def test_best_configs_match_an_independent_computation(results, raw_trials):
    best = best_configs(results)
    expected = _expected(raw_trials)
    assert len(best) == len(expected) > 0
    for _, row in best.iterrows():
        want = expected[tuple(row[k] for k in CELL)]
        assert (row["sweep"], row["config_id"], row["n"]) == (
            want["sweep"],
            want["config_id"],
            want["n"],
        )
        assert row["val_score"] == pytest.approx(want["val_score"], rel=1e-12)
        for metric in ("avg_acc", "forgetting", "bwt", "fwt", "plasticity"):
            mean, err = want[metric]
            assert row[f"test_{metric}_mean"] == pytest.approx(mean, rel=1e-12)
            if math.isnan(err):
                assert math.isnan(row[f"test_{metric}_sem"])
            else:
                assert row[f"test_{metric}_sem"] == pytest.approx(err, rel=1e-12)


def test_final_phase_is_used_where_it_exists(results, raw_trials):
    best = best_configs(results)
    for _, row in best.iterrows():
        has_final = (
            (raw_trials["phase"] == "final")
            & (raw_trials["status"] == "completed")
            & (raw_trials["method"] == row["method"])
            & (raw_trials["scenario"] == row["scenario"])
        )
        assert row["source"] == ("final" if has_final.any() else "search")
    assert (best["source"] == "final").any()  # the fixture has a final phase


def test_comparison_table_cells(results):
    best = best_configs(results)
    table = comparison_table(best)
    for _, row in best.iterrows():
        column = (
            f"{row['benchmark']} ({row['n_tasks']} tasks)",
            {"task": "Task-IL", "domain": "Domain-IL", "class": "Class-IL"}[row["scenario"]],
        )
        mean, err = 100 * row["test_avg_acc_mean"], 100 * row["test_avg_acc_sem"]
        text = f"{mean:.1f}" if math.isnan(err) else f"{mean:.1f} ± {err:.1f}"
        assert table.loc[row["method"], column] == f"{text} (n={row['n']})"
    assert table.size == len(best) + (table == "").to_numpy().sum()


def test_sem_and_formatting():
    assert sem(np.array([0.5, 0.7])) == pytest.approx(0.1)  # std(ddof=1)=0.1414, /sqrt(2)
    assert math.isnan(sem(np.array([0.5])))
    assert format_pm(0.6543, 0.0123, 3) == "65.4 ± 1.2 (n=3)"
    assert format_pm(0.6543, math.nan) == "65.4"
    assert format_pm(math.nan, math.nan) == "–"


def _markdown_rows(path: Path) -> list[dict[str, str]]:
    """A Markdown table read back as one dict per row (header -> cell text)."""
    lines = [line.strip().strip("|").split("|") for line in path.read_text().splitlines()]
    header = [cell.strip() for cell in lines[0]]
    return [dict(zip(header, (c.strip() for c in row), strict=True)) for row in lines[2:]]


def test_csv_round_trips_to_the_markdown_numbers(results, tmp_path: Path):
    best = best_configs(results)
    paths = {
        "comparison": write_table(comparison_table(best), tmp_path, "c", comparison_numbers(best)),
        "selection": write_table(selection_display(best), tmp_path, "s", selection_numbers(best)),
        "metrics": write_table(metrics_display(best), tmp_path, "m", metrics_numbers(best)),
    }
    labels = {"task": "Task-IL", "domain": "Domain-IL", "class": "Class-IL"}

    def pm(mean_pct, sem_pct, n=None):
        return format_pm(mean_pct / 100, sem_pct / 100, n)

    md, csv, _ = paths["comparison"]
    cells = {row["method"]: row for row in _markdown_rows(md)}
    numbers = pd.read_csv(csv)
    assert list(numbers.columns) == [
        *CELL,
        "test_avg_acc_mean_pct",
        "test_avg_acc_sem_pct",
        "n",
    ]  # one number per column, the unit in the name
    for _, row in numbers.iterrows():
        column = f"{row['benchmark']} ({row['n_tasks']} tasks) · {labels[row['scenario']]}"
        want = pm(row["test_avg_acc_mean_pct"], row["test_avg_acc_sem_pct"], row["n"])
        assert cells[row["method"]][column] == want
    md, csv, _ = paths["selection"]
    for shown, row in zip(_markdown_rows(md), pd.read_csv(csv).to_dict("records"), strict=True):
        assert shown["search val_avg_acc (%)"] == pm(row["search_val_avg_acc_pct"], math.nan)
        final = pm(row["final_val_avg_acc_mean_pct"], row["final_val_avg_acc_sem_pct"], row["n"])
        assert shown["final val_avg_acc (%)"] == final
        exact = dict(item.split("=", 1) for item in row["params"].split(", "))
        short = dict(item.split("=", 1) for item in shown["parameters"].split(", "))
        assert short.keys() == exact.keys()
        for name, value in exact.items():  # 4 significant digits shown, the exact value in CSV
            assert short[name] == format_short(float(value) if "." in value else value)
    md, csv, _ = paths["metrics"]
    for shown, row in zip(_markdown_rows(md), pd.read_csv(csv).to_dict("records"), strict=True):
        assert shown["avg. acc. (%)"] == pm(
            row["test_avg_acc_mean_pct"], row["test_avg_acc_sem_pct"]
        )
        assert shown["BWT (pp)"] == pm(row["test_bwt_mean_pct"], row["test_bwt_sem_pct"])
        assert int(shown["n"]) == row["n"]


def test_parameters_survive_a_round_trip_at_full_precision(results, raw_trials, tmp_path: Path):
    best = best_configs(results)
    _, csv, _ = write_table(selection_display(best), tmp_path, "s", selection_numbers(best))
    back = pd.read_csv(csv)
    floats = 0
    for (_, row), (_, read) in zip(best.iterrows(), back.iterrows(), strict=True):
        chosen = raw_trials[
            (raw_trials["sweep"] == row["sweep"]) & (raw_trials["config_id"] == row["config_id"])
        ].iloc[0]
        written = dict(item.split("=", 1) for item in row["params"].split(", "))
        for param in results.sweeps[row["sweep"]].params:
            value = chosen[param.column]
            if isinstance(value, float):
                floats += 1
                assert float(written[param.name]) == value  # exact, not rounded
                assert read[param.column] == value
            else:
                assert written[param.name] == format_param(value)
    assert floats >= 3
    assert format_param(50.98612345678901) == "50.98612345678901"
    assert float(format_param(5923816.857481925)) == 5923816.857481925


def test_no_empty_header_rows(results, tmp_path: Path):
    best = best_configs(results)
    for display in (comparison_table(best), selection_display(best), metrics_display(best)):
        md, _, tex = write_table(display, tmp_path, "t")
        header = md.read_text().splitlines()[0]
        assert all(cell.strip() for cell in header.strip("|").split("|"))
        latex = tex.read_text()
        assert "\\toprule" in latex and "\\bottomrule" in latex and "\\caption" not in latex
        head = latex.split("\\toprule", 1)[1].split("\\midrule", 1)[0].strip().splitlines()
        assert all(line.replace("&", "").replace("\\\\", "").strip() for line in head)
    latex = to_latex_with_caption(comparison_table(best), tmp_path)
    assert "\\multicolumn{3}{c}{permuted-digits (3 tasks)}" in latex
    assert "\\caption{Test \\% of val\\_avg\\_acc}" in latex and "\\label{tab:c}" in latex
    assert "$\\pm$" in latex and "±" not in latex


def to_latex_with_caption(display: pd.DataFrame, folder: Path) -> str:
    _, _, tex = write_table(display, folder, "c", caption="Test % of val_avg_acc")
    return tex.read_text()


def test_selection_must_be_on_validation(results):
    with pytest.raises(AnalysisError, match="chosen on validation"):
        best_configs(results, select_on="test_avg_acc")


def test_selecting_on_forgetting_takes_the_lowest(results, raw_trials):
    best = best_configs(results, select_on="val_forgetting")
    done = raw_trials[raw_trials["status"] == "completed"]
    for _, row in best.iterrows():
        group = done[(done[CELL] == row[CELL]).all(axis=1) & (done["phase"] == row["source"])]
        means = group.groupby(["sweep", "config_id"])["val_forgetting"].mean()
        assert row["val_score"] == pytest.approx(means.min(), rel=1e-12)
