"""What a method may use from the trainer: batches of any task's data and the scenario's loss.

Batches are index draws into tensors that already live on the run's device; a permutation is a
gather on the batch (DESIGN.md, Data), except that the training rows of the task being learned are
kept permuted once (one task at a time: a batch is then a row gather). No DataLoader, no
per-sample Python.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch

from cl_core.config import RunConfig
from cl_core.data import Scenario, TaskSequence

# scores over all output units for inputs of one task (see Method.predict)
Predictor = Callable[[torch.Tensor, int], torch.Tensor]


T = TypeVar("T")


@dataclass
class Batch:
    """Inputs, scenario targets, the task of each sample (an int when all share one task), and
    the global label (the class in the sequence's label space, which exemplar memories balance
    over; equal to the target in class-IL)."""

    x: torch.Tensor
    target: torch.Tensor
    task: int | torch.Tensor
    label: torch.Tensor

    def __len__(self) -> int:
        return len(self.x)


class TrainContext:
    """The run's data, scenario, device and random generators, shared by the trainer and methods."""

    task_free = False  # a task-free stream (cl_core/stream.py): no task boundaries are told

    def __init__(self, cfg: RunConfig, seq: TaskSequence, device: torch.device) -> None:
        self.cfg = cfg
        self.seq = seq
        self.device = device
        self.scenario = Scenario(
            cfg.scenario, seq.n_tasks, seq.classes_per_task, cfg.class_il_units
        )
        self.gen = torch.Generator().manual_seed(cfg.train_seed)  # batch order (CPU)
        self.device_gen = torch.Generator(device=device).manual_seed(cfg.train_seed)
        self.seen_tasks = 1  # tasks seen so far, the current one included
        self.input_shape = seq.dataset.shape  # (channels, height, width) the model sees
        self._perms = self._stack_perms()
        self._norm = self._channel_norm()
        self._permuted: tuple[int, torch.Tensor] | None = None  # (task, its permuted train rows)

    def new_generator(self, purpose: str) -> torch.Generator:
        """A generator on the run's device for one purpose of a method (e.g. "memory"), seeded
        from ``train_seed`` and the purpose, so that it never shifts the batch order."""
        seed = (self.cfg.train_seed * 1_000_003 + zlib.crc32(purpose.encode())) % 2**63
        return torch.Generator(device=self.device).manual_seed(seed)

    def _channel_norm(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Per-channel (mean, std) of the dataset, shaped (C, 1) to broadcast over pixels."""
        data = self.seq.dataset
        if data.mean is None:
            return None
        mean = torch.tensor(data.mean, device=self.device).unsqueeze(1)
        std = torch.tensor(data.std, device=self.device).unsqueeze(1)
        return mean, std

    def _stack_perms(self) -> torch.Tensor | None:
        if all(t.perm is None for t in self.seq.tasks):
            return None
        ident = torch.arange(self.seq.dataset.input_dim, device=self.device)
        return torch.stack([ident if t.perm is None else t.perm for t in self.seq.tasks])

    # ---- data -------------------------------------------------------------------------------
    def make_batch(
        self, idx: torch.Tensor, task: int | torch.Tensor, split: str = "train"
    ) -> Batch:
        """Batch of dataset rows ``idx`` (train rows for "train"/"val", test rows for "test")."""
        data = self.seq.dataset
        x_all, y_all = (
            (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
        )
        if self._norm is not None:  # per-channel statistics need the unpermuted layout
            mean, std = self._norm
            x = x_all[idx].float().div_(data.scale)
            x = x.view(len(x), data.shape[0], -1).sub_(mean).div_(std).view(len(x), -1)
            if self._perms is not None:
                perm = self._perms[task]
                x = x[:, perm] if isinstance(task, int) else x.gather(1, perm)
        else:
            if self._perms is None:
                x = x_all[idx]
            elif not isinstance(task, int):
                x = x_all[idx].gather(1, self._perms[task])
            elif split == "test":
                x = x_all[idx].index_select(1, self._perms[task])
            else:
                x = self.permuted_train_rows(task)[idx]
            x = x.float().div_(data.scale)
        global_label = task * self.seq.label_offset + self.seq.label_map[y_all[idx]]
        return Batch(x, self.scenario.targets(global_label, task), task, global_label)

    def permuted_train_rows(self, task: int) -> torch.Tensor:
        """All training rows under ``task``'s permutation (uint8), kept for the latest task
        asked: a batch is then a row gather, not a gather of every row's pixels."""
        if self._permuted is None or self._permuted[0] != task:
            self._permuted = None  # free the previous task's copy first
            x = self.seq.dataset.x_train.index_select(1, self._perms[task])
            self._permuted = (task, x)
        return self._permuted[1]

    def train_rows(self, tasks: list[int]) -> tuple[torch.Tensor, torch.Tensor | int]:
        """Training rows of ``tasks`` and their task ids (an int when one task)."""
        if len(tasks) == 1:
            return self.seq.tasks[tasks[0]].train_idx, tasks[0]
        idx = [self.seq.tasks[t].train_idx for t in tasks]
        ids = [torch.full_like(i, t) for t, i in zip(tasks, idx, strict=True)]
        return torch.cat(idx), torch.cat(ids)

    def batches(
        self, tasks: list[int], batch_size: int, shuffle: bool = True, limit: int | None = None
    ) -> Iterator[Batch]:
        """One pass over the training rows of ``tasks`` (the first ``limit`` after shuffling)."""
        rows, task = self.train_rows(tasks)
        order = (
            torch.randperm(len(rows), generator=self.gen) if shuffle else torch.arange(len(rows))
        )
        if limit is not None:
            order = order[:limit]
        order = order.to(self.device)
        for start in range(0, len(order), batch_size):
            pick = order[start : start + batch_size]
            yield self.make_batch(rows[pick], task if isinstance(task, int) else task[pick])

    def training_steps(self, tasks: list[int]) -> int:
        """How many batches (optimizer steps) :meth:`training_batches` yields for ``tasks``."""
        if self.cfg.iterations is not None:
            return self.cfg.iterations
        rows = sum(len(self.seq.tasks[t].train_idx) for t in tasks)
        return self.cfg.epochs * -(-rows // self.cfg.batch_size)

    def training_batches(self, tasks: list[int]) -> Iterator[Batch]:
        """The batches of one task's training: ``epochs`` passes or ``iterations`` batches."""
        return training_schedule(self.cfg, lambda: self.batches(tasks, self.cfg.batch_size))

    # ---- scenario and evaluation -------------------------------------------------------------
    def active_logits(self, logits: torch.Tensor, task: int | torch.Tensor) -> torch.Tensor:
        """The scenario's active units for ``task`` (see Scenario.active)."""
        return self.scenario.active(logits, task, self.seen_tasks)

    @torch.no_grad()
    def accuracy(self, predict: Predictor, task: int, split: str) -> float:
        """Fraction of ``task``'s val or test rows whose top active score is the target; NaN if
        there are none."""
        t = self.seq.tasks[task]
        rows = t.test_idx if split == "test" else t.val_idx
        if len(rows) == 0:
            return float("nan")
        correct = torch.zeros((), device=self.device)
        for start in range(0, len(rows), self.cfg.eval_batch_size):
            batch = self.make_batch(rows[start : start + self.cfg.eval_batch_size], task, split)
            pred = self.active_logits(predict(batch.x, task), task).argmax(1)
            correct += (pred == batch.target).sum()
        return correct.item() / len(rows)


def training_schedule(cfg: RunConfig, one_pass: Callable[[], Iterator[T]]) -> Iterator[T]:
    """``cfg.epochs`` passes of ``one_pass()``, or ``cfg.iterations`` items drawn from as many
    passes as that takes (shared by the single-run and the population contexts)."""
    if cfg.epochs is not None:
        for _ in range(cfg.epochs):
            yield from one_pass()
        return
    remaining = cfg.iterations
    while remaining:
        for item in one_pass():
            yield item
            remaining -= 1
            if not remaining:
                return
