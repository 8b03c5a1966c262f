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
    best_configs_display,
    comparison_table,
    format_pm,
    sem,
    write_table,
)

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


def test_tables_written_as_markdown_csv_latex(results, tmp_path: Path):
    best = best_configs(results)
    display = best_configs_display(best)
    md, csv, tex = write_table(display, tmp_path, "best_configs", numbers=best)
    lines = md.read_text().splitlines()
    assert lines[0].startswith("| method | benchmark |") and len(lines) == 2 + len(best)
    back = pd.read_csv(csv)
    np.testing.assert_allclose(back["test_avg_acc_mean"], best["test_avg_acc_mean"], rtol=1e-12)
    latex = tex.read_text()
    assert latex.startswith("\\begin{tabular}") and "\\pm" in latex and "avg\\_acc" in latex
    md2, _, tex2 = write_table(comparison_table(best), tmp_path, "comparison")
    assert "\\multicolumn" in tex2.read_text()
    assert "Domain-IL" in md2.read_text()


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
