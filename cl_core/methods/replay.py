"""Shared by the replay methods (ER, A-GEM, iCaRL, DER): declarations and the class-balanced base.

``ExemplarReplay`` keeps a ``ClassBalancedMemory`` per member that is filled once a task is
learned (the three-scenario protocol: random selection by default, herding for iCaRL), so ER,
A-GEM and iCaRL differ only in how they use the stored samples during a step. Stored samples are
drawn with the memory's own stream (``ctx.random("memory")``), so the batch order of the trainer
never shifts: with an empty memory a replay method trains exactly as fine-tuning does. Members
of a population share the budget and the selection rule; each fills its own memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from cl_core.methods.base import Method
from cl_core.methods.memory import ClassBalancedMemory, Fields, as_batch, batch_fields
from cl_core.models import StackedModel
from cl_core.params import HyperParam

if TYPE_CHECKING:
    from cl_core.context import Batch, TrainContext

SELECTIONS = ("random", "herding")


def selection_hyperparam(default: str = "random") -> HyperParam:
    """How exemplars are chosen when a task ends (the three-scenario code: random; iCaRL:
    herding)."""
    return HyperParam(
        "selection", "choice", default, "exemplar selection after each task", choices=SELECTIONS
    )


def replay_batch_hyperparam() -> HyperParam:
    """Stored samples per step; 0 means the run's training batch size (as the three-scenario
    code does)."""
    return HyperParam(
        "replay_batch_size",
        "int",
        0,
        "stored samples replayed per step (0 = the training batch size)",
        0,
        10**6,
    )


def replay_batch_size(method: Method) -> int:
    """The declared replay batch size, 0 resolved to the training batch size."""
    return int(method.shared("replay_batch_size")) or method.ctx.cfg.batch_size


def task_fields(ctx: TrainContext, task: int) -> Fields:
    """All training samples of ``task`` as memory fields, shared by the members: (N, ...) each
    (inputs, targets, task ids, labels)."""
    idx = ctx.seq.tasks[task].train_idx
    target, label = ctx.labels(idx, task)
    x = ctx.inputs(idx, task)
    return {"x": x, "target": target, "task": torch.full_like(target, task), "label": label}


@torch.no_grad()
def features_of(model: StackedModel, x: torch.Tensor, chunk: int) -> torch.Tensor:
    """Every member's ``model.features`` (M, N, F) of inputs ``x`` (shared (N, D) or per member
    (M, N, D)) in evaluation mode, ``chunk`` rows at a time."""
    was_training = model.training
    model.eval()
    try:
        n = x.shape[-2]
        parts = [model.features(x[..., i : i + chunk, :]) for i in range(0, n, chunk)]
        return torch.cat(parts, dim=1)
    finally:
        model.train(was_training)


def joined(batch: Batch, stored: Fields) -> Batch:
    """The current batch followed by stored samples, with one task id per sample (M, B + r)."""
    current = batch_fields(batch)
    return as_batch({k: torch.cat([current[k], stored[k]], dim=1) for k in current})


class ExemplarReplay(Method):
    """A class-balanced exemplar memory (``budget``, ``budget_per``, ``selection`` declared by the
    subclass), filled with the samples of each task once it is learned."""

    task_free = False  # the memory takes a whole task's training data when the task ends
    member_state = ("memory",)

    def __init__(self, params, ctx) -> None:
        super().__init__(params, ctx)
        self.memory = ClassBalancedMemory(
            ctx.random("memory"),
            int(self.shared("budget")),
            self.shared("budget_per"),
            self.shared("selection"),
        )

    def after_task(self, model: StackedModel, task: int) -> None:
        fields = task_fields(self.ctx, task)
        features = None
        if self.memory.selection == "herding":
            features = features_of(model, fields["x"], self.ctx.cfg.eval_batch_size)
        self.memory.add_classes(fields, features)
