"""LwF for a population (the single-run form and its sources: ``cl_core.methods.lwf``).

Each member distils its own frozen copy (its parameters before the task) with its own T, weight
and multiplier. The head warm-up (``warmup_epochs`` > 0) has no population form yet.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cl_core.population.methods.base import PopulationMethod


class PopulationLwF(PopulationMethod):
    name = "lwf"
    handles = {
        "temperature": None,
        "weight": None,
        "scaling": ("tasks", "t2", "none"),
        "warmup_epochs": (0,),
    }

    def __init__(self, params, pctx, net) -> None:
        super().__init__(params, pctx, net)
        self.temperature = self.column("temperature").unsqueeze(2)  # (M, 1, 1)
        self.old: torch.Tensor | None = None  # (M, P) parameters before the task
        self.coefficient: torch.Tensor | None = None  # weight · multiplier of the task, (M,)

    def state_tensors(self) -> list[str]:
        return ["temperature", "old", "coefficient"]

    def before_task(self, task: int) -> None:
        if task > 0:
            self.old = self.net.theta.detach().clone()
            self.coefficient = self._coefficient(task, self.pctx.scenario.kind)

    def extra_loss(self, batch, logits: torch.Tensor, task: int) -> torch.Tensor | None:
        if self.old is None:
            return None
        with torch.no_grad():
            old_logits = self.net.forward(batch.x, self.net.layers(self.old))
        kind = self.pctx.scenario.kind
        c = self.pctx.scenario.classes_per_task
        if kind == "task":
            pairs = [slice(k * c, (k + 1) * c) for k in range(task)]
        elif kind == "domain":
            pairs = [slice(None)]
        else:
            pairs = [slice(0, task * c)]
        kd = sum(
            distillation(old_logits[:, :, s], logits[:, :, s], self.temperature) for s in pairs
        ) / len(pairs)
        return self.coefficient * kd

    def _coefficient(self, task: int, kind: str) -> torch.Tensor:
        """weight · multiplier per member (M,), computed in double as the single run does."""
        out = []
        for p in self.params:
            if p["scaling"] == "tasks":
                multiplier = float(task) if kind in ("task", "domain") else 1.0
            elif p["scaling"] == "t2":
                multiplier = p["temperature"] ** 2
            else:
                multiplier = 1.0
            out.append(p["weight"] * multiplier)
        return self.pctx.per_member(out).squeeze(1)


def distillation(
    old_logits: torch.Tensor, logits: torch.Tensor, temperature: torch.Tensor
) -> torch.Tensor:
    """Per-member batch mean of −Σ softmax(old/T) · log_softmax(new/T) (R3), (M,)."""
    target = F.softmax(old_logits / temperature, dim=2)
    return -(target * F.log_softmax(logits / temperature, dim=2)).sum(2).mean(1)
