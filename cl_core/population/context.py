"""What a population's methods use: each member's batches, drawn as the single-run trainer would.

Every member keeps its own ``TrainContext`` (so its own CPU generator for the batch order and its
own device generator, seeded from its ``train_seed``); each pass over the data draws one
permutation per member from that member's generator, in the same order as the single-run
trainer. A stacked batch then gathers (M, B) dataset rows at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cl_core.config import RunConfig
from cl_core.context import TrainContext, training_schedule
from cl_core.data import Scenario, TaskSequence


@dataclass
class StackedBatch:
    """Member m's batch is row m: inputs (M, B, D), targets, tasks (int or (M, B)), labels."""

    x: torch.Tensor
    target: torch.Tensor
    task: int | torch.Tensor
    label: torch.Tensor


class PopulationContext:
    """The shared task sequence and scenario, and one ``TrainContext`` per member."""

    def __init__(self, cfgs: list[RunConfig], seq: TaskSequence, device: torch.device) -> None:
        self.cfgs = list(cfgs)
        self.cfg = cfgs[0]  # the shared settings (compat.SHARED_FIELDS)
        self.seq = seq
        self.device = device
        self.members = [TrainContext(cfg, seq, device) for cfg in cfgs]
        self.scenario: Scenario = self.members[0].scenario
        self.seen_tasks = 1
        self._perms = self.members[0]._perms
        self._live_order: torch.Tensor | None = None  # the training pass under way, (M, n)

    @property
    def size(self) -> int:
        return len(self.members)

    def select(self, keep: list[int]) -> None:
        """Keep only the members at positions ``keep``."""
        self.cfgs = [self.cfgs[i] for i in keep]
        self.members = [self.members[i] for i in keep]
        if self._live_order is not None:  # a member dropped mid-pass leaves the pass too
            self._live_order = self._live_order[torch.tensor(keep, device=self.device)]

    def per_member(self, values: list[float], dtype=torch.float32) -> torch.Tensor:
        """A (M, 1) tensor of per-member values on the device (broadcasts over (M, P))."""
        return torch.tensor(values, dtype=dtype, device=self.device).unsqueeze(1)

    # ---- training data ------------------------------------------------------------------------
    def orders(
        self, tasks: list[int], limit: int | None = None, members: list[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | int, torch.Tensor]:
        """(rows, task ids, order): one shuffle per member of ``tasks``' training rows, drawn
        from each member's generator exactly as ``TrainContext.batches`` draws it."""
        members = range(self.size) if members is None else members
        rows, task = self.members[0].train_rows(tasks)
        n = len(rows)
        order = torch.stack(
            [torch.randperm(n, generator=self.members[i].gen)[:limit] for i in members]
        )
        return rows, task, order.to(self.device)

    def batches(
        self,
        tasks: list[int],
        batch_size: int,
        limit: int | None = None,
        members: list[int] | None = None,
    ) -> Iterator[StackedBatch]:
        """One pass over ``tasks``' training rows per member (of ``members``, default all: then
        members that ``select`` drops during the pass leave it at once)."""
        rows, task, order = self.orders(tasks, limit, members)
        live = members is None
        if live:
            self._live_order = order
        try:
            for start in range(0, order.shape[1], batch_size):
                current = self._live_order if live else order
                pick = current[:, start : start + batch_size]
                yield self.make_batch(rows[pick], task if isinstance(task, int) else task[pick])
        finally:
            if live:
                self._live_order = None

    def training_batches(self, tasks: list[int]) -> Iterator[StackedBatch]:
        """``epochs`` passes or ``iterations`` batches, as ``TrainContext.training_batches``."""
        return training_schedule(self.cfg, lambda: self.batches(tasks, self.cfg.batch_size))

    def make_batch(self, idx: torch.Tensor, task: int | torch.Tensor) -> StackedBatch:
        """Stacked batch of training rows ``idx`` (M, B) of ``task`` (int or (M, B))."""
        data = self.seq.dataset
        m, b = idx.shape
        flat = idx.reshape(-1)
        if self._perms is None:
            x = data.x_train[flat]
        elif isinstance(task, int):
            x = self.members[0].permuted_train_rows(task)[flat]
        else:
            x = data.x_train[flat].gather(1, self._perms[task.reshape(-1)])
        x = x.float().div_(data.scale).view(m, b, -1)
        label = task * self.seq.label_offset + self.seq.label_map[data.y_train[idx]]
        return StackedBatch(x, self.scenario.targets(label, task), task, label)

    # ---- scenario and evaluation ---------------------------------------------------------------
    def active_logits(self, logits: torch.Tensor, task: int | torch.Tensor) -> torch.Tensor:
        """The scenario's active units of stacked logits (M, B, units)."""
        m, b, units = logits.shape
        flat_task = task if isinstance(task, int) else task.reshape(-1)
        active = self.scenario.active(logits.reshape(m * b, units), flat_task, self.seen_tasks)
        return active.view(m, b, -1)

    def eval_batches(self, task: int, split: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(inputs (N, D), targets (N,)) of ``task``'s val or test rows, shared by all members."""
        t = self.seq.tasks[task]
        rows = t.test_idx if split == "test" else t.val_idx
        size = self.cfg.eval_batch_size
        for start in range(0, len(rows), size):
            batch = self.members[0].make_batch(rows[start : start + size], task, split)
            yield batch.x, batch.target


def member_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Each member's batch-mean cross-entropy (M,) of logits (M, B, units), targets (M, B)."""
    m, b, units = logits.shape
    ce = F.cross_entropy(logits.reshape(m * b, units), target.reshape(-1), reduction="none")
    return ce.view(m, b).mean(1)
