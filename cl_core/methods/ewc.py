"""Elastic weight consolidation (Kirkpatrick et al. 2017, PNAS, eq. 3; REFERENCE R1, R2).

Penalty: λ · Σ_i F_i (θ_i − θ*_i)², times 1/2 when ``half`` (R2; the paper's eq. 3), no factor
as in R1. Fisher merging across tasks:
  - "sum":      F ← F_old + F_new (R1)
  - "mean":     F ← (F_new + t · F_old) / (t + 1) for task t ≥ 1 (R2)
  - "online":   F ← γ · F_old + F_new (online EWC, Schwarz et al. 2018)
  - "separate": one penalty per task with its own Fisher and anchor ("offline" EWC)
The anchor θ* is the parameters after the latest task (except "separate").
The three-scenario reference code (GMvandeVen/continual-learning, ``ewc_loss`` in
continual_learner.py, 2019 and 2022) also multiplies the online Fisher by γ inside the penalty,
i.e. its λ times γ is our λ; the ``vdv-*`` presets fold that factor into λ (cl_core/presets.py).
"""

from __future__ import annotations

import torch
from torch import nn

from cl_core.methods.base import Method
from cl_core.methods.fisher import fisher_diagonal
from cl_core.params import HyperParam


class EWC(Method):
    """Quadratic penalty pulling parameters towards their post-task values, weighted by Fisher."""

    name = "ewc"
    hyperparams = {
        p.name: p
        for p in (
            HyperParam(
                "lambda", "float", 100.0, "penalty strength λ", low=0.0, high=1e13, log=True
            ),
            HyperParam(
                "fisher",
                "choice",
                "empirical",
                "Fisher estimate",
                choices=("empirical", "expected", "sampled", "predicted", "batch"),
            ),
            HyperParam(
                "fisher_samples",
                "int",
                1000,
                "training samples used for the Fisher (0 = all)",
                low=0,
                high=10**8,
            ),
            HyperParam(
                "fisher_batch_size",
                "int",
                256,
                "batch size of the 'batch' Fisher (R1)",
                low=1,
                high=10**6,
            ),
            HyperParam(
                "merge",
                "choice",
                "sum",
                "how Fishers of successive tasks combine",
                choices=("sum", "mean", "online", "separate"),
            ),
            HyperParam(
                "gamma", "float", 1.0, "decay of the old Fisher in 'online'", low=0.0, high=1.0
            ),
            HyperParam("half", "bool", True, "multiply the penalty by 1/2"),
        )
    }

    def __init__(self, params, ctx) -> None:
        super().__init__(params, ctx)
        self.terms: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = []  # (Fisher, anchor)
        self._grad_factors: list[list[torch.Tensor]] = []  # 2·s·F per term (see before_step)
        self._diffs: list[list[torch.Tensor]] | None = None  # θ − θ* of this step, per term

    def loss(self, model: nn.Module, batch, task: int) -> torch.Tensor:
        ce = super().loss(model, batch, task)
        if not self.terms:
            return ce
        self._diffs = self._differences(model)
        return ce + self._penalty_value(self._diffs)

    def penalty(self, model: nn.Module) -> torch.Tensor:
        """λ (· 1/2) · Σ_terms Σ_i F_i (θ_i − θ*_i)² (zero before the first task is learned).

        A value only: training adds its gradient in closed form (``before_step``)."""
        if not self.terms:
            return torch.zeros((), device=self.ctx.device)
        return self._penalty_value(self._differences(model))

    def _scale(self) -> float:
        return self.params["lambda"] * (0.5 if self.params["half"] else 1.0)

    @torch.no_grad()
    def _differences(self, model: nn.Module) -> list[list[torch.Tensor]]:
        params = list(model.parameters())
        return [[p - a for p, a in zip(params, anchor, strict=True)] for _, anchor in self.terms]

    @torch.no_grad()
    def _penalty_value(self, diffs: list[list[torch.Tensor]]) -> torch.Tensor:
        total = sum(
            (f * d.pow(2)).sum()
            for (fisher, _), term in zip(self.terms, diffs, strict=True)
            for f, d in zip(fisher, term, strict=True)
        )
        return self._scale() * total

    @torch.no_grad()
    def before_step(self, model: nn.Module, task: int) -> None:
        """Add the penalty's gradient 2·s·F·(θ − θ*) to each parameter's gradient.

        Computed as autograd computes it, op for op, so that the numbers are bitwise those of
        back-propagating through the penalty, without its graph (a third of an EWC step's
        time): autograd forms (s·F)·(2·(θ − θ*)) per term (= (2·s·F)·(θ − θ*) exactly, as
        doubling is exact), and sums the terms' gradients in reverse order of creation before
        adding the cross-entropy's.
        """
        if self._diffs is None:
            return
        for k, p in enumerate(model.parameters()):
            grads = [
                factors[k] * diffs[k]
                for factors, diffs in zip(self._grad_factors, self._diffs, strict=True)
            ]
            total = grads[-1]
            for g in reversed(grads[:-1]):
                total = total + g
            if p.grad is None:
                p.grad = total
            else:
                p.grad.add_(total)
        self._diffs = None

    def after_task(self, model: nn.Module, task: int) -> None:
        if task == self.ctx.seq.n_tasks - 1 and not self.ctx.task_free:
            return  # no later task would use this Fisher (a stream goes on consolidating)
        p = self.params
        new = list(
            fisher_diagonal(
                model, self.ctx, task, p["fisher"], p["fisher_samples"], p["fisher_batch_size"]
            ).values()
        )
        anchor = [q.detach().clone() for q in model.parameters()]
        if p["merge"] == "separate" or not self.terms:
            self.terms.append((new, anchor))
        else:
            old, _ = self.terms[0]
            if p["merge"] == "sum":
                merged = [o + n for o, n in zip(old, new, strict=True)]
            elif p["merge"] == "mean":
                merged = [(n + task * o) / (task + 1) for o, n in zip(old, new, strict=True)]
            else:
                merged = [p["gamma"] * o + n for o, n in zip(old, new, strict=True)]
            self.terms = [(merged, anchor)]
        scale = torch.tensor(self._scale(), dtype=torch.float32, device=self.ctx.device)
        self._grad_factors = [[2 * (scale * f) for f in fisher] for fisher, _ in self.terms]
