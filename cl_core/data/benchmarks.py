"""Task builders: a dataset -> a sequence of tasks (permuted or split), seeded validation splits.

A task holds sample indices into the dataset (not copies), an optional pixel permutation applied
as a gather on each batch, and how its labels map into the shared label space. Which builder and
which dataset a benchmark uses is declared in ``cl_core.data.registry``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from cl_core.data.datasets import Dataset

if TYPE_CHECKING:
    from cl_core.config import RunConfig


@dataclass
class Task:
    """One task: which samples, which permutation, which classes."""

    index: int
    classes: tuple[int, ...]  # original class ids in this task
    train_idx: torch.Tensor  # indices into dataset.x_train
    val_idx: torch.Tensor  # indices into dataset.x_train, disjoint from train_idx
    test_idx: torch.Tensor  # indices into dataset.x_test
    perm: torch.Tensor | None  # pixel permutation (gather index), None = identity


@dataclass
class TaskSequence:
    """The tasks of a benchmark plus the map from original labels to global labels.

    Global label of a sample of task t: ``t * label_offset + label_map[y]``. Permuted benchmarks
    use offset = classes per task (every task brings 10 new "classes"); split benchmarks use
    offset 0 and ``label_map`` = position of the class in the seeded class order.
    """

    dataset: Dataset
    tasks: list[Task]
    classes_per_task: int
    label_offset: int
    label_map: torch.Tensor  # (n_classes,) original class -> position

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    def to(self, device: torch.device) -> TaskSequence:
        """The same sequence with data and indices on ``device``."""

        def mv(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        tasks = [
            Task(t.index, t.classes, mv(t.train_idx), mv(t.val_idx), mv(t.test_idx), mv(t.perm))
            for t in self.tasks
        ]
        return TaskSequence(
            self.dataset.to(device),
            tasks,
            self.classes_per_task,
            self.label_offset,
            self.label_map.to(device),
        )


def permutations(
    n_tasks: int, dim: int, seed: int, first_unpermuted: bool
) -> list[list[int] | None]:
    """One pixel permutation per task, drawn in order from ``random.Random(seed)``.

    Matches the classic script exactly (docs/references.md, Classic Permuted MNIST):
    ``random.seed(2024)`` then one ``random.shuffle`` of 0..D-1 per
    task, task 0 included) when ``seed=2024`` and ``first_unpermuted=False``.
    """
    rng = random.Random(seed)
    perms: list[list[int] | None] = []
    for t in range(n_tasks):
        if t == 0 and first_unpermuted:
            perms.append(None)
            continue
        perm = list(range(dim))
        rng.shuffle(perm)
        perms.append(perm)
    return perms


@dataclass(frozen=True)
class SequenceSettings:
    """What a task builder needs of a run's configuration, and nothing else."""

    n_tasks: int
    data_seed: int
    val_fraction: float
    first_task_unpermuted: bool = False

    @classmethod
    def of(cls, cfg: RunConfig) -> SequenceSettings:
        return cls(cfg.n_tasks, cfg.data_seed, cfg.val_fraction, cfg.first_task_unpermuted)


def permuted_tasks(settings: SequenceSettings, data: Dataset) -> TaskSequence:
    """Every task sees the whole dataset under its own pixel permutation (domain-IL labels)."""
    split_gen = torch.Generator().manual_seed(settings.data_seed)
    all_train = torch.arange(len(data.y_train))
    tasks = []
    perms = permutations(
        settings.n_tasks, data.input_dim, settings.data_seed, settings.first_task_unpermuted
    )
    for t, perm in enumerate(perms):
        train_idx, val_idx = _carve_validation(all_train, settings.val_fraction, split_gen)
        tasks.append(
            Task(
                t,
                tuple(range(data.n_classes)),
                train_idx,
                val_idx,
                torch.arange(len(data.y_test)),
                None if perm is None else torch.tensor(perm, dtype=torch.int64),
            )
        )
    return TaskSequence(data, tasks, data.n_classes, data.n_classes, torch.arange(data.n_classes))


def split_tasks(settings: SequenceSettings, data: Dataset) -> TaskSequence:
    """The classes, in a seeded order, dealt out evenly to the tasks (the registry checks that
    ``n_tasks`` divides the class count)."""
    per_task = data.n_classes // settings.n_tasks
    order = _class_order(data.n_classes, settings.data_seed)
    label_map = torch.empty(data.n_classes, dtype=torch.int64)
    label_map[torch.tensor(order)] = torch.arange(data.n_classes)
    split_gen = torch.Generator().manual_seed(settings.data_seed)
    tasks = []
    for t in range(settings.n_tasks):
        classes = tuple(order[t * per_task : (t + 1) * per_task])
        in_task = torch.isin(data.y_train, torch.tensor(classes)).nonzero().flatten()
        train_idx, val_idx = _carve_validation(in_task, settings.val_fraction, split_gen)
        test_idx = torch.isin(data.y_test, torch.tensor(classes)).nonzero().flatten()
        tasks.append(Task(t, classes, train_idx, val_idx, test_idx, None))
    return TaskSequence(data, tasks, per_task, 0, label_map)


def task_window(seq: TaskSequence, start: int, stop: int | None) -> TaskSequence:
    """Tasks [start, stop) of ``seq`` as a sequence of their own, renumbered from 0: what a
    learner that meets only those tasks sees (the learning protocol of Chaudhry et al. 2019, A-GEM,
    Sec. 2: hyperparameters chosen on the first tasks, the others learned and reported alone).

    Each task keeps its samples, permutation and classes. Split benchmarks shift the global
    labels so that the window's classes take positions 0, 1, ... (class-IL and task-IL output
    units start at the window's first task); classes outside the window map to -1 (never
    seen). Permuted benchmarks need no change: their global label counts from the task number.
    """
    stop = seq.n_tasks if stop is None else stop
    if start == 0 and stop == seq.n_tasks:
        return seq
    tasks = [replace(t, index=i) for i, t in enumerate(seq.tasks[start:stop])]
    label_map = seq.label_map
    if seq.label_offset == 0:
        low, high = start * seq.classes_per_task, stop * seq.classes_per_task
        inside = (label_map >= low) & (label_map < high)
        label_map = torch.where(inside, label_map - low, torch.full_like(label_map, -1))
    return TaskSequence(seq.dataset, tasks, seq.classes_per_task, seq.label_offset, label_map)


def _class_order(n_classes: int, seed: int) -> list[int]:
    """Seed 0 keeps the natural order 0..9 (as the three-scenario code does); others shuffle it."""
    order = list(range(n_classes))
    if seed != 0:
        random.Random(seed).shuffle(order)
    return order


def _carve_validation(
    indices: torch.Tensor, fraction: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``indices`` into (train, val) with a seeded draw; val gets round(fraction * n)."""
    n_val = round(fraction * len(indices))
    shuffled = indices[torch.randperm(len(indices), generator=gen)]
    return shuffled[n_val:].sort().values, shuffled[:n_val].sort().values
