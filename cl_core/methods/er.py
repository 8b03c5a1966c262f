"""Experience replay (ER) from a class-balanced exemplar memory.

After each task, ``budget`` samples per class (the three-scenario protocol: 100 on Split MNIST)
are stored, chosen at random (or by herding). From the second task on, each step also draws
``replay_batch_size`` stored samples (default: the training batch size, as the three-scenario
code does) and
    "weighted" (van de Ven, Siegelmann & Tolias 2020, Nat. Commun., Methods):
        L = (1/t) · CE(current batch) + (1 − 1/t) · CE(replayed batch),
        t = the number of tasks seen so far, the current one included;
    "concat" (Chaudhry et al. 2019, "On Tiny Episodic Memories in Continual Learning",
        Algorithm 1): one cross-entropy over the current batch with the replayed one appended.
Each replayed sample is scored on its own task's active units (task-IL: its task's head), with
its stored target. Difference from the three-scenario code in task-IL: it draws ceil(B/(t−1))
samples from each
previous task and averages their losses; here one batch is drawn from the whole (class-balanced)
memory, which gives the same loss in expectation.
"""

from __future__ import annotations

import torch

from cl_core.context import member_cross_entropy
from cl_core.methods.memory import as_batch, memory_hyperparams
from cl_core.methods.replay import (
    ExemplarReplay,
    joined,
    replay_batch_hyperparam,
    replay_batch_size,
    selection_hyperparam,
)
from cl_core.models import StackedModel
from cl_core.params import HyperParam

MIXINGS = ("weighted", "concat")


class ER(ExemplarReplay):
    """Replay stored samples of earlier tasks alongside each training batch."""

    name = "er"
    hyperparams = {
        p.name: p
        for p in (
            *memory_hyperparams(),
            selection_hyperparam("random"),
            replay_batch_hyperparam(),
            HyperParam(
                "mixing",
                "choice",
                "weighted",
                "weighted: 1/t current + (1-1/t) replayed; concat: one batch",
                choices=MIXINGS,
            ),
        )
    }

    def loss(self, model: StackedModel, batch, task: int) -> torch.Tensor:
        if len(self.memory) == 0:
            return super().loss(model, batch, task)
        stored = self.memory.sample(replay_batch_size(self))
        both = joined(batch, stored)
        if self.shared("mixing") == "concat":
            return self.ce_and_logits(model, both)[0]
        # one forward pass over both, then each part's cross-entropy on its own units
        logits = self.forward(model, both.x, both.task)
        n = len(batch)
        active = self.ctx.active_logits
        current = member_cross_entropy(active(logits[:, :n], batch.task), batch.target)
        replayed_batch = as_batch(stored)
        replayed = member_cross_entropy(
            active(logits[:, n:], replayed_batch.task), replayed_batch.target
        )
        weight = 1.0 / (task + 1)
        return weight * current + (1.0 - weight) * replayed
