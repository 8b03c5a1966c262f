"""Dark experience replay (DER; Buzzega, Boschini, Porrello, Abati & Calderara 2020, "Dark
Experience for General Continual Learning: a Strong, Simple Baseline", NeurIPS, eq. 4).

A reservoir memory (Vitter's Algorithm R) over the stream of training samples stores each sample
with its task, target, label and the logits the network gave it when it was seen (the forward
pass of its training step, before that step's update, as Mammoth's ``der.py`` stores
``outputs.data``). Every step, from the second one on:
    L = CE(current batch) + α · MSE(h_θ(x'), z'),   (x', z') ~ memory   (eq. 4),
MSE averaged over the samples and the units: all output units in class-IL (with every unit
active, as Mammoth), the shared head in domain-IL, the sample's own task's units in task-IL (the
units a task-IL prediction uses). The memory fills from the very first batch, so replay starts
within the first task (DER needs no task boundaries).

Capacity: ``budget_per: class`` gives budget × (tasks × classes per task) slots, the size a
class-balanced memory of ``budget`` per class reaches at the end (the three-scenario protocol's
100 per class on Split MNIST: 1,000 slots); ``budget_per: total`` gives ``budget`` slots.
Members of a population differ in α (and DER++'s β); each fills its own reservoir.

Default α = 1.0: the paper's best Seq-MNIST configuration (its appendix; Mammoth's
``best_args.py``) at buffer 500, the published size nearest to our 1,000 slots (200, 500 and
5,120 were searched). It was found with SGD, batch 10 and one epoch; this protocol differs.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from cl_core.methods.base import Method
from cl_core.methods.memory import Fields, ReservoirMemory, batch_fields, memory_hyperparams
from cl_core.methods.replay import replay_batch_hyperparam, replay_batch_size
from cl_core.models import StackedModel
from cl_core.params import HyperParam


def weight_hyperparam(name: str, default: float, help: str) -> HyperParam:
    return HyperParam(name, "float", default, help, low=0.0, high=1e4)


class DER(Method):
    """Replay stored samples and match the logits they had when they were stored."""

    name = "der"
    stability = ("alpha",)
    n_draws: ClassVar[int] = 1  # independent memory batches per step (DER++ draws a second one)
    hyperparams = {
        p.name: p
        for p in (
            *memory_hyperparams(),
            replay_batch_hyperparam(),
            weight_hyperparam("alpha", 1.0, "weight α of the logit-matching (MSE) term"),
        )
    }

    member_state = ("memory", "_seen_batch")

    def __init__(self, params, ctx) -> None:
        super().__init__(params, ctx)
        budget = int(self.shared("budget"))
        if self.shared("budget_per") == "class":
            budget *= ctx.seq.n_tasks * ctx.seq.classes_per_task
        self.memory = ReservoirMemory(ctx.random("memory"), budget)
        self._seen_batch: Fields | None = None  # this step's samples, offered after the step

    def loss(self, model: StackedModel, batch, task: int) -> torch.Tensor:
        if len(self.memory) == 0:
            ce, logits = self.ce_and_logits(model, batch)
            self._remember(batch, logits)
            return ce
        n = replay_batch_size(self)
        draws = [self.memory.sample(n) for _ in range(self.n_draws)]
        x = torch.cat([batch.x, *(d["x"] for d in draws)], dim=1)
        tasks = torch.cat([batch.task_ids(), *(d["task"] for d in draws)], dim=1)
        logits = self.forward(model, x, tasks)
        current = logits[:, : len(batch)]
        self._remember(batch, current)
        ce = self.ctx.cross_entropy(current, batch)
        replayed, start = [], len(batch)
        for d in draws:
            size = d["x"].shape[1]
            replayed.append(logits[:, start : start + size])
            start += size
        return ce + self.replay_loss(replayed, draws)

    def replay_loss(self, logits: list[torch.Tensor], draws: list[Fields]) -> torch.Tensor:
        """α · MSE between the current logits of the stored samples and their stored logits."""
        return self.column("alpha") * self.logit_mse(logits[0], draws[0])

    def logit_mse(self, logits: torch.Tensor, stored: Fields) -> torch.Tensor:
        """Mean squared difference over the samples and their active units (eq. 4), (M,)."""
        active = self.ctx.active_logits
        diff = active(logits, stored["task"]) - active(stored["logits"], stored["task"])
        return diff.pow(2).mean((-2, -1))

    def _remember(self, batch, logits: torch.Tensor) -> None:
        self._seen_batch = {**batch_fields(batch), "logits": logits.detach()}

    def after_step(self, model: StackedModel, batch, task: int) -> None:
        if self._seen_batch is not None:
            self.memory.offer(self._seen_batch)
            self._seen_batch = None
