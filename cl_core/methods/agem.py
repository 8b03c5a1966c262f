"""Averaged gradient episodic memory (A-GEM; Chaudhry et al. 2019, "Efficient Lifelong Learning
with A-GEM", ICLR, eq. 11).

The memory is R4's: ``budget`` random samples per class, stored after each task. From the second
task on, before each optimizer step the reference gradient g_ref of the cross-entropy on
``replay_batch_size`` stored samples (default: the training batch size, as R4's code does) is
computed at the current parameters; if the current gradient g conflicts with it, g is projected
    g̃ = g − (⟨g, g_ref⟩ / ⟨g_ref, g_ref⟩) · g_ref   when ⟨g, g_ref⟩ < 0   (eq. 11),
with all parameters taken as one vector. Then ⟨g̃, g_ref⟩ = 0: the step does not increase the
loss on the memory to first order. R4's code adds ε = 1e-7 to the denominator; none is needed
here, since ⟨g, g_ref⟩ < 0 implies g_ref ≠ 0.
"""

from __future__ import annotations

import torch
from torch import nn

from cl_core.methods.memory import as_batch, memory_hyperparams
from cl_core.methods.replay import (
    ExemplarReplay,
    replay_batch_hyperparam,
    replay_batch_size,
    selection_hyperparam,
)


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

    def __init__(self, params, ctx) -> None:
        super().__init__(params, ctx)
        # steps on which the constraint was violated (a tensor: counting never syncs the device)
        self.projected_steps = torch.zeros((), dtype=torch.long, device=ctx.device)

    def before_step(self, model: nn.Module, task: int) -> None:
        if len(self.memory) == 0:
            return
        params = [p for p in model.parameters() if p.requires_grad]
        stored = as_batch(self.memory.sample(replay_batch_size(self.params, self.ctx)))
        reference_loss = self.ce_and_logits(model, stored)[0]
        reference = torch.autograd.grad(reference_loss, params, allow_unused=True)
        grads = []
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        refs = [
            torch.zeros_like(p) if r is None else r for p, r in zip(params, reference, strict=True)
        ]
        self.projected_steps += project(grads, refs)


@torch.no_grad()
def project(grads: list[torch.Tensor], refs: list[torch.Tensor]) -> torch.Tensor:
    """A-GEM's eq. 11 in place on ``grads`` (the parameters' gradients, one vector together);
    returns whether the constraint ⟨g, g_ref⟩ ≥ 0 was violated and g was projected (a bool
    tensor: no host-device sync per step)."""
    dot = sum((g * r).sum() for g, r in zip(grads, refs, strict=True))
    norm = sum((r * r).sum() for r in refs)
    violated = dot < 0
    # where the constraint holds the scale is 0 (and norm may be 0: that branch is discarded)
    scale = torch.where(violated, dot / norm, torch.zeros_like(dot))
    for g, r in zip(grads, refs, strict=True):
        g.sub_(scale * r)
    return violated
