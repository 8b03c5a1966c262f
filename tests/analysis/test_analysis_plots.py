"""Every plot function draws the right numbers and writes a non-empty PNG and PDF."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from analysis_fixtures import raw_rows

from analysis import plots
from analysis.importance import param_importances
from analysis.load import AnalysisError
from analysis.order import cell_title, ordered_studies
from analysis.tables import best_configs, chosen_trials


def _written(fig, stem: Path) -> None:
    png, pdf = plots.save_figure(fig, stem)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 2_000


def _trial(results):
    row = best_configs(results).iloc[0]
    return row, chosen_trials(results, row)["trial_id"].iloc[0]


def test_accuracy_matrix_heatmap(results, raw_tasks, tmp_path):
    row, trial_id = _trial(results)
    fig = plots.plot_accuracy_matrix(results, row["sweep"], trial_id)
    image = fig.axes[0].images[0].get_array()
    rows = raw_rows(raw_tasks, row["sweep"], trial_id)
    T = int(row["n_tasks"])
    assert image.shape == (T + 1, T)
    for _, r in rows.iterrows():
        assert image[int(r["tasks_learned"]), int(r["task"])] == pytest.approx(100 * r["accuracy"])
    _written(fig, tmp_path / "matrix")


def test_task_curves_show_each_task_and_the_average(results, raw_tasks, tmp_path):
    row, trial_id = _trial(results)
    fig = plots.plot_task_curves(results, row["sweep"], trial_id)
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.lines]
    T = int(row["n_tasks"])
    assert [f"task {j + 1}" for j in range(T)] + ["average"] == [
        lab for lab in labels if not lab.startswith("_")
    ]
    rows = raw_rows(raw_tasks, row["sweep"], trial_id)
    last = rows[rows["tasks_learned"] == T]
    average = ax.lines[-1].get_ydata()
    assert average[-1] == pytest.approx(100 * last["accuracy"].mean())  # the final average accuracy
    _written(fig, tmp_path / "curves")


def test_average_accuracy_lines_are_means_over_seeds(results, raw_tasks, tmp_path):
    best = best_configs(results)
    fig = plots.plot_average_accuracy(results, best)
    drawn = {
        (ax.get_title(), line.get_label().split(" (n=")[0]): line.get_ydata()
        for ax in fig.axes
        for line in ax.lines
    }
    row = best.iloc[-1]  # a different row than the other tests use
    curves = []
    for trial_id in chosen_trials(results, row)["trial_id"]:
        rows = raw_rows(raw_tasks, row["sweep"], trial_id)
        curve = []
        # docs/references.md, Metrics: mean over j < i of R[i-1][j]
        for i in range(1, int(row["n_tasks"]) + 1):
            step = rows[(rows["tasks_learned"] == i) & (rows["task"] < i)]
            curve.append(step["accuracy"].mean())
        curves.append(curve)
    panel = cell_title(row["benchmark"], row["scenario"], row["n_tasks"])
    expected = 100 * np.mean(curves, axis=0)
    np.testing.assert_allclose(drawn[panel, row["method"]], expected, rtol=1e-9)
    scenarios = [ax.get_title().split(", ")[1] for ax in fig.axes if ax.get_visible()]
    assert scenarios == sorted(scenarios, key=["Task-IL", "Domain-IL", "Class-IL"].index)
    assert all(ax.get_shared_y_axes().joined(fig.axes[0], ax) for ax in fig.axes[1:])
    _written(fig, tmp_path / "average")


def test_sensitivity_small_multiples_draw_cut_trials_apart(results, tmp_path):
    for sweep, info in results.sweeps.items():
        fig = plots.plot_sensitivity(results, sweep)
        search = results.trials[
            (results.trials["sweep"] == sweep) & (results.trials["phase"] == "search")
        ]
        studies = ordered_studies(search)
        cut = search["status"].isin(["stopped", "diverged"]).any()
        main = fig.axes[:: 2 if cut else 1]
        assert len(main) == len(info.params) * len(studies)  # one panel per parameter and study
        assert all(ax.get_shared_y_axes().joined(main[0], ax) for ax in main[1:])  # one y-axis
        for k, ax in enumerate(main):
            param, study = info.params[k // len(studies)], studies[k % len(studies)]
            rows = search[search["study"] == study]
            assert ax.get_xscale() == ("log" if param.log else "linear")
            done = rows[rows["status"] == "completed"]
            np.testing.assert_allclose(
                sorted(ax.collections[0].get_offsets()[:, 1]), sorted(100 * done["objective"])
            )  # only completed trials sit on the objective axis
            if cut:
                strip = fig.axes[fig.axes.index(ax) + 1]
                drawn = [tuple(p) for c in strip.collections for p in c.get_offsets()]
                assert sorted(y for _, y in drawn) == sorted(
                    rows.loc[rows["status"].isin(["stopped", "diverged"]), "tasks_completed"]
                )  # stopped and diverged trials at the tasks they reached
        labels = {t.get_text() for t in fig.legends[0].get_texts()}
        statuses = set(search["status"])
        assert ("stopped" in statuses) == any(lab.startswith("stopped") for lab in labels)
        assert ("diverged" in statuses) == any(lab.startswith("diverged") for lab in labels)
        _written(fig, tmp_path / f"sensitivity-{sweep}")
    lwf = plots.plot_sensitivity(results, "lwf-small", "lr")
    titles = [ax.get_title() for ax in lwf.axes if ax.get_title()]
    assert [t.split(", ")[1] for t in titles] == ["Task-IL", "Domain-IL"]  # not alphabetical


def test_pareto_front():
    forgetting = np.array([0.10, 0.05, 0.20, 0.05, 0.30])
    plasticity = np.array([0.80, 0.60, 0.90, 0.50, 0.85])
    # 1 (least forgetting), 0 (better plasticity), 2 (best plasticity); 3 and 4 are dominated
    assert plots.pareto_front(forgetting, plasticity).tolist() == [1, 0, 2]


def test_stability_plasticity_scatter(results, tmp_path):
    fig = plots.plot_stability_plasticity(results)
    done = results.completed.dropna(subset=["val_forgetting", "val_plasticity"])
    points = sum(len(c.get_offsets()) for ax in fig.axes for c in ax.collections)
    assert points == len(done)
    assert any(line.get_label() == "Pareto front" for ax in fig.axes for line in ax.lines)
    _written(fig, tmp_path / "stability")


def test_importance_sums_to_one(results, tmp_path):
    for sweep, info in results.sweeps.items():
        if len(info.params) < 2:
            with pytest.raises(AnalysisError, match="importance compares two or more"):
                plots.plot_importance(results, sweep)
            continue
        study = sorted(results.trials.loc[results.trials["sweep"] == sweep, "study"].unique())[0]
        for evaluator in ("fanova", "ped-anova"):
            values = param_importances(results, sweep, study, evaluator)
            assert sorted(values.index) == sorted(p.name for p in info.params)
            assert values.sum() == pytest.approx(1.0) and (values >= 0).all()
        _written(plots.plot_importance(results, sweep, study), tmp_path / f"importance-{sweep}")
    with pytest.raises(AnalysisError, match="unknown importance evaluator"):
        param_importances(results, sweep, study, "shap")


def test_search_progress_is_the_running_best_of_completed_trials(results, raw_trials, tmp_path):
    sweep = "lwf-small"  # has stopped and diverged trials
    fig = plots.plot_search_progress(results, sweep)
    rows = raw_trials[(raw_trials["sweep"] == sweep) & (raw_trials["phase"] == "search")]
    rows = rows.assign(study=rows["method"] + " on " + rows["cell"])
    first = ordered_studies(rows)[0]
    assert first.endswith("/task/3")
    rows = rows[rows["study"] == first].sort_values(["started_at", "trial_id"])
    assert (rows["status"] != "completed").any()
    best, expected = -math.inf, []
    for value, status in zip(rows["objective"], rows["status"], strict=True):
        best = max(best, value) if status == "completed" else best
        expected.append(100 * best)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), expected)
    _written(fig, tmp_path / "progress")


def test_cell_grid_reads_like_the_comparison_table():
    from analysis.order import cell_layout

    cells = [("permuted-digits", "domain", 5)] + [
        ("split-mnist", s, n) for n in (2, 5) for s in ("task", "domain", "class")
    ]
    rows, columns, places = cell_layout(cells)
    assert (rows, columns) == (3, 3)  # a row per benchmark and task count, a column per scenario
    assert places[("permuted-digits", "domain", 5)] == (0, 1)  # under Domain-IL, not first
    assert [places[("split-mnist", s, 5)] for s in ("task", "domain", "class")] == [
        (2, 0),
        (2, 1),
        (2, 2),
    ]
