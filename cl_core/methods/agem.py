"""Averaged gradient episodic memory (A-GEM; Chaudhry et al. 2019, "Efficient Lifelong Learning
with A-GEM", ICLR, eq. 11).

The memory is the three-scenario protocol's: ``budget`` random samples per class, stored after
each task. From the second task on, before each optimizer step the reference gradient g_ref of
the cross-entropy on ``replay_batch_size`` stored samples (default: the training batch size, as
the three-scenario code does) is
computed at the current parameters; if the current gradient g conflicts with it, g is projected
    g̃ = g − (⟨g, g_ref⟩ / ⟨g_ref, g_ref⟩) · g_ref   when ⟨g, g_ref⟩ < 0   (eq. 11),
with all of a member's parameters taken as one vector (a row of ``model.grad``). Then
⟨g̃, g_ref⟩ = 0: the step does not increase the loss on the memory to first order. The
three-scenario code adds ε = 1e-7 to the denominator; none is needed here, since ⟨g, g_ref⟩ < 0
implies g_ref ≠ 0.
"""

from __future__ import annotations

import torch

from cl_core.methods.memory import as_batch, memory_hyperparams
from cl_core.methods.replay import (
    ExemplarReplay,
    replay_batch_hyperparam,
    replay_batch_size,
    selection_hyperparam,
)
from cl_core.models import StackedModel


class AGEM(ExemplarReplay):
    """Project the gradient so that the loss on stored samples does not increase."""

    name = "agem"
    hyperparams = {
        p.name: p
        for p in (
            *memory_hyperparams(),
            selection_hyperparam("random"),
            replay_batch_hyperparam(),
        )
    }
    member_state = ("memory", "projected_steps")

    def __init__(self, params, ctx) -> None:
        super().__init__(params, ctx)
        # steps on which the constraint was violated, per member (a tensor: counting never syncs)
        self.projected_steps = torch.zeros(self.size, dtype=torch.long, device=ctx.device)

    def before_step(self, model: StackedModel, task: int) -> None:
        if len(self.memory) == 0:
            return
        current = model.grad.clone()
        stored = as_batch(self.memory.sample(replay_batch_size(self)))
        model.zero_grad_()
        self.ce_and_logits(model, stored)[0].sum().backward()
        reference = model.grad.clone()
        model.grad.copy_(current)
        self.projected_steps += project(model.grad, reference)


@torch.no_grad()
def project(grads: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
    """A-GEM's eq. 11 in place on ``grads`` (M, P), each member's row one vector, against its
    reference gradient ``refs`` (M, P); returns which members violated ⟨g, g_ref⟩ ≥ 0 and were
    projected (a bool tensor (M,): no host-device sync per step)."""
    dot = torch.linalg.vecdot(grads, refs)
    norm = torch.linalg.vecdot(refs, refs)
    violated = dot < 0
    # where the constraint holds the scale is 0 (and norm may be 0: that branch is discarded)
    scale = torch.where(violated, dot / norm, torch.zeros_like(dot))
    grads.sub_(scale.unsqueeze(1) * refs)
    return violated
