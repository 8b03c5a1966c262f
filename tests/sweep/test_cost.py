"""The cost columns (schema 4): a real trial with a known memory budget and network, the counts
of ``sweep.cost.footprint`` by hand, and a population's cost shared among its members."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from sweep_helpers import write_space

from cl_core.config import RunConfig
from cl_core.data import load_dataset
from contract.schema import COST_COLUMNS, SCHEMA_VERSION
from sweep.cost import CostMeter, PopulationMeter, footprint
from sweep.runner import Options, run_sweep
from sweep.space import load_space

KNOWN_BUDGET = """
method: er
train: {hidden: "16", epochs: 1, batch_size: 32}
hyperparams: {budget: 10}
search:
  budget_per: {type: categorical, choices: [class, total]}
grid: {benchmark: permuted-digits, scenario: domain, n_tasks: 3}
sampler: {name: grid}
budget: {trials: 2}
resources: {cpus: 1}
loggers: []
"""
MLP_16 = 64 * 16 + 16 + 16 * 10 + 10
"""An 8x8-digits MLP with one hidden layer of 16 units and 10 outputs (domain-IL)."""


def test_cost_columns_of_a_trial_with_a_known_budget(local_ray, tmp_path):
    spec = load_space(write_space(tmp_path, KNOWN_BUDGET, "budget.yaml"))
    folder = run_sweep(spec, Options(out=tmp_path / "out", quiet=True))
    trials = pd.read_parquet(folder / "trials.parquet").set_index("hp_budget_per")
    assert set(COST_COLUMNS) <= set(trials.columns)
    assert (trials["schema_version"] == SCHEMA_VERSION).all() and (
        trials["status"] == "completed"
    ).all()
    # 10 samples per class of 3 permuted tasks x 10 digits, or 10 in total
    assert trials.loc["class", "stored_samples"] == 10 * 3 * 10
    assert trials.loc["total", "stored_samples"] == 10
    assert (trials["trainable_params"] == MLP_16).all()
    assert (trials["cpu_time_s"] > 0).all()
    assert (trials["gpu_time_s"] == 0).all()  # no GPU share held
    assert trials["peak_memory_bytes"].isna().all()  # a CPU reports no per-trial peak


def _cfg(**kw) -> RunConfig:
    base = {"benchmark": "permuted-digits", "scenario": "domain", "n_tasks": 3, "hidden": (16,)}
    return RunConfig.from_dict({**base, **kw})


@pytest.fixture(scope="module")
def digits():
    return load_dataset(_cfg())


def test_footprint_by_hand(digits):
    assert footprint(_cfg(method="finetune"), digits) == {
        "trainable_params": MLP_16,
        "stored_samples": 0,
    }
    class_il = footprint(_cfg(method="er", scenario="class"), digits)  # 30 output units
    assert class_il["trainable_params"] == 64 * 16 + 16 + 16 * 30 + 30
    assert class_il["stored_samples"] == 100 * 30  # the default budget: 100 per class
    total = footprint(
        _cfg(method="der", method_params={"budget": 7, "budget_per": "total"}), digits
    )
    assert total["stored_samples"] == 7
    fromp = footprint(_cfg(method="fromp", method_params={"budget": 5}), digits)
    assert fromp["stored_samples"] == 5 * 30  # memorable points per class
    separate = footprint(_cfg(method="separate", scenario="task"), digits)
    single = footprint(_cfg(method="finetune", scenario="task"), digits)
    assert 0 < separate["trainable_params"] <= single["trainable_params"]  # its width rule
    dgr = footprint(_cfg(method="dgr"), digits)
    assert dgr["trainable_params"] > MLP_16  # the VAE is trained too


def test_footprint_leaves_the_random_state_alone(digits):
    import torch

    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    footprint(_cfg(method="er"), digits)
    assert torch.equal(torch.rand(3), expected)


def test_gpu_seconds_count_the_share():
    meter = CostMeter(gpus=0.25)
    wall_before = meter.seconds()[0]
    gpu = meter.metrics()["gpu_time_s"]
    wall_after = meter.seconds()[0]
    assert 0.25 * wall_before <= gpu <= 0.25 * wall_after


def test_population_members_share_its_cost():
    population = PopulationMeter(3, gpus=0.5)
    sum(range(200_000))  # some CPU time to share
    population.share([0, 1, 2])
    sum(range(200_000))
    population.share([1, 2])  # member 0 was stopped
    wall, cpu = population.lap
    members = [population.metrics(i) for i in range(3)]
    assert sum(m["cpu_time_s"] for m in members) == pytest.approx(cpu)
    assert sum(m["gpu_time_s"] for m in members) == pytest.approx(0.5 * wall)
    assert members[1]["cpu_time_s"] == pytest.approx(members[2]["cpu_time_s"])
    assert members[0]["cpu_time_s"] < members[1]["cpu_time_s"]


def test_a_restarted_trial_goes_on_from_the_cost_it_had_spent(tmp_path, monkeypatch):
    """The checkpoint a trial reports keeps its CPU and GPU seconds (one run's, or each
    population member's share); the restarted trial's meters go on from them. Tune's session
    calls are replaced: only this module's round trip through ``trial.json`` is under test."""
    import shutil
    from types import SimpleNamespace

    from ray import tune

    from sweep import trial_checkpoint
    from sweep.trial_checkpoint import TrialCheckpoint

    reported = []
    monkeypatch.setattr(
        trial_checkpoint.tune, "report", lambda m, checkpoint: reported.append(checkpoint)
    )
    population = PopulationMeter(2, gpus=0.5)
    population.carry({"cpu_time_s": [3.0, 4.0], "gpu_time_s": [1.0, 2.0]})
    trackers = [
        SimpleNamespace(start=time.perf_counter() - 9, started_at="t0", node="a", cost=cost)
        for cost in (CostMeter(gpus=0.5), population.member(0))
    ]
    trackers[0].cost.carry({"cpu_time_s": 7.0, "gpu_time_s": 2.5})
    kept = []
    for i, tracker in enumerate(trackers):
        checkpoint = TrialCheckpoint()
        checkpoint.report({}, 2, tracker)
        kept.append(shutil.copytree(reported[-1].path, tmp_path / f"kept{i}"))
        checkpoint.close()
    fresh = [CostMeter(gpus=0.5), PopulationMeter(2, gpus=0.5)]
    for folder, cost in zip(kept, (fresh[0], fresh[1].member(1)), strict=True):
        restored = tune.Checkpoint.from_directory(str(folder))
        monkeypatch.setattr(trial_checkpoint.tune, "get_checkpoint", lambda c=restored: c)
        restarted = SimpleNamespace(start=time.perf_counter(), started_at=None, cost=cost)
        TrialCheckpoint().resume(restarted)
        assert restarted.started_at == "t0"
    single = fresh[0].metrics()
    assert single["cpu_time_s"] >= 7.0 and single["gpu_time_s"] >= 2.5
    assert fresh[1].spent() == {"cpu_time_s": [3.0, 4.0], "gpu_time_s": [1.0, 2.0]}
    other = PopulationMeter(3)
    other.carry(fresh[1].spent())  # another population's shares: not taken
    assert other.cpu == [0.0] * 3 and other.gpu == [0.0] * 3
