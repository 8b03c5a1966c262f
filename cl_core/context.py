"""What a method may use from the trainer: batches of any task's data, the scenario's loss, the
members' random streams.

A run trains M ≥ 1 members of one configuration group at once (a single run: M = 1). Members
share the data, the scenario and every shape; they differ in their training seed (so each draws
its own batches: training tensors are (M, B, ...)), their optimizer settings and their method
hyperparameters. Evaluation batches are shared by all members, (N, ...).

Batches are index draws into tensors that already live on the run's device; a permutation is a
gather on the batch (docs/design.md, data), except that the training rows of the task being
learned are kept permuted once (one task at a time: a batch is then a row gather). No
DataLoader, no per-sample Python.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F

from cl_core.config import RunConfig
from cl_core.data import Scenario, TaskSequence
from cl_core.random import MemberRandom

# scores (M, N, units) over all output units for shared inputs (N, D) of one task
Predictor = Callable[[torch.Tensor, int], torch.Tensor]

T = TypeVar("T")


@dataclass
class Batch:
    """Each member's inputs (M, B, D), scenario targets (M, B), the task of each sample (an int
    when all share one task, else (M, B)), and the global label (M, B) (the class in the
    sequence's label space, which exemplar memories balance over; the target in class-IL)."""

    x: torch.Tensor
    target: torch.Tensor
    task: int | torch.Tensor
    label: torch.Tensor

    def __len__(self) -> int:
        """Samples per member."""
        return self.x.shape[1]

    def task_ids(self) -> torch.Tensor:
        """The task of every sample, (M, B)."""
        if isinstance(self.task, int):
            return torch.full_like(self.target, self.task)
        return self.task


class _Pass:
    """The batch order of one pass over training rows, narrowed with the members."""

    def __init__(self, order: torch.Tensor) -> None:
        self.order = order


class TrainContext:
    """The members' data, scenario, device and random streams, shared by trainer and method."""

    task_free = False  # a task-free stream (cl_core/stream.py): no task boundaries are told

    def __init__(self, cfgs: list[RunConfig], seq: TaskSequence, device: torch.device) -> None:
        self.cfgs = list(cfgs)
        self.seq = seq
        self.device = device
        cfg = self.cfg
        self.scenario = Scenario(
            cfg.scenario, seq.n_tasks, seq.classes_per_task, cfg.class_il_units
        )
        self.seen_tasks = 1  # tasks seen so far, the current one included
        self.input_shape = seq.dataset.shape  # (channels, height, width) the model sees
        self._streams: weakref.WeakSet[MemberRandom] = weakref.WeakSet()
        self._passes: weakref.WeakSet[_Pass] = weakref.WeakSet()
        self.batch_random = self.random("batches")  # batch order (and Fisher rows)
        self._perms = self._stack_perms()
        self._norm = self._channel_norm()
        self._permuted: tuple[int, torch.Tensor] | None = None  # (task, its permuted train rows)
        # a stream's consolidation window: per member (rows (M, n), tasks (M, n)), or None
        self.window: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def cfg(self) -> RunConfig:
        """The settings every member shares (shapes, data, schedule)."""
        return self.cfgs[0]

    def __getstate__(self) -> dict:
        """For checkpoints: the random streams as a list (weak sets do not pickle); passes in
        flight are not kept (a checkpoint is written between tasks)."""
        state = dict(self.__dict__)
        state["_streams"] = list(self._streams)
        state["_passes"] = []
        return state

    def __setstate__(self, state: dict) -> None:
        streams = state.pop("_streams")
        state.pop("_passes")
        self.__dict__.update(state)
        self._streams = weakref.WeakSet(streams)
        self._passes = weakref.WeakSet()

    @property
    def size(self) -> int:
        """M, the number of members."""
        return len(self.cfgs)

    # ---- members -------------------------------------------------------------------------------
    def random(self, purpose: str) -> MemberRandom:
        """A random stream per member for one purpose of a method (e.g. "memory"), keyed by each
        member's ``train_seed`` and the purpose: it never shifts another stream's draws."""
        stream = MemberRandom([c.train_seed for c in self.cfgs], purpose, self.device)
        self._streams.add(stream)
        return stream

    def per_member(self, values: list[float], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """One value per member as an (M,) tensor on the run's device."""
        return torch.tensor(values, dtype=dtype, device=self.device)

    def select(self, keep: list[int]) -> None:
        """Keep the members at positions ``keep``: configs, random streams, live batch orders."""
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.cfgs = [self.cfgs[i] for i in keep]
        for stream in list(self._streams):
            stream.select(index)
        for p in list(self._passes):
            p.order = p.order.index_select(0, index.to(p.order.device))
        if self.window is not None:
            self.window = tuple(w.index_select(0, index) for w in self.window)

    # ---- data ---------------------------------------------------------------------------------
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

    def inputs(
        self, idx: torch.Tensor, task: int | torch.Tensor, split: str = "train"
    ) -> torch.Tensor:
        """Float inputs of dataset rows ``idx`` (any shape (...)): (..., D), permuted and
        normalised as task ``task`` (an int or one per row) presents them."""
        data = self.seq.dataset
        x_all = data.x_test if split == "test" else data.x_train
        if self._norm is not None:  # per-channel statistics need the unpermuted layout
            mean, std = self._norm
            x = rows_of(x_all, idx).float().div_(data.scale)
            x = x.view(*idx.shape, data.shape[0], -1).sub_(mean).div_(std).view(*idx.shape, -1)
            return x if self._perms is None else self._permute(x, task)
        if self._perms is None:
            x = rows_of(x_all, idx)
        elif isinstance(task, int) and split != "test":
            x = rows_of(self.permuted_train_rows(task), idx)
        else:
            x = self._permute(rows_of(x_all, idx), task)
        return x.float().div_(data.scale)

    def _permute(self, x: torch.Tensor, task: int | torch.Tensor) -> torch.Tensor:
        if isinstance(task, int):
            return x.index_select(-1, self._perms[task])
        return x.gather(-1, self._perms[task])

    def labels(self, idx: torch.Tensor, task: int | torch.Tensor, split: str = "train"):
        """(targets, global labels) of dataset rows ``idx`` under ``task``."""
        data = self.seq.dataset
        y_all = data.y_test if split == "test" else data.y_train
        global_label = task * self.seq.label_offset + self.seq.label_map[y_all[idx]]
        return self.scenario.targets(global_label, task), global_label

    def make_batch(
        self, idx: torch.Tensor, task: int | torch.Tensor, split: str = "train"
    ) -> Batch:
        """Batch of dataset rows ``idx`` (M, B) (train rows for "train"/"val", test rows for
        "test"); ``task`` an int or (M, B)."""
        target, label = self.labels(idx, task, split)
        return Batch(self.inputs(idx, task, split), target, task, label)

    def permuted_train_rows(self, task: int) -> torch.Tensor:
        """All training rows under ``task``'s permutation (uint8), kept for the latest task
        asked: a batch is then a row gather, not a gather of every row's pixels."""
        if self._permuted is None or self._permuted[0] != task:
            self._permuted = None  # free the previous task's copy first
            x = self.seq.dataset.x_train.index_select(1, self._perms[task])
            self._permuted = (task, x)
        return self._permuted[1]

    def train_rows(self, tasks: list[int]) -> tuple[torch.Tensor, torch.Tensor | int]:
        """Training rows of ``tasks`` and their task ids (an int when one task); in a stream's
        consolidation, each member's window: rows (M, n) and tasks (M, n)."""
        if self.window is not None:
            return self.window
        if len(tasks) == 1:
            return self.seq.tasks[tasks[0]].train_idx, tasks[0]
        idx = [self.seq.tasks[t].train_idx for t in tasks]
        ids = [torch.full_like(i, t) for t, i in zip(tasks, idx, strict=True)]
        return torch.cat(idx), torch.cat(ids)

    def batches(
        self, tasks: list[int], batch_size: int, shuffle: bool = True, limit: int | None = None
    ) -> Iterator[Batch]:
        """One pass over the training rows of ``tasks`` (the first ``limit`` of each member's
        shuffle), each member in its own order."""
        rows, task = self.train_rows(tasks)
        n = rows.shape[-1]
        if shuffle:
            order = self.batch_random.permutation(n)
        else:
            order = torch.arange(n, device=self.device).expand(self.size, n)
        if limit is not None:
            order = order[:, :limit]
        current = _Pass(order)
        self._passes.add(current)
        for start in range(0, current.order.shape[1], batch_size):
            pick = current.order[:, start : start + batch_size]
            idx = rows.gather(1, pick) if rows.dim() == 2 else rows[pick]
            if isinstance(task, int):
                yield self.make_batch(idx, task)
            else:
                yield self.make_batch(idx, task.gather(1, pick) if task.dim() == 2 else task[pick])

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

    def cross_entropy(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Each member's mean cross-entropy (M,) over the scenario's active units."""
        return member_cross_entropy(self.active_logits(logits, batch.task), batch.target)

    def eval_rows(self, task: int, split: str) -> torch.Tensor:
        t = self.seq.tasks[task]
        return t.test_idx if split == "test" else t.val_idx

    @torch.no_grad()
    def accuracy(self, predict: Predictor, task: int, split: str) -> torch.Tensor:
        """Each member's fraction (M,) of ``task``'s val or test rows whose top active score is
        the target; NaN if there are none. Inputs are shared: one batch serves every member."""
        rows = self.eval_rows(task, split)
        if len(rows) == 0:
            return torch.full((self.size,), float("nan"), device=self.device)
        correct = torch.zeros(self.size, device=self.device)
        for start in range(0, len(rows), self.cfg.eval_batch_size):
            idx = rows[start : start + self.cfg.eval_batch_size]
            x = self.inputs(idx, task, split)
            target, _ = self.labels(idx, task, split)
            pred = self.active_logits(predict(x, task), task).argmax(-1)
            correct += (pred == target).sum(-1)
        return correct / len(rows)


def rows_of(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``table[idx]`` for rows ``idx`` of any shape: (*idx.shape, *table.shape[1:]), as one
    ``index_select`` (a population's (M, B) rows cost a quarter of advanced indexing's on a
    CPU)."""
    return table.index_select(0, idx.reshape(-1)).view(*idx.shape, *table.shape[1:])


def member_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Each member's batch-mean cross-entropy (M,) of logits (M, B, units), targets (M, B)."""
    m, b, units = logits.shape
    ce = F.cross_entropy(logits.reshape(m * b, units), target.reshape(-1), reduction="none")
    return ce.view(m, b).mean(1)


def training_schedule(cfg: RunConfig, one_pass: Callable[[], Iterator[T]]) -> Iterator[T]:
    """``cfg.epochs`` passes of ``one_pass()``, or ``cfg.iterations`` items drawn from as many
    passes as that takes."""
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
