"""Single runs from the command line: defaults in --help, everything checked before anything is
printed, a failing run that leaves the file system alone, progress within a task, and the
warning for tasks with too few optimizer steps (issue 10, item 7)."""

from __future__ import annotations

import io
import re
import tempfile
import warnings
from pathlib import Path

import pytest
import torch
import torchvision.datasets

from cl_core.__main__ import build_parser, main
from cl_core.config import RunConfig
from cl_core.context import TrainContext
from cl_core.data import build_tasks, load_dataset
from cl_core.progress import Progress
from cl_core.trainer import FewStepsWarning, train
from cl_core.validation import validated

TINY = ["--benchmark", "permuted-digits", "--tasks", "2", "--hidden", "8", "--epochs", "1"]


def test_help_states_every_default():
    options = re.split(r"\n  (?=-)", build_parser().format_help())  # one block per option

    def described(flag: str) -> str:
        return " ".join(next(b for b in options if b.startswith(flag + " ")).split())

    for flag, default in (
        ("--lr", "0.001"),
        ("--batch-size", "128"),
        ("--method", "finetune"),
        ("--hidden", "400,400,400"),
        ("--val-fraction", "0.1"),
        ("--iterations", "not set"),
        ("--progress", "auto"),
        ("--log-every", "500"),
    ):
        assert described(flag).endswith(f"(default: {default})"), described(flag)


def test_misspelled_hyperparameter_fails_before_anything_is_printed(capsys):
    assert main([*TINY, "--method", "ewc", "--param", "lamda=10"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == (
        "error: method 'ewc' has no hyperparameter 'lamda'; its hyperparameters: fisher, "
        "fisher_batch_size, fisher_samples, gamma, half, lambda, merge"
    )


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_failing_run_with_a_missing_data_root_leaves_the_file_system_unchanged(
    tmp_path, monkeypatch, capsys
):
    # Offline as on a cluster node: the download is tried (torchvision's real code) and fails.
    for name in ("MNIST", "FashionMNIST"):
        monkeypatch.setattr(getattr(torchvision.datasets, name), "mirrors", ["http://127.0.0.1:9/"])
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "no" / "such" / "root"
    staging = set(Path(tempfile.gettempdir()).glob("clsweep-download-*"))
    before = _tree(tmp_path)
    assert main([*TINY, "--benchmark", "split-mnist", "--data-root", str(root)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"error: dataset 'mnist' not found: {root}")
    assert _tree(tmp_path) == before  # no data root, no MNIST/raw, nothing in the cwd
    assert set(Path(tempfile.gettempdir()).glob("clsweep-download-*")) == staging


def test_progress_lines_within_each_task_and_few_steps_warning(capsys):
    assert main([*TINY, "--progress", "log", "--log-every", "4"]) == 0
    out, err = capsys.readouterr()
    assert "status: completed" in out
    # 1,260 training rows per task at batch 128: 10 steps, under the 50 a task needs
    assert err.startswith(
        "warning: task 1 gets only 10 optimizer steps (1 epoch(s) at batch size 128)"
    )
    for task in (1, 2):
        for step in ("4/10 (40%)", "8/10 (80%)", "10/10 (100%)"):
            assert f"task {task}/2: step {step}" in err
    assert err.count("step ") == 6 and ", loss " in err


def test_progress_bar_on_a_terminal_and_lines_in_a_log():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, log = Terminal(), io.StringIO()
    assert Progress("auto", stream=terminal).mode == "bar"
    assert Progress("auto", stream=log).mode == "log"
    with Progress("bar", stream=terminal).task(0, 3, 20) as bar:
        for _ in range(20):
            bar.update()
        assert bar.bar.n == 20
    assert "task 1/3:" in terminal.getvalue() and "| 0/20 [" in terminal.getvalue()
    with Progress("off", stream=log).task(0, 1, 5) as bar:
        bar.update(lambda: 1 / 0)  # never read when nothing is shown
    assert log.getvalue() == ""


@pytest.mark.parametrize("length", [{"epochs": 2, "batch_size": 100}, {"iterations": 7}])
def test_training_steps_count_the_batches_of_a_task(length):
    values = {**dict(benchmark="permuted-digits", n_tasks=2, hidden=(8,), epochs=None), **length}
    cfg = validated(RunConfig(**values))
    ctx = TrainContext([cfg], build_tasks(cfg, load_dataset(cfg)), torch.device("cpu"))
    assert ctx.training_steps([0]) == sum(1 for _ in ctx.training_batches([0]))
    assert ctx.training_steps([0, 1]) == sum(1 for _ in ctx.training_batches([0, 1]))


def test_the_python_api_warns_too_and_stays_quiet_with_enough_steps():
    few = RunConfig(benchmark="split-digits", scenario="task", n_tasks=5, hidden=(8,), epochs=1)
    with pytest.warns(FewStepsWarning, match="task 3 gets only 2 optimizer steps"):
        next(train(few))
    enough = RunConfig(benchmark="permuted-digits", n_tasks=2, hidden=(8,), batch_size=16)

    with warnings.catch_warnings():
        warnings.simplefilter("error", FewStepsWarning)
        next(train(enough))
