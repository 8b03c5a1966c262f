"""The task window (RunConfig.task_start/task_stop): tasks [start, stop) of a sequence as a
sequence of their own, checked by hand on split and permuted digits."""

from __future__ import annotations

import pytest
import torch

from cl_core.config import RunConfig
from cl_core.data import build_tasks, load_dataset
from cl_core.errors import ClsweepError
from cl_core.trainer import RunResult, train
from cl_core.validation import validated


def _sequences(benchmark: str, scenario: str, start: int, stop: int | None):
    cfg = validated(RunConfig(benchmark=benchmark, scenario=scenario, n_tasks=5, epochs=1))
    data = load_dataset(cfg)
    window = validated(RunConfig(
        benchmark=benchmark, scenario=scenario, n_tasks=5, epochs=1, task_start=start,
        task_stop=stop,
    ))  # fmt: skip
    return build_tasks(cfg, data), build_tasks(window, data)


def test_a_split_window_keeps_its_tasks_samples_and_relabels_its_classes_from_zero():
    full, window = _sequences("split-digits", "class", 2, None)
    assert window.n_tasks == 3
    assert [t.classes for t in window.tasks] == [(4, 5), (6, 7), (8, 9)]
    assert [t.index for t in window.tasks] == [0, 1, 2]
    for mine, theirs in zip(window.tasks, full.tasks[2:], strict=True):
        assert torch.equal(mine.train_idx, theirs.train_idx)
        assert torch.equal(mine.val_idx, theirs.val_idx)
        assert torch.equal(mine.test_idx, theirs.test_idx)
    # classes 4..9 take global labels 0..5; classes 0..3 are never seen (-1)
    assert window.label_map.tolist() == [-1, -1, -1, -1, 0, 1, 2, 3, 4, 5]


def test_a_permuted_window_keeps_its_permutations():
    full, window = _sequences("permuted-digits", "domain", 1, 3)
    assert window.n_tasks == 2
    assert torch.equal(window.tasks[0].perm, full.tasks[1].perm)
    assert torch.equal(window.tasks[1].perm, full.tasks[2].perm)
    assert torch.equal(window.label_map, full.label_map)


def test_the_whole_sequence_is_the_default_window():
    full, window = _sequences("split-digits", "task", 0, 5)
    assert window is not full and window.n_tasks == 5
    assert window.label_map.tolist() == full.label_map.tolist()


@pytest.mark.parametrize(("start", "stop"), [(3, 3), (4, 2), (0, 6), (5, None), (-1, None)])
def test_an_empty_or_outside_window_is_refused(start, stop):
    with pytest.raises(ClsweepError, match="task"):
        validated(RunConfig(n_tasks=5, task_start=start, task_stop=stop))


def test_a_windowed_run_learns_and_scores_its_tasks_alone():
    cfg = RunConfig(
        benchmark="split-digits", scenario="class", n_tasks=5, task_start=3, hidden=(32,),
        epochs=None, iterations=100, batch_size=32,
    )  # fmt: skip
    result = RunResult.from_reports(cfg, list(train(cfg)))
    assert result.status == "completed"
    assert result.acc_test.shape == (3, 2)  # untrained + 2 tasks learned, 2 tasks scored
    # class-IL fine-tuning: the last task is learned, the one before it forgotten
    assert result.acc_test[-1, 1] > 0.9 and result.acc_test[-1, 0] < 0.1
