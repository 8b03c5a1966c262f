"""A task-free stream sweep on a real local Ray: stream settings searched from YAML, the
accuracy-over-time table in Parquet, and analysis drawing it."""

from __future__ import annotations

import pandas as pd
import pytest
from sweep_helpers import documented_columns, write_space

from analysis.__main__ import main as analysis_main
from analysis.curves import average_curves, load_curves, plot_accuracy_over_time
from analysis.load import load_results
from sweep.runner import Options, run_sweep
from sweep.space import load_space

STREAM_SPACE = """
method: [finetune, ewc]
train:
  hidden: "32"
  batch_size: 32
  lr: 0.01
  iterations: 20
  stream: fuzzy-boundaries
  transition: 10
  eval_every: 10
search:
  update_every: {type: categorical, choices: [5, 10]}
grid: {benchmark: split-digits, scenario: class, n_tasks: 5}
sampler: grid
resources: {cpus: 1}
final: {top_k: 1, seeds: 2}
"""
STEPS = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]  # every 10 steps of 5 x 20


@pytest.fixture(scope="module")
def stream_sweep(local_ray, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stream")
    spec = load_space(write_space(tmp, STREAM_SPACE, "stream.yaml"))
    return run_sweep(spec, Options(out=tmp / "out", command="pytest"))


def test_curves_parquet_holds_every_evaluation_of_every_trial(stream_sweep):
    trials = pd.read_parquet(stream_sweep / "trials.parquet")
    curves = pd.read_parquet(stream_sweep / "curves.parquet")
    assert len(trials) == 2 * (2 + 2)  # per method: 2 searched configs + 2 final seeds
    assert set(trials["status"]) == {"completed"}
    assert set(trials["stream"]) == {"fuzzy-boundaries"} and set(trials["update_every"]) == {5, 10}
    assert set(curves.columns) == documented_columns("curves")
    for _, rows in curves.groupby("trial_id"):
        assert sorted(rows["iteration"].unique()) == STEPS
        assert len(rows) == len(STEPS) * 5 * 2  # every task, val and test
    # at a nominal task end (step k x 20) the curve equals the accuracy matrix's row
    tasks = pd.read_parquet(stream_sweep / "tasks.parquet")
    end = curves[curves["iteration"] == 60].set_index(["trial_id", "task", "split"])["accuracy"]
    row = tasks[tasks["tasks_learned"] == 3].set_index(["trial_id", "task", "split"])["accuracy"]
    pd.testing.assert_series_equal(end.sort_index(), row.sort_index(), check_names=False)


def test_analysis_averages_the_final_seeds_and_draws_the_figure(stream_sweep, tmp_path):
    results = load_results(stream_sweep)
    curves = load_curves(results)
    average = average_curves(curves)
    assert set(average["method"]) == {"finetune", "ewc"}
    assert set(average["n"]) == {2}  # the final phase's two seeds
    # by hand: finetune at step 100, mean over its final trials of the mean over tasks
    final = curves[
        (curves["method"] == "finetune")
        & (curves["phase"] == "final")
        & (curves["split"] == "test")
        & (curves["iteration"] == 100)
    ]
    by_hand = final.groupby("trial_id")["accuracy"].mean().mean()
    got = average[(average["method"] == "finetune") & (average["iteration"] == 100)]["mean"]
    assert got.item() == pytest.approx(by_hand)
    fig = plot_accuracy_over_time(results)
    top = fig.axes[0]
    assert [line.get_label() for line in top.get_lines()[:2]] == ["finetune (n = 2)", "ewc (n = 2)"]
    assert analysis_main(["curves", str(stream_sweep), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "accuracy_over_time.png").stat().st_size > 0
    assert len(pd.read_csv(tmp_path / "accuracy_over_time.csv")) == 2 * len(STEPS)
