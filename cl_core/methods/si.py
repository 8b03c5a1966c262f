"""Synaptic intelligence (Zenke, Poole & Ganguli 2017, ICML; REFERENCE R4).

Path integral per parameter during task μ (eq. 3, discretised per optimizer step):
    ω_k += −g_k · Δθ_k,
importance after the task (eq. 5):  Ω_k += ω_k / ((θ_k(end) − θ_k(start))² + ε),
penalty (eq. 4):  c · Σ_k Ω_k (θ_k − θ*_k)², θ* = parameters after the latest task.
``path_integral`` chooses g and what happens to a negative contribution:
  - "task-loss-clamped" (default): g = gradient of the task loss alone (the penalty's gradient
    2cΩ(θ − θ*) removed), as eq. 3 integrates the task's own loss; each task's contribution
    ω/(Δ²+ε) is clipped at 0: with adaptive optimizers −g·Δθ can be negative, and a negative
    importance would reward moving away from the anchor without bound.
  - "total-loss-unclamped": g = gradient of the whole training loss, penalty included, and no
    clipping: the three-scenario reference code (GMvandeVen/continual-learning: ``train_cl`` in
    train.py accumulates ``W += -p.grad * (p - p_old)`` after the step on the total loss, and
    ``update_omega`` in continual_learner.py adds W/(Δ²+ε) as it is; same in 2019 and 2022).
"""

from __future__ import annotations

import torch
from torch import nn

from cl_core.methods.base import Method
from cl_core.params import HyperParam

PATH_INTEGRALS = ("task-loss-clamped", "total-loss-unclamped")


class SI(Method):
    """Online importance from each parameter's contribution to the drop in loss."""

    name = "si"
    hyperparams = {
        p.name: p
        for p in (
            HyperParam("c", "float", 1.0, "penalty strength c", low=0.0, high=1e10, log=True),
            HyperParam(
                "epsilon",
                "float",
                0.1,
                "damping ξ of the importance",
                low=0.0,
                high=1e3,
                low_open=True,
                log=True,
            ),
            HyperParam(
                "path_integral",
                "choice",
                "task-loss-clamped",
                "gradient in the path integral and clipping of importances",
                choices=PATH_INTEGRALS,
            ),
        )
    }

    def __init__(self, params, ctx) -> None:
        super().__init__(params, ctx)
        self.importance: list[torch.Tensor] | None = None  # Ω
        self.anchor: list[torch.Tensor] | None = None  # θ*
        self.path: list[torch.Tensor] = []  # ω of the current task
        self.start: list[torch.Tensor] = []
        self.before: list[torch.Tensor] = []
        self.step_grad: list[torch.Tensor] = []  # g of the step (see path_integral)

    def before_task(self, model: nn.Module, task: int) -> None:
        self.start = [p.detach().clone() for p in model.parameters()]
        self.path = [torch.zeros_like(p) for p in model.parameters()]

    def loss(self, model: nn.Module, batch, task: int) -> torch.Tensor:
        ce = super().loss(model, batch, task)
        return ce if self.importance is None else ce + self.penalty(model)

    def penalty(self, model: nn.Module) -> torch.Tensor:
        """c · Σ_k Ω_k (θ_k − θ*_k)² (zero before the first task is learned)."""
        if self.importance is None:
            return torch.zeros((), device=self.ctx.device)
        return self.params["c"] * sum(
            (w * (p - a).pow(2)).sum()
            for w, p, a in zip(self.importance, model.parameters(), self.anchor, strict=True)
        )

    @torch.no_grad()
    def before_step(self, model: nn.Module, task: int) -> None:
        params = list(model.parameters())
        self.before = [p.detach().clone() for p in params]
        grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in params]
        task_loss_only = self.params["path_integral"] == "task-loss-clamped"
        if task_loss_only and self.importance is not None:  # remove the penalty's 2cΩ(θ − θ*)
            for g, w, p, a in zip(grads, self.importance, params, self.anchor, strict=True):
                g.sub_(2 * self.params["c"] * w * (p - a))
        self.step_grad = grads

    @torch.no_grad()
    def after_step(self, model: nn.Module, batch, task: int) -> None:
        for w, g, p, b in zip(
            self.path, self.step_grad, model.parameters(), self.before, strict=True
        ):
            w.sub_(g * (p - b))

    @torch.no_grad()
    def after_task(self, model: nn.Module, task: int) -> None:
        eps = self.params["epsilon"]
        params = [p.detach() for p in model.parameters()]
        contribution = [
            w / ((p - s).pow(2) + eps)
            for w, p, s in zip(self.path, params, self.start, strict=True)
        ]
        if self.params["path_integral"] == "task-loss-clamped":
            contribution = [c.clamp_min(0) for c in contribution]
        if self.importance is None:
            self.importance = contribution
        else:
            self.importance = [o + n for o, n in zip(self.importance, contribution, strict=True)]
        self.anchor = [p.clone() for p in params]
