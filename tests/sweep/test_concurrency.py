"""All cells of a sweep run at the same time on a real local Ray (2 CPUs), each with its own study
and its own ASHA rungs, and each starts its final phase when its own search ends."""

from __future__ import annotations

import sys
import time

import pandas as pd
import pytest
import ray.cloudpickle
from optuna.trial import TrialState
from sweep_helpers import study_trials, write_space

from cl_core.trainer import TaskReport
from sweep.runner import Options, run_sweep
from sweep.space import load_space

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

SPACE = """
method: finetune
train: {hidden: "8"}
search:
  lr: {type: uniform, low: 0.5, high: 1.0}
grid: {benchmark: permuted-digits, scenario: [domain, class], n_tasks: [2, 4]}
sampler: {name: random, seed: 0}
budget: {trials: 4}
early_stopping: {scheduler: asha, grace_tasks: 1, reduction_factor: 2}
final: {top_k: 1, seeds: 1}
loggers: []
"""


def scenario_trainer(cfg, dataset=None, checkpoint=None):
    """Accuracy q - 0.05 i with q = lr in domain-IL, a fifth of it in class-IL; a task takes
    0.05 s in domain-IL, 0.4 s in class-IL.

    Class-IL values all sit below every domain-IL value: rungs shared across cells would stop
    every class-IL trial at its first rung. Domain-IL cells end their search long before the
    class-IL ones, so their final phase should start while those still search.
    """
    n = cfg.n_tasks
    quality = cfg.lr if cfg.scenario == "domain" else cfg.lr / 5
    pause = 0.05 if cfg.scenario == "domain" else 0.4
    yield TaskReport(0, [0.1] * n, [0.1] * n, None, 0.0)
    for i in range(1, n + 1):
        time.sleep(pause)
        acc = [quality - 0.05 * i if j < i else 0.1 for j in range(n)]
        yield TaskReport(i, acc, acc, 1.0, 0.2)


@pytest.fixture(scope="module")
def grid_sweep(local_ray, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cells")
    spec = load_space(write_space(tmp, SPACE, "cells.yaml"))
    folder = run_sweep(spec, Options(out=tmp / "out", train_fn=scenario_trainer, num_cpus=2))
    trials = pd.read_parquet(folder / "trials.parquet")
    for column in ("started_at", "ended_at"):
        trials[column] = pd.to_datetime(trials[column])
    return folder, trials


def test_cells_overlap_in_time(grid_sweep):
    _, trials = grid_sweep
    spans = trials.groupby("cell").agg(start=("started_at", "min"), end=("ended_at", "max"))
    assert len(spans) == 4
    for a in spans.itertuples():
        for b in spans.itertuples():
            assert a.start < b.end and b.start < a.end, (a.Index, b.Index)
    # Every cell started before any cell's search was over: no cell waits for another.
    search = trials[trials.phase == "search"]
    first_starts = search.groupby("cell").started_at.min()
    search_ends = search.groupby("cell").ended_at.max()
    assert first_starts.max() < search_ends.min()


def test_a_cells_final_phase_starts_when_its_own_search_ends(grid_sweep):
    _, trials = grid_sweep
    finals = trials[trials.phase == "final"]
    domain_finals = finals[finals.scenario == "domain"].started_at
    class_search = trials[(trials.phase == "search") & (trials.scenario == "class")]
    assert domain_finals.min() < class_search.ended_at.max()  # not after every cell's search
    for cell, rows in trials.groupby("cell"):
        final = rows[rows.phase == "final"]
        assert len(final) == 1, cell  # top 1 x 1 seed per cell
        assert final.started_at.min() >= rows[rows.phase == "search"].ended_at.max(), cell


def test_each_cell_has_its_own_study_and_its_own_rungs(grid_sweep):
    folder, trials = grid_sweep
    for cell, rows in trials.groupby("cell"):
        search = rows[rows.phase == "search"]
        assert len(search) == 4
        # The first trial to reach each rung of a cell is never stopped: if rungs were shared,
        # class-IL trials (all below domain-IL's values) would all be stopped.
        assert (search.status == "completed").any(), cell
        study = study_trials(folder, "finetune", cell)
        assert sorted(t.user_attrs["trial_id"] for t in study) == sorted(search.trial_id)
        assert not [t for t in study if t.state == TrialState.RUNNING]
    assert (trials.status == "stopped").any()  # ASHA did stop trials


def test_status_block_names_every_cell(local_ray, tmp_path, capsys):
    text = SPACE.replace("budget: {trials: 4}", "budget: {trials: 1}").replace(
        "early_stopping: {scheduler: asha, grace_tasks: 1, reduction_factor: 2}\n", ""
    )
    spec = load_space(write_space(tmp_path, text, "status.yaml"))
    run_sweep(spec, Options(out=tmp_path / "out", train_fn=scenario_trainer, num_cpus=2))
    out = capsys.readouterr().out
    assert "8/8 trials done, 0 running, 0 to go" in out
    for cell in ("domain/2", "domain/4", "class/2", "class/4"):
        assert f"finetune permuted-digits/{cell}" in out
    assert "best val_avg_acc" in out and "ETA" in out
