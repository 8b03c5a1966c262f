"""Per-task checkpoints: a run killed during a task and run again gives the numbers of a run that
was never interrupted (same device), for single runs and populations."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cl_core.checkpoint import CHECKPOINT_FILE, load_checkpoint
from cl_core.config import RunConfig
from cl_core.errors import ClsweepError
from cl_core.population import run_population, train_population
from cl_core.trainer import Run, RunResult, train
from cl_core.validation import validated

REPO = Path(__file__).resolve().parents[2]
DIGITS = dict(benchmark="split-digits", scenario="class", n_tasks=5, hidden=(32, 32))


def _cli(args: list[str], json_path: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cl_core", *args, "--progress", "off", "--json", str(json_path)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)


def _without_times(path: Path) -> dict:
    data = json.loads(path.read_text())
    data.pop("seconds")
    return data


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("ewc", ["--param", "lambda=100"]),
        ("derpp", []),
        ("bir", ["--param", "z_dim=8"]),
        ("ewc", ["--per-task", "--per-task-lrs", "0.01,0.001", "--per-task-attempts", "2"]),
    ],
    ids=["ewc", "derpp", "bir", "ewc-per-task"],
)
def test_a_run_killed_during_task_3_continues_to_the_uninterrupted_numbers(
    tmp_path, method, params
):
    args = [
        "--benchmark", "split-digits", "--scenario", "class", "--tasks", "5",
        "--hidden", "32,32", "--iterations", "300", "--batch-size", "32",
        "--method", method, *params,
    ]  # fmt: skip
    whole = _cli(args, tmp_path / "whole.json")
    assert whole.wait(timeout=600) == 0
    folder = tmp_path / "ckpt"
    killed = _cli([*args, "--checkpoint-dir", str(folder)], tmp_path / "killed.json")
    for line in killed.stdout:  # rows "learned | ...": task 3 starts once row 2 is printed
        if line.strip().startswith("2 |"):  # task 3 is training now
            killed.send_signal(signal.SIGKILL)
            break
    killed.wait(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert (folder / CHECKPOINT_FILE).exists()
    again = _cli([*args, "--checkpoint-dir", str(folder)], tmp_path / "again.json")
    assert again.wait(timeout=600) == 0
    assert _without_times(tmp_path / "again.json") == _without_times(tmp_path / "whole.json")
    assert not (folder / CHECKPOINT_FILE).exists()  # removed once the run ended


def _result(cfg: RunConfig, **kwargs) -> RunResult:
    return RunResult.from_reports(cfg, list(train(cfg, **kwargs)))


def test_a_population_resumes_from_its_checkpoint_with_stopped_members(tmp_path):
    cfgs = [
        validated(RunConfig(
            **DIGITS, method="derpp", iterations=60, epochs=None, batch_size=32,
            lr=lr, train_seed=seed, method_params={"alpha": alpha},
        ))
        for lr, seed, alpha in ((1e-3, 0, 0.5), (2e-3, 1, 1.0), (5e-4, 2, 2.0))
    ]  # fmt: skip

    def rounds(run):
        out = []
        for reports in run:
            out.append({i: (r.val_acc, r.test_acc, r.train_loss) for i, r in reports.items()})
            if len(out) == 2:
                run.stop(1)  # early stopping after the first task
        return out

    whole = rounds(Run(cfgs))
    ckpt = tmp_path / "pop.pt"
    first = Run(cfgs, checkpoint=ckpt)
    partial = []
    for reports in first:
        partial.append(reports)
        if len(partial) == 2:
            first.stop(1)
        if len(partial) == 4:  # three tasks learned: the process "dies" here
            break
    resumed = rounds(Run(cfgs, checkpoint=ckpt))
    assert resumed == whole
    assert all(1 not in r for r in whole[2:])  # the stopped member stayed stopped


def test_the_checkpoint_holds_the_whole_state_and_refuses_another_run(tmp_path):
    cfg = validated(RunConfig(**DIGITS, method="ewc", iterations=30, epochs=None, batch_size=32))
    ckpt = tmp_path / "run.pt"
    run = Run([cfg], checkpoint=ckpt)
    iterator = iter(run)
    for _ in range(3):
        next(iterator)
    saved = load_checkpoint(ckpt, [cfg], torch.device("cpu"))
    assert torch.equal(saved.model.theta, run.model.theta)
    assert torch.equal(saved.optimizer.exp_avg, run.optimizer.exp_avg)
    fisher, anchor = saved.method.terms[0]
    assert torch.equal(fisher, run.method.terms[0][0]) and torch.equal(anchor, run.model.theta)
    assert saved.ctx.batch_random.counter == run.ctx.batch_random.counter
    assert len(saved.history) == 3 and saved.ctx.seq.dataset is None  # the data is left out
    other = validated(RunConfig(**DIGITS, method="ewc", iterations=30, epochs=None, lr=0.01))
    with pytest.raises(ClsweepError, match="holds another run .lr"):
        load_checkpoint(ckpt, [other], torch.device("cpu"))
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(ClsweepError, match="cannot be read"):
        Run([cfg], checkpoint=ckpt)


def test_a_finished_run_removes_its_checkpoint_unless_asked_to_keep_it(tmp_path):
    cfg = validated(RunConfig(**DIGITS, method="si", iterations=60, epochs=None, batch_size=32))
    plain = _result(cfg)
    kept = tmp_path / "kept.pt"
    assert np.array_equal(
        _result(cfg, checkpoint=kept, keep_checkpoint=True).acc_test, plain.acc_test
    )
    assert kept.exists()
    # a finished run's kept checkpoint replays the whole run without training again
    replayed = _result(cfg, checkpoint=kept, keep_checkpoint=True)
    assert np.array_equal(replayed.acc_test, plain.acc_test)
    removed = tmp_path / "removed.pt"
    _result(cfg, checkpoint=removed)
    assert not removed.exists()


def test_population_checkpoints_one_file_per_group(tmp_path):
    cfgs = [
        RunConfig(**DIGITS, method="ewc", iterations=60, epochs=None, batch_size=32, lr=lr)
        for lr in (1e-3, 2e-3)
    ] + [RunConfig(**DIGITS, method="er", iterations=60, epochs=None, batch_size=32)]
    whole = run_population(cfgs)
    population = train_population(cfgs, checkpoint_dir=tmp_path)
    for n, _ in enumerate(population):
        if n == 2:
            break
    assert sorted(p.name for p in tmp_path.iterdir()) == ["group-0.pt", "group-1.pt"]
    resumed = run_population(cfgs, checkpoint_dir=tmp_path)
    for a, b in zip(whole, resumed, strict=True):
        assert np.array_equal(a.acc_test, b.acc_test)
    assert not any(tmp_path.iterdir())  # removed when the population ended
