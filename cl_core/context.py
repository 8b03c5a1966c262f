"""What a method may use from the trainer: batches of any task's data and the scenario's loss.

Batches are index draws into tensors that already live on the run's device; a permutation is a
gather on the batch (DESIGN.md, Data). No DataLoader, no per-sample Python.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cl_core.config import RunConfig
from cl_core.data import Scenario, TaskSequence


@dataclass
class Batch:
    """Inputs, scenario targets, and the task of each sample (an int when all share one task)."""

    x: torch.Tensor
    target: torch.Tensor
    task: int | torch.Tensor

    def __len__(self) -> int:
        return len(self.x)


class TrainContext:
    """The run's data, scenario, device and random generators, shared by the trainer and methods."""

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
        self._perms = self._stack_perms()

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
        x = x_all[idx].float().div_(data.scale)
        if self._perms is not None:
            x = x[:, self._perms[task]] if isinstance(task, int) else x.gather(1, self._perms[task])
        global_label = task * self.seq.label_offset + self.seq.label_map[y_all[idx]]
        return Batch(x, self.scenario.targets(global_label, task), task)

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

    def training_batches(self, tasks: list[int]) -> Iterator[Batch]:
        """The batches of one task's training: ``epochs`` passes or ``iterations`` batches."""
        cfg = self.cfg
        if cfg.epochs is not None:
            for _ in range(cfg.epochs):
                yield from self.batches(tasks, cfg.batch_size)
            return
        remaining = cfg.iterations
        while remaining:
            for batch in self.batches(tasks, cfg.batch_size):
                yield batch
                remaining -= 1
                if not remaining:
                    return

    # ---- loss and evaluation ----------------------------------------------------------------
    def active_logits(self, logits: torch.Tensor, task: int | torch.Tensor) -> torch.Tensor:
        return self.scenario.active(logits, task, self.seen_tasks)

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy over the scenario's active units, and the full logits."""
        logits = model(batch.x)
        return F.cross_entropy(self.active_logits(logits, batch.task), batch.target), logits

    @torch.no_grad()
    def accuracy(self, model: nn.Module, task: int, split: str) -> float:
        """Fraction correct on ``task``'s val or test rows; NaN if there are none."""
        t = self.seq.tasks[task]
        rows = t.test_idx if split == "test" else t.val_idx
        if len(rows) == 0:
            return float("nan")
        correct = torch.zeros((), device=self.device)
        for start in range(0, len(rows), self.cfg.eval_batch_size):
            batch = self.make_batch(rows[start : start + self.cfg.eval_batch_size], task, split)
            pred = self.active_logits(model(batch.x), task).argmax(1)
            correct += (pred == batch.target).sum()
        return correct.item() / len(rows)
