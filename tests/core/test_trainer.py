"""Trainer behaviour: determinism, reports, divergence, training length, bad inputs, CLI."""

import json
import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from cl_core.__main__ import main
from cl_core.config import RunConfig
from cl_core.errors import ClsweepError
from cl_core.trainer import RunResult, train
from cl_core.validation import validated

SMALL = dict(benchmark="split-digits", scenario="class", n_tasks=5, hidden=(32,), epochs=2)


def test_same_config_and_seeds_give_identical_matrices():
    cfg = RunConfig(method="ewc", method_params={"fisher": "sampled"}, **SMALL)
    a = RunResult.from_reports(cfg, list(train(cfg)))
    b = RunResult.from_reports(cfg, list(train(cfg)))
    assert np.array_equal(a.acc_test, b.acc_test) and np.array_equal(a.acc_val, b.acc_val)
    c = RunResult.from_reports(cfg, list(train(RunConfig(**{**SMALL, "train_seed": 1}))))
    assert not np.array_equal(a.acc_test, c.acc_test)


def test_reports_cover_every_task_and_the_untrained_model():
    cfg = RunConfig(method="finetune", **{**SMALL, "epochs": 10, "batch_size": 16})
    reports = list(train(cfg))
    assert [r.tasks_learned for r in reports] == [0, 1, 2, 3, 4, 5]
    assert all(len(r.val_acc) == 5 and len(r.test_acc) == 5 for r in reports)
    assert reports[0].train_loss is None and all(r.train_loss > 0 for r in reports[1:])
    result = RunResult.from_reports(cfg, reports)
    assert result.status == "completed" and result.acc_test.shape == (6, 5)
    # class-IL fine-tuning forgets everything but the last task (the classic failure)
    assert result.acc_test[-1, -1] > 0.9 and result.acc_test[-1, :3].max() < 0.2


def test_diverging_run_ends_with_status_not_crash():
    # an over-strong EWC penalty with plain SGD overshoots the quadratic and explodes
    cfg = RunConfig(
        benchmark="permuted-digits",
        n_tasks=3,
        hidden=(32,),
        epochs=3,
        optimizer="sgd",
        lr=0.5,
        method="ewc",
        method_params={"lambda": 1e13},
    )
    reports = list(train(cfg))
    assert reports[-1].status == "diverged" and "lower the learning rate" in reports[-1].message
    result = RunResult.from_reports(cfg, reports)
    assert result.status == "diverged" and math.isnan(result.metrics("test")["bwt"])


def test_iterations_mode_counts_batches():
    from cl_core.context import TrainContext
    from cl_core.data import build_tasks, load_dataset

    cfg = RunConfig(benchmark="split-digits", n_tasks=5, iterations=7, epochs=None, batch_size=100)
    ctx = TrainContext([validated(cfg)], build_tasks(cfg, load_dataset(cfg)), "cpu")
    batches = list(ctx.training_batches([0]))
    sizes = [len(b) for b in batches]  # ~250 rows: 100, 100, 50, 100, ...
    assert len(sizes) == 7 and sizes[:3] == [100, 100, len(ctx.seq.tasks[0].train_idx) - 200]
    assert [tuple(b.x.shape[:2]) for b in batches[:3]] == [(1, 100), (1, 100), (1, sizes[2])]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"method": "replay"}, "unknown method 'replay'; choose one of"),
        ({"benchmark": "cifar"}, "unknown benchmark 'cifar'"),
        ({"method": "ewc", "method_params": {"lambda": -1}}, "valid range: [0, 1e+13]"),
        ({"method": "ewc", "method_params": {"lamda": 1}}, "has no hyperparameter 'lamda'"),
        ({"method": "lwf", "method_params": {"scaling": "x"}}, "pick one of those"),
        ({"epochs": 2, "iterations": 5}, "not both"),
        ({"val_fraction": 1.0}, "val_fraction must be in [0, 1)"),
    ],
)
def test_bad_inputs_raise_project_error_naming_the_fix(change, fragment):
    with pytest.raises(ClsweepError) as err:
        list(train(RunConfig(**{**SMALL, **change})))
    assert fragment in str(err.value)


def test_cli_json_and_table(tmp_path, capsys):
    out = tmp_path / "run.json"
    code = main(
        [
            "--benchmark",
            "permuted-digits",
            "--tasks",
            "2",
            "--method",
            "ewc",
            "--param",
            "lambda=10",
            "--hidden",
            "16",
            "--epochs",
            "1",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "learned |" in printed and "status: completed" in printed
    payload = json.loads(out.read_text())
    assert payload["config"]["method_params"] == {"lambda": "10"}
    assert len(payload["acc_test"]) == 3 and len(payload["acc_test"][0]) == 2
    assert payload["metrics"]["test"]["avg_acc"] == pytest.approx(np.mean(payload["acc_test"][2]))


def test_preset_values_yield_to_explicit_flags():
    from cl_core.__main__ import build_parser, config_from_args

    args = build_parser().parse_args(
        ["--preset", "classic-permuted", "--method", "ewc", "--tasks", "5"]
    )
    cfg = config_from_args(args)
    assert cfg.n_tasks == 5 and cfg.optimizer == "adamw" and cfg.batch_size == 256
    assert cfg.method_params["fisher"] == "batch" and cfg.method_params["half"] is False
    args = build_parser().parse_args(["--preset", "vdv-split", "--epochs", "3"])
    cfg = config_from_args(args)
    assert cfg.epochs == 3 and cfg.iterations is None and cfg.hidden == (400, 400)


def test_cli_usage_error_is_one_line_and_exit_2(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cl_core",
            "--benchmark",
            "permuted-mnist",
            "--data-root",
            str(tmp_path),
            "--tasks",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: dataset 'mnist' not found")


def test_validated_refuses_misspelled_hyperparameter_and_bad_task_count():
    with pytest.raises(ClsweepError, match="has no hyperparameter 'lamda'"):
        validated(RunConfig(method="ewc", method_params={"lamda": 1}))
    with pytest.raises(ClsweepError, match="out of range"):
        validated(RunConfig(method="ewc", method_params={"lambda": -1}))
    with pytest.raises(ClsweepError, match="n_tasks must be in"):
        validated(RunConfig(benchmark="split-digits", n_tasks=3))
    with pytest.raises(ClsweepError, match="unknown model"):
        validated(RunConfig(model="resnet"))


def test_cli_bad_flag_is_one_line_naming_the_closest_choice(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--method", "ewk"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: argument --method: invalid choice: 'ewk'; did you mean 'ewc'?; "
                   "see python -m cl_core --help"]  # fmt: skip


def test_tf32_changes_nothing_on_a_cpu():
    """TensorFloat-32 is a CUDA switch (tests/core/test_cuda.py checks it there)."""
    cfg = RunConfig(benchmark="split-digits", scenario="class", n_tasks=5, hidden=(32,),
                    iterations=30, epochs=None, batch_size=32, device="cpu")  # fmt: skip
    plain = RunResult.from_reports(cfg, list(train(cfg)))
    tf32 = RunResult.from_reports(cfg, list(train(replace(cfg, tf32=True))))
    assert np.array_equal(plain.acc_test, tf32.acc_test) and plain.train_loss == tf32.train_loss
