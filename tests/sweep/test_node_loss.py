"""A worker node removed mid-trial (Ray's in-process cluster, loopback): the trial restarts on
another node from its last checkpoint, in the same Optuna trial and row, and ends with the numbers
of a run that never failed; once per trial and once with populations.

The cluster: a head without CPUs (the driver, the data, the stop board) and two one-CPU workers.
A watcher thread waits for a trial's first checkpoint in the sweep folder, then removes the worker
node that trial runs on (its checkpoint names it); a fresh node replaces it once the sweep has
ended.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from ray.cluster_utils import Cluster
from sweep_helpers import study_trials, write_space

from cl_core.config import RunConfig
from cl_core.population import run_population
from cl_core.trainer import RunResult, train
from cl_core.validation import validated
from sweep.runner import Options, run_sweep
from sweep.space import load_space

# Tasks long enough (a few seconds per trial) that the node is gone before its trial ends: the
# watcher removes it at the first checkpoint, and a raylet killed takes a moment to go.
SPACE = """
method: ewc
train: {hidden: "16", iterations: 2500, batch_size: 32, lr: 0.01}
search:
  lambda: {type: loguniform, low: 1, high: 1.0e4}
grid: {benchmark: split-digits, scenario: class, n_tasks: 5}
budget: {trials: 2}
final: {top_k: 1, seeds: 1}
resources: {cpus: 1, max_failures: 2}
loggers: []
"""


@pytest.fixture(scope="module")
def cluster():
    """One in-process cluster for the module: a CPU-less head and two one-CPU workers."""
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False},
    )
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


class NodeKiller(threading.Thread):
    """Removes the worker node of the first trial that has checkpointed its first task."""

    def __init__(self, cluster: Cluster, folder: Path) -> None:
        super().__init__(daemon=True)
        self.cluster, self.folder = cluster, folder
        self.removed = False
        self.seen: list[str] = []  # the files of the checkpoint that fired it
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            for meta in self.folder.glob("ray/run-*/*/checkpoint_*/trial.json"):
                try:
                    node_id = json.loads(meta.read_text())["node"].rsplit("/", 1)[-1]
                except (OSError, ValueError, KeyError):
                    continue  # being written
                node = next(
                    (n for n in self.cluster.worker_nodes if n.node_id.startswith(node_id)), None
                )
                if node is not None:
                    self.seen = sorted(p.name for p in meta.parent.iterdir())
                    self.cluster.remove_node(node, allow_graceful=False)
                    self.removed = True
                    return


def _sweep(cluster: Cluster, tmp_path: Path, name: str, sets: list[str], space: str = SPACE):
    spec = load_space(write_space(tmp_path, space, f"{name}.yaml"), sets=[f"name={name}", *sets])
    killer = NodeKiller(cluster, tmp_path / "out" / name)
    killer.start()
    try:
        folder = run_sweep(spec, Options(out=tmp_path / "out", address=cluster.address, quiet=True))
    finally:
        killer.stop.set()
        killer.join(timeout=30)
        if killer.removed:  # back to two workers (only the main thread may start a node)
            cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
    assert killer.removed, "no node was removed: the trials ended before a checkpoint was seen"
    trials = pd.read_parquet(folder / "trials.parquet")
    tasks = pd.read_parquet(folder / "tasks.parquet")
    return spec, folder, trials, tasks, killer.seen


def _config(spec, row) -> RunConfig:
    """The RunConfig the sweep trained for ``row`` (its searched lambda and its seeds)."""
    method, cell = spec.units[0]
    base = spec.base_config(method, cell)
    params = {**base["method_params"], "lambda": float(row["hp_lambda"])}
    settings = {"data_seed": int(row["data_seed"]), "train_seed": int(row["train_seed"])}
    return validated(RunConfig.from_dict({**base, **settings, "method_params": params}))


def _matrix(tasks: pd.DataFrame, trial_id: str, split: str) -> np.ndarray:
    rows = tasks[(tasks.trial_id == trial_id) & (tasks.split == split)]
    return rows.pivot(index="tasks_learned", columns="task", values="accuracy").to_numpy()


def _check_rows(folder: Path, trials: pd.DataFrame, tasks: pd.DataFrame) -> pd.DataFrame:
    """Every search and final row once, each completed; the restarted ones; the Optuna trials."""
    assert sorted(trials.phase) == ["final", "search", "search"]
    assert trials.trial_id.is_unique and set(trials.status) == {"completed"}
    assert (trials.tasks_completed == 5).all()
    restarted = trials[trials.restarts >= 1]
    assert len(restarted) >= 1
    assert (trials.restarts >= 0).all()
    # one tasks row per (trial, tasks learned, task, split): nothing reported twice
    key = ["trial_id", "tasks_learned", "task", "split"]
    assert not tasks.duplicated(key).any() and len(tasks) == 3 * 6 * 5 * 2
    search = study_trials(folder, "ewc", "split-digits/class/5")
    assert [t.state.name for t in search] == ["COMPLETE", "COMPLETE"]  # the same Optuna trials
    for trial in search:  # each step reported once, the replayed ones not again
        assert sorted(trial.intermediate_values) == [1, 2, 3, 4, 5]
    return restarted


def test_a_trial_whose_node_is_removed_restarts_elsewhere_and_ends_as_if_nothing_happened(
    cluster, tmp_path, capfd
):
    spec, folder, trials, tasks, _ = _sweep(cluster, tmp_path, "per-trial", [])
    restarted = _check_rows(folder, trials, tasks)
    err = capfd.readouterr().err
    print(err)  # shown by pytest -s or on failure: the console of a restart
    lines = [line for line in err.splitlines() if "restarting from its last finished task" in line]
    assert len(lines) == trials.restarts.sum()
    assert all(line.startswith("trial ewc-") and ("node lost" in line or "worker died" in line)
               for line in lines), lines  # fmt: skip
    assert "Traceback" not in err
    torch.set_num_threads(1)  # as the trainables run
    for _, row in restarted.iterrows():
        whole = RunResult.from_reports(_config(spec, row), list(train(_config(spec, row))))
        assert np.array_equal(_matrix(tasks, row.trial_id, "test"), whole.acc_test)
        assert np.array_equal(_matrix(tasks, row.trial_id, "val"), whole.acc_val)
    assert not list(folder.glob("ray/run-*/*/checkpoint_*"))  # removed once the trials ended


def test_a_population_whose_node_is_removed_restarts_elsewhere_with_every_member(cluster, tmp_path):
    spec, folder, trials, tasks, _ = _sweep(
        cluster, tmp_path, "population", ["resources.population=2", "resources.max_concurrent=1"]
    )  # one slot: the two search trials train as one population
    restarted = _check_rows(folder, trials, tasks)
    torch.set_num_threads(1)
    for population, rows in restarted.groupby(restarted.population.fillna("")):
        members = trials[trials.population == population] if population else rows
        members = members.sort_values("trial_id")  # the order the population was asked in
        cfgs = [_config(spec, row) for _, row in members.iterrows()]
        results = run_population(cfgs) if population else [
            RunResult.from_reports(cfgs[0], list(train(cfgs[0])))
        ]  # fmt: skip
        for (_, row), whole in zip(members.iterrows(), results, strict=True):
            assert np.array_equal(_matrix(tasks, row.trial_id, "test"), whole.acc_test)
            assert np.array_equal(_matrix(tasks, row.trial_id, "val"), whole.acc_val)
    assert trials[trials.phase == "search"].population.nunique() == 1  # one population of two
    assert restarted.population.notna().any()  # the population was the one restarted


PER_TASK_SPACE = """
method: ewc
train: {hidden: "16", iterations: 800, batch_size: 32, lr: 0.01}
hyperparams: {lambda: 100.0}
grid: {benchmark: split-digits, scenario: class, n_tasks: 5}
selection: {protocol: per-task, drop: 0.0, lr_grid: [0.01], max_attempts: 2}
budget: {trials: 2}
final: {top_k: 1, seeds: 1}
resources: {cpus: 1, max_failures: 2}
loggers: []
"""


def test_a_per_task_trial_whose_node_is_removed_continues_with_its_choices(cluster, tmp_path):
    """Per-task selection (lr and λ chosen at each task, inside the trial): the restarted trial
    continues from its last finished task with the choices made before the loss, and ends with
    the numbers and choices of an uninterrupted run."""
    from cl_core.per_task import PerTaskSettings, per_task_train

    spec, folder, trials, tasks, seen = _sweep(cluster, tmp_path, "per-task", [], PER_TASK_SPACE)
    assert "run.pt" in seen  # the checkpoint Tune held carried the run (a restart continues)
    restarted = _check_rows(folder, trials, tasks)
    torch.set_num_threads(1)
    settings = PerTaskSettings(drop=0.0, lr_grid=(0.01,), max_attempts=2)
    method, cell = spec.units[0]
    for _, row in restarted.iterrows():
        seeds = {"data_seed": int(row["data_seed"]), "train_seed": int(row["train_seed"])}
        cfg = RunConfig.from_dict({**spec.base_config(method, cell), **seeds})
        reports = list(per_task_train(cfg, settings=settings))
        whole = RunResult.from_reports(cfg, reports)
        assert np.array_equal(_matrix(tasks, row.trial_id, "test"), whole.acc_test)
        assert np.array_equal(_matrix(tasks, row.trial_id, "val"), whole.acc_val)
        choices = [dataclasses.asdict(r.choice) for r in reports[1:]]
        assert json.loads(row.per_task_choices) == json.loads(json.dumps(choices))
