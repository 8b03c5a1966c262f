"""Elastic weight consolidation (Kirkpatrick et al. 2017, PNAS, eq. 3; docs/references.md,
Classic Permuted MNIST and EWC variants).

Penalty: λ · Σ_i F_i (θ_i − θ*_i)², times 1/2 when ``half`` (the paper's eq. 3), no factor as in
the classic Permuted MNIST script. Fisher merging across tasks:
  - "sum":      F ← F_old + F_new (the classic script)
  - "mean":     F ← (F_new + t · F_old) / (t + 1) for task t ≥ 1 (a running mean)
  - "online":   F ← γ · F_old + F_new (online EWC, Schwarz et al. 2018)
  - "separate": one penalty per task with its own Fisher and anchor ("offline" EWC)
The anchor θ* is the parameters after the latest task (except "separate").
The three-scenario reference code (GMvandeVen/continual-learning, ``ewc_loss`` in
continual_learner.py, 2019 and 2022) also multiplies the online Fisher by γ inside the penalty,
i.e. its λ times γ is our λ; the ``vdv-*`` presets fold that factor into λ (cl_core/presets.py).

Members of a population differ in λ and γ; they share the Fisher kind, its samples and batch
size, the merge rule and the 1/2 factor.
"""

from __future__ import annotations

import torch

from cl_core.methods.base import Method, per_member
from cl_core.methods.fisher import fisher_diagonal
from cl_core.models import StackedModel
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
                "batch size of the 'batch' Fisher (the classic script's)",
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

    member_state = ("terms", "_grad_factors")
    stability = ("lambda",)

    def __init__(self, params, ctx) -> None:
        super().__init__(params, ctx)
        self.terms: list[tuple[torch.Tensor, torch.Tensor]] = []  # (Fisher, anchor), (M, P) each
        self._grad_factors: list[torch.Tensor] = []  # 2·(s·F) per term (see before_step)
        self._diffs: tuple[int | None, list[torch.Tensor] | None] = (None, None)  # see penalty
        self.fisher_random = ctx.random("fisher")  # the sampled Fisher's labels

    def set_hyperparam(self, name: str, values: list[float]) -> None:
        super().set_hyperparam(name, values)
        if name == "lambda" and self.terms:  # the penalty's gradient factors 2·s·F use λ
            scale = self.scale().unsqueeze(1)
            self._grad_factors = [2 * (scale * fisher) for fisher, _ in self.terms]

    def scale(self) -> torch.Tensor:
        """s = λ (· 1/2) per member, (M,)."""
        return self.column("lambda") * (0.5 if self.shared("half") else 1.0)

    def loss(self, model: StackedModel, batch, task: int) -> torch.Tensor:
        ce = super().loss(model, batch, task)
        return ce if not self.terms else ce + self.penalty(model)

    @torch.no_grad()
    def penalty(self, model: StackedModel) -> torch.Tensor:
        """s · Σ_terms Σ_i F_i (θ_i − θ*_i)² per member (M,) (zero before the first task is
        learned). A value only: training adds its gradient in closed form (``before_step``)."""
        total = torch.zeros(model.size, device=model.theta.device)
        diffs = [model.theta - anchor for _, anchor in self.terms]
        for (fisher, _), diff in zip(self.terms, diffs, strict=True):
            total += torch.linalg.vecdot(fisher * diff, diff)
        # θ − θ* again in ``before_step`` (θ unchanged until the optimizer steps): kept, as
        # each (M, P) pass over a population's parameters is memory-bound
        self._diffs = (model.theta._version, diffs)
        return self.scale() * total

    @torch.no_grad()
    def before_step(self, model: StackedModel, task: int) -> None:
        """Add the penalty's gradient 2·s·F·(θ − θ*) to every member's gradient.

        Computed as autograd computes it, op for op, so that the numbers are bitwise those of
        back-propagating through the penalty, without its graph: autograd forms
        (s·F)·(2·(θ − θ*)) per term (= (2·(s·F))·(θ − θ*) exactly, as doubling is exact), and
        sums the terms' gradients in reverse order of creation before adding the
        cross-entropy's.
        """
        if not self.terms:
            return
        version, diffs = self._diffs
        if version != model.theta._version or len(diffs) != len(self.terms):
            diffs = [model.theta - anchor for _, anchor in self.terms]
        self._diffs = (None, None)
        grads = [factor * diff for factor, diff in zip(self._grad_factors, diffs, strict=True)]
        total = grads[-1]
        for g in reversed(grads[:-1]):
            total = total + g
        model.grad.add_(total)

    @torch.no_grad()
    def after_task(self, model: StackedModel, task: int) -> None:
        if task == self.ctx.seq.n_tasks - 1 and not self.ctx.task_free:
            return  # no later task would use this Fisher (a stream goes on consolidating)
        new = fisher_diagonal(
            model,
            self.ctx,
            task,
            self.shared("fisher"),
            self.shared("fisher_samples"),
            self.shared("fisher_batch_size"),
            self.fisher_random,
        )
        anchor = model.theta.detach().clone()
        merge = self.shared("merge")
        if merge == "separate" or not self.terms:
            self.terms.append((new, anchor))
        else:
            old, _ = self.terms[0]
            if merge == "sum":
                merged = old + new
            elif merge == "mean":
                merged = (new + task * old) / (task + 1)
            else:
                merged = per_member(self.column("gamma"), old) * old + new
            self.terms = [(merged, anchor)]
        scale = self.scale().unsqueeze(1)
        self._grad_factors = [2 * (scale * fisher) for fisher, _ in self.terms]
