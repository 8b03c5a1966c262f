"""The quiet console: Ray's own messages go to <sweep>/ray.log, a failed trial is one line, the
tables show numbers at the precision they deserve and say what they rank by."""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
import ray.cloudpickle
from sweep_helpers import TINY_SPACE, finished_sweep, write_space

from cl_core.trainer import train
from contract import tables
from contract.schema import TRIALS_FILE
from sweep.console import RAY_LOG, failure_line, ray_log_to
from sweep.report import best_table
from sweep.runner import Options, run_sweep
from sweep.space import load_space

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

FAILING = """
method: finetune
train: {hidden: "16", epochs: 1, batch_size: 32}
search:
  lr: {type: categorical, choices: [0.01, 0.5, 0.9]}
grid: {benchmark: permuted-digits, scenario: domain, n_tasks: 2}
sampler: {name: grid}
budget: {trials: 3}
resources: {cpus: 1}
loggers: []
"""


def failing_trainer(cfg, dataset=None, checkpoint=None):
    """The real trainer; lr 0.5 raises after its first task, lr 0.9 kills its worker there."""
    for report in train(cfg, dataset=dataset):
        if report.tasks_learned == 1 and cfg.lr == 0.5:
            raise RuntimeError("boom: injected failure")
        if report.tasks_learned == 1 and cfg.lr == 0.9:
            os._exit(3)  # as an out-of-memory kill would
        yield report


def test_a_failed_trial_is_one_line_and_ray_speaks_to_its_file(local_ray, tmp_path, capfd):
    spec = load_space(write_space(tmp_path, FAILING, "failing.yaml"))
    folder = run_sweep(spec, Options(out=tmp_path / "out", train_fn=failing_trainer))
    out, err = capfd.readouterr()
    text = out + err
    trials = pd.read_parquet(folder / "trials.parquet").set_index("lr")
    assert list(trials.loc[[0.5, 0.9], "status"]) == ["error", "error"]
    assert trials.loc[0.01, "status"] == "completed"
    failed = {line.split()[1]: line for line in text.splitlines() if line.startswith("failed: ")}
    assert set(failed) == set(trials.loc[[0.5, 0.9], "trial_id"]), text
    raised, killed = (failed[trials.loc[lr, "trial_id"]] for lr in (0.5, 0.9))
    assert "(finetune on permuted-digits/domain/2, 0/2 tasks): RuntimeError: boom" in raised
    assert "its Ray worker stopped without reporting (a killed or crashed process" in killed
    for trial_id, line in failed.items():
        log = Path(line.rsplit("; log: ", 1)[1])
        log = log if log.is_absolute() else Path.cwd() / log
        assert log.name == "error.txt" and log.parent.name == trial_id
        assert log.is_file() and folder / "ray" in log.parents  # there once the sweep ends
    assert (
        "boom: injected failure"
        in (folder / "ray")
        .glob(f"run-*/{trials.loc[0.5, 'trial_id']}/error.txt")
        .__next__()
        .read_text()
    )
    # Ray's start-up warnings, INFO lines and stack traces: in ray.log, not on the console
    assert "Traceback" not in text and "(raylet)" not in text and "ActorDiedError" not in text
    assert not re.search(r"\b(INFO|WARNING|ERROR)\b", text), text
    # Tune's own trial-error traces are off (sweep/runner.py); the raylet's note of the killed
    # worker is Ray's message that lands in the file
    assert "A worker died or was killed" in (folder / RAY_LOG).read_text()
    # no final phase: the unit's last status line counts its search, not 0/0
    last = [line for line in text.splitlines() if line.startswith("  finetune ")][-1]
    assert re.search(r"\bdone\s+3/3 done, 0 running\b", last), last


def test_ray_messages_go_to_the_file_not_the_terminal(tmp_path, capfd):
    with ray_log_to(tmp_path / RAY_LOG):
        logging.getLogger("ray.tune").warning("a noisy start-up warning")
    logging.getLogger("ray").info("after the sweep: the terminal again")
    out, err = capfd.readouterr()
    assert "noisy" not in out + err
    assert "a noisy start-up warning" in (tmp_path / RAY_LOG).read_text()
    assert "after the sweep" not in (tmp_path / RAY_LOG).read_text()


def test_failure_line_names_trial_cause_and_log(tmp_path):
    run = tmp_path / "ray" / "run-1" / "ewc-a_b_3-s0007"
    run.mkdir(parents=True)
    row = {"trial_id": "ewc-a_b_3-s0007", "method": "ewc", "cell": "a/b/3", "n_tasks": 3,
           "tasks_completed": 1, "message": "ValueError: bad\n", "population": None}  # fmt: skip
    line = failure_line(tmp_path, row)
    assert line.startswith("failed: ewc-a_b_3-s0007 (ewc on a/b/3, 1/3 tasks): ValueError: bad")
    assert line.endswith(f"log: {run / 'error.txt'}")
    assert "\n" not in line


@pytest.fixture
def two_final_configs(tmp_path):
    """A finished sweep whose final phase reverses its search ranking: the search's second
    config has the higher mean over the fresh seeds."""
    space = write_space(tmp_path, TINY_SPACE + "final: {top_k: 2, seeds: 2}\n", "tiny.yaml")
    folder = finished_sweep(tmp_path / "out", space)
    trials = tables.read_table(folder, TRIALS_FILE).to_pandas()
    final = trials["phase"] == "final"
    trials.loc[final, "val_avg_acc"] = trials.loc[final, "final_rank"].map({1: 0.584, 2: 0.589})
    trials.loc[final, "objective"] = trials.loc[final, "val_avg_acc"]
    trials.loc[final & (trials["final_rank"] == 2), "hp_lambda"] = 24.866489153720696
    table = tables.read_table(folder, TRIALS_FILE)
    tables.write_file(
        folder, table.from_pandas(trials, schema=table.schema, preserve_index=False),
        folder / TRIALS_FILE / tables.COMPACTED,
    )  # fmt: skip
    return load_space(space), folder


def test_final_table_ranks_by_what_it_shows(two_final_configs):
    spec, folder = two_final_configs
    text = best_table(spec, folder)
    assert "final phase, ranked by mean val_avg_acc over its fresh seeds (highest first" in text
    assert "top 4 of the search, ranked by val_avg_acc (highest first; one seed each)" in text
    final = text.split("final phase, ranked by", 1)[1].splitlines()[1:4]
    assert final[0].split()[:2] == ["rank", "search"]
    first, second = (line.split() for line in final[1:3])
    assert first[:2] == ["1", "2"] and "58.9" in first  # rank 1: the higher final mean
    assert second[:2] == ["2", "1"] and "58.4" in second
    assert "24.87" in final[1] and "24.866489153720696" not in text  # 4 significant digits
    assert re.search(r"cost: 4 search \+ 4 final trials, .* of trial time", text)
