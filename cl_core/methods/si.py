"""Synaptic intelligence (Zenke, Poole & Ganguli 2017, ICML).

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
The penalty's gradient 2cΩ(θ − θ*) is added in closed form after backward (``before_step``), so
the gradient of the task loss alone is at hand without removing anything. Members of a
population differ in c and ε and share ``path_integral``.
"""

from __future__ import annotations

import torch

from cl_core.methods.base import Method, per_member
from cl_core.models import StackedModel
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
    stability = ("c",)

    member_state = ("importance", "anchor", "path", "start", "before", "step_grad")

    def __init__(self, params, ctx) -> None:
        super().__init__(params, ctx)
        # (M, P) each, laid out like the model's parameters
        self.importance: torch.Tensor | None = None  # Ω
        self.anchor: torch.Tensor | None = None  # θ*
        self.path: torch.Tensor | None = None  # ω of the current task
        self.start: torch.Tensor | None = None
        self.before: torch.Tensor | None = None
        self.step_grad: torch.Tensor | None = None  # g of the step (see path_integral)

    def before_task(self, model: StackedModel, task: int) -> None:
        self.start = model.theta.detach().clone()
        self.path = torch.zeros_like(self.start)

    def loss(self, model: StackedModel, batch, task: int) -> torch.Tensor:
        ce = super().loss(model, batch, task)
        return ce if self.importance is None else ce + self.penalty(model)

    @torch.no_grad()
    def penalty(self, model: StackedModel) -> torch.Tensor:
        """c · Σ_k Ω_k (θ_k − θ*_k)² per member (M,) (zero before the first task is learned);
        its gradient is added in ``before_step``."""
        if self.importance is None:
            return torch.zeros(model.size, device=model.theta.device)
        diff = model.theta - self.anchor
        return self.column("c") * torch.linalg.vecdot(self.importance * diff, diff)

    @torch.no_grad()
    def before_step(self, model: StackedModel, task: int) -> None:
        self.before = model.theta.detach().clone()
        task_loss_only = self.shared("path_integral") == "task-loss-clamped"
        if task_loss_only:  # the gradient of the task loss alone, before the penalty's is added
            self.step_grad = model.grad.clone()
        if self.importance is not None:
            twice_c = per_member(2 * self.column("c"), model.grad)
            model.grad.addcmul_(self.importance * (model.theta - self.anchor), twice_c)
        if not task_loss_only:
            self.step_grad = model.grad.clone()

    @torch.no_grad()
    def after_step(self, model: StackedModel, batch, task: int) -> None:
        self.path.sub_(self.step_grad * (model.theta - self.before))

    @torch.no_grad()
    def after_task(self, model: StackedModel, task: int) -> None:
        theta = model.theta.detach()
        eps = per_member(self.column("epsilon"), theta)
        contribution = self.path / ((theta - self.start).pow(2) + eps)
        if self.shared("path_integral") == "task-loss-clamped":
            contribution = contribution.clamp_min(0)
        self.importance = (
            contribution if self.importance is None else self.importance + contribution
        )
        self.anchor = theta.clone()
