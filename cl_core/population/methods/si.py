"""SI for a population (the single-run form and its sources: ``cl_core.methods.si``).

Per member: ω += −g·Δθ per step with g the task loss's gradient (the trainer hands it over before
the penalty's gradient is added, so nothing needs removing), Ω += max(0, ω / (Δ² + ε)) after each
task, penalty c · Σ Ω (θ − θ*)² with gradient 2cΩ(θ − θ*). Members may differ in c and ε.
"""

from __future__ import annotations

import torch

from cl_core.population.methods.base import PopulationMethod


class PopulationSI(PopulationMethod):
    name = "si"
    handles = {"c": None, "epsilon": None}

    def __init__(self, params, pctx, net) -> None:
        super().__init__(params, pctx, net)
        self.c = self.column("c")
        self.twice_c = self.pctx.per_member([2 * p["c"] for p in params])
        self.epsilon = self.column("epsilon")
        self.importance: torch.Tensor | None = None  # Ω
        self.anchor: torch.Tensor | None = None  # θ*
        self.path: torch.Tensor | None = None  # ω of the current task
        self.start: torch.Tensor | None = None
        self.before: torch.Tensor | None = None
        self.task_grad: torch.Tensor | None = None

    def state_tensors(self) -> list[str]:
        return ["c", "twice_c", "epsilon", "importance", "anchor", "path", "start"]

    def before_task(self, task: int) -> None:
        self.start = self.net.theta.detach().clone()
        self.path = torch.zeros_like(self.start)

    @torch.no_grad()
    def before_step(self, task: int) -> None:
        self.before = self.net.theta.clone()
        self.task_grad = self.net.grad.clone()

    @torch.no_grad()
    def penalty(self, task: int) -> torch.Tensor | None:
        if self.importance is None:
            return None
        diff = self.net.theta - self.anchor
        weighted = self.importance * diff
        self.net.grad.addcmul_(weighted, self.twice_c)
        return self.c.squeeze(1) * torch.linalg.vecdot(weighted, diff)

    @torch.no_grad()
    def after_step(self, batch, task: int) -> None:
        self.path.sub_(self.task_grad * (self.net.theta - self.before))

    @torch.no_grad()
    def after_task(self, task: int) -> None:
        theta = self.net.theta
        contribution = (self.path / ((theta - self.start).pow(2) + self.epsilon)).clamp_min(0)
        self.importance = (
            contribution if self.importance is None else self.importance + contribution
        )
        self.anchor = theta.clone()
