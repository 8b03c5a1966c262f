"""One RunConfig per trial: built and validated once at launch, carried to the worker in the Tune
config, and the same object writes the trial's row (no Ray needed)."""

from __future__ import annotations

import json

from sweep_helpers import TINY_SPACE, write_space

from cl_core.config import RunConfig
from sweep.results import trial_rows
from sweep.space import load_space
from sweep.trial_config import TrialPlan, launch_run, launched

# Two searched settings that can clash: a fuzzy boundary's transition must fit in a task's
# iterations (each value alone has a partner it works with, so the space is valid).
CLASH_SPACE = """
method: finetune
train: {hidden: "8", iterations: 100}
search:
  stream: {type: categorical, choices: [none, fuzzy-boundaries]}
  transition: {type: int, low: 50, high: 500}
grid: {benchmark: permuted-digits, scenario: domain, n_tasks: 2}
"""


def test_a_run_is_its_base_with_the_plans_values_validated_and_resolved(tmp_path):
    spec = load_space(write_space(tmp_path, TINY_SPACE))
    base = RunConfig.from_dict(spec.base_config(*spec.units[0]))
    plan = TrialPlan("t0", 0, "final", {"lambda": 250.0}, config_id="c", final_rank=1, seed=1007)
    run = launch_run(base, plan)
    assert run.problem is None
    assert run.config.method_params == {"lambda": 250.0}  # as given; the row's are resolved
    assert (run.config.data_seed, run.config.train_seed) == (1007, 1007)
    assert (run.config.hidden, run.config.lr, run.config.epochs) == ((32,), 0.01, 2)
    assert run.method_params["lambda"] == 250.0 and run.method_params["fisher"] == "empirical"
    assert base.method_params == {} and base.data_seed == 0  # the unit's base is left alone


def test_the_worker_trains_exactly_the_config_the_driver_built(tmp_path):
    spec = load_space(write_space(tmp_path, TINY_SPACE))
    plan = TrialPlan("t0", 0, "search", {"lambda": 3.0})
    run = launch_run(RunConfig.from_dict(spec.base_config(*spec.units[0])), plan)
    config = json.loads(json.dumps(run.to_config()))  # what Tune stores and sends: JSON-safe
    assert config["trial_id"] == "t0" and config["values"] == {"lambda": 3.0}
    assert launched(config) == (run.config, None)


def test_a_clash_inside_the_ranges_fails_the_trial_with_the_trainers_message(tmp_path):
    spec = load_space(write_space(tmp_path, CLASH_SPACE))
    base = RunConfig.from_dict(spec.base_config(*spec.units[0]))
    ok = launch_run(base, TrialPlan("ok", 0, "search", {"stream": "none", "transition": 500}))
    assert ok.problem is None and (ok.config.stream, ok.config.transition) == ("none", 500)
    values = {"stream": "fuzzy-boundaries", "transition": 500}
    clash = launch_run(base, TrialPlan("bad", 0, "search", values))
    assert clash.problem is not None and "transition (500 steps)" in clash.problem
    assert launched(clash.to_config())[1] == clash.problem  # the worker raises it
    row, tasks = trial_rows(spec, clash, {"status": "error", "message": clash.problem})
    assert (row["status"], row["stream"], row["transition"]) == ("error", "fuzzy-boundaries", 500)
    assert tasks == []
