"""A real tiny sweep (digits, local Ray) -> ``clsweep best`` -> ``clsweep run --config``: the run
reproduces the final-phase row of its seed bit for bit on the CPU (issue 18, item 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from sweep_helpers import REPO, TINY_SPACE

from clsweep.cli import main
from contract.registry import read_entry

SPACE = TINY_SPACE.replace("trials: 4", "trials: 3") + "final: {top_k: 1, seeds: 2}\n"


def clsweep(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """The ``clsweep`` command in a process of its own (its own local Ray, its own torch)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "clsweep", *args], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=REPO)  # fmt: skip


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("registry")
    space = tmp / "tiny.yaml"
    space.write_text(SPACE)
    done = clsweep("sweep", "--space", str(space), "--out", str(tmp / "out"), "--name", "tiny")
    assert done.returncode == 0, done.stderr[-2000:]
    return tmp / "out" / "tiny"


@pytest.mark.slow
def test_best_then_run_config_reproduces_the_final_row(sweep, tmp_path, capsys):
    reg = tmp_path / "reg"
    assert main(["best", str(sweep), "--into", str(reg)]) == 0
    assert "wrote" in capsys.readouterr().out
    path = reg / "permuted-digits" / "domain-3" / "ewc.end-of-sequence.yaml"
    entry = read_entry(path)
    trials = pd.read_parquet(sweep / "trials.parquet")
    finals = trials[(trials.phase == "final") & (trials.final_rank == 1)].sort_values("train_seed")
    assert entry["final"]["seeds"] == finals.train_seed.tolist() == [1000, 1001]
    assert entry["final"]["values"] == finals.test_avg_acc.tolist()
    assert entry["selection"]["search_trials"] == 3
    assert entry["config"]["method_params"]["lambda"] == finals.hp_lambda.iloc[0]
    meta = json.loads((sweep / "sweep.json").read_text())
    assert entry["provenance"]["git_commit"] == meta["git_commit"]
    assert entry["provenance"]["space_file_sha256"] is not None  # the file still holds the space

    for seed, args in ((1000, ()), (1001, ("--seed", "1001"))):  # the default: the first seed
        out = tmp_path / f"run-{seed}.json"
        done = clsweep("run", "--config", str(path), *args, "--device", "cpu", "--progress",
                       "off", "--json", str(out))  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        assert f"seed {seed}" in done.stdout
        metrics = json.loads(out.read_text())["metrics"]
        row = finals[finals.train_seed == seed].iloc[0]
        assert metrics["test"]["avg_acc"] == row.test_avg_acc  # bit for bit, not approximately
        assert metrics["val"]["avg_acc"] == row.val_avg_acc

    path.write_text(path.read_text().replace("epochs: 2", "epochs: 3"))
    done = clsweep("run", "--config", str(path), "--device", "cpu")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: ") and "integrity hash mismatch" in done.stderr
