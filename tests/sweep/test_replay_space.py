"""replay.yaml and per-method search parameters: a hyperparameter is searched for the listed
methods that declare it (DER++'s alpha and beta, not ER), checked without Ray and run on Ray."""

from __future__ import annotations

import pandas as pd
import pytest
from sweep_helpers import study_trials, write_space

from cl_core.config import RunConfig
from sweep.__main__ import main
from sweep.runner import Options, run_sweep
from sweep.space import load_space
from sweep.trial_config import TrialPlan, launch_run


def test_replay_space_searches_each_methods_own_hyperparameters():
    spec = load_space("replay.yaml")
    assert spec.methods == ("er", "derpp")
    assert [(c.benchmark, c.scenario, c.n_tasks) for c in spec.cells] == [
        ("split-mnist", "class", 5)
    ]
    assert {p.name for p in spec.params_for("er")} == {"budget", "lr"}
    assert {p.name for p in spec.params_for("derpp")} == {"budget", "alpha", "beta", "lr"}
    # the three-scenario protocol (docs/references.md): MLP 400-400, batch 128, 2,000 iterations
    base = spec.base_config("derpp", spec.cells[0])
    assert (base["hidden"], base["batch_size"], base["iterations"]) == ([400, 400], 128, 2000)
    assert base["epochs"] is None
    # a trial's values reach the method that declares them, as method hyperparameters
    values = {"alpha": 0.5, "budget": 50, "beta": 2.0, "lr": 3e-4}
    plan = TrialPlan("t0", unit=0, phase="search", values=values)
    cfg = launch_run(RunConfig.from_dict(base), plan).config
    assert cfg.method_params == {"alpha": 0.5, "beta": 2.0, "budget": 50} and cfg.lr == 3e-4


def test_replay_space_dry_run_says_which_method_each_parameter_is_for(capsys, tmp_path):
    assert main(["--space", "replay.yaml", "--dry-run", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "method er, derpp" in out and "split-mnist/class/5" in out
    assert "hp_alpha: loguniform [0.03, 10] (for derpp only)" in out
    assert "hp_budget: int [10, 500] log\n" in out  # both methods
    assert "trials in all: 78 (2 studies (method x cell) x (30 search + 9 final))" in out
    assert not (tmp_path / "out").exists()


def test_a_fixed_hyperparameter_applies_to_the_methods_that_declare_it(tmp_path):
    text = """
method: [er, derpp]
hyperparams: {mixing: concat, beta: 2.0, budget: 20}
search: {lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}}
grid: {benchmark: split-digits, scenario: class, n_tasks: 5}
"""
    spec = load_space(write_space(tmp_path, text))
    cell = spec.cells[0]
    assert spec.base_config("er", cell)["method_params"] == {"mixing": "concat", "budget": 20}
    assert spec.base_config("derpp", cell)["method_params"] == {"beta": 2.0, "budget": 20}


def test_out_of_range_value_is_checked_against_each_declaring_method(tmp_path, capsys):
    text = """
method: [er, derpp]
search: {budget: {type: int, low: -5, high: 10}}
grid: {benchmark: split-digits, scenario: class, n_tasks: 5}
"""
    assert main(["--space", str(write_space(tmp_path, text)), "--dry-run"]) == 2
    assert "search.budget: -5 is outside er's valid values for budget" in capsys.readouterr().err


@pytest.fixture(scope="module")
def replay_sweep(local_ray, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("replay")
    text = """
method: [er, derpp]
train: {hidden: "32", epochs: 1, batch_size: 32}
search:
  budget: {type: int, low: 5, high: 20}
  alpha: {type: loguniform, low: 0.1, high: 1.0}
  lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}
grid: {benchmark: split-digits, scenario: class, n_tasks: 2}
budget: {trials: 2}
resources: {cpus: 1}
final: {top_k: 1, seeds: 1}
"""
    spec = load_space(write_space(tmp, text, "replay-tiny.yaml"))
    return run_sweep(spec, Options(out=tmp / "out", command="pytest"))


def test_each_method_is_searched_and_recorded_with_its_own_parameters(replay_sweep):
    trials = pd.read_parquet(replay_sweep / "trials.parquet")
    assert set(trials.status) == {"completed"}
    assert trials.groupby(["method", "phase"]).size().to_dict() == {
        ("derpp", "final"): 1,
        ("derpp", "search"): 2,
        ("er", "final"): 1,
        ("er", "search"): 2,
    }
    er, derpp = trials[trials.method == "er"], trials[trials.method == "derpp"]
    assert er.hp_alpha.isna().all() and (er.hp_mixing == "weighted").all()
    assert derpp.hp_alpha.between(0.1, 1.0).all() and (derpp.hp_beta == 0.5).all()
    assert trials.hp_budget.between(5, 20).all()
    cell = "split-digits/class/2"
    assert {frozenset(t.params) for t in study_trials(replay_sweep, "er", cell)} == {
        frozenset({"budget", "lr"})
    }
    for t in study_trials(replay_sweep, "derpp", cell):
        row = derpp[derpp.trial_id == t.user_attrs["trial_id"]].iloc[0]
        assert set(t.params) == {"budget", "alpha", "lr"}
        assert t.params["alpha"] == pytest.approx(row.hp_alpha)
    # the final phase re-runs each method's best config with its own values
    for _, rows in trials.groupby("method"):
        final = rows[rows.phase == "final"].iloc[0]
        source = rows[(rows.phase == "search") & (rows.config_id == final.config_id)].iloc[0]
        assert final.hp_budget == source.hp_budget and final.lr == source.lr
