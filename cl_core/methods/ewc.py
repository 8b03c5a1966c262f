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

    def loss(self, model: nn.Module, batch, task: int) -> torch.Tensor:
        ce = super().loss(model, batch, task)
        return ce if not self.terms else ce + self.penalty(model)

    def penalty(self, model: nn.Module) -> torch.Tensor:
        """λ (· 1/2) · Σ_terms Σ_i F_i (θ_i − θ*_i)² (zero before the first task is learned)."""
        if not self.terms:
            return torch.zeros((), device=self.ctx.device)
        total = sum(
            (f * (p - a).pow(2)).sum()
            for fisher, anchor in self.terms
            for f, p, a in zip(fisher, model.parameters(), anchor, strict=True)
        )
        scale = self.params["lambda"] * (0.5 if self.params["half"] else 1.0)
        return scale * total

    def after_task(self, model: nn.Module, task: int) -> None:
        p = self.params
        new = list(
            fisher_diagonal(
                model, self.ctx, task, p["fisher"], p["fisher_samples"], p["fisher_batch_size"]
            ).values()
        )
        anchor = [q.detach().clone() for q in model.parameters()]
        if p["merge"] == "separate" or not self.terms:
            self.terms.append((new, anchor))
            return
        old, _ = self.terms[0]
        if p["merge"] == "sum":
            merged = [o + n for o, n in zip(old, new, strict=True)]
        elif p["merge"] == "mean":
            merged = [(n + task * o) / (task + 1) for o, n in zip(old, new, strict=True)]
        else:
            merged = [p["gamma"] * o + n for o, n in zip(old, new, strict=True)]
        self.terms = [(merged, anchor)]
