"""LwF for a population (the single-run form and its sources: ``cl_core.methods.lwf``).

Each member distils its own frozen copy (its parameters before the task) with its own T, weight
and multiplier; members share ``warmup_epochs`` (it sets the number of steps).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cl_core.population.context import member_cross_entropy
from cl_core.population.methods.base import PopulationMethod
from cl_core.population.optim import make_stacked_optimizer


class PopulationLwF(PopulationMethod):
    name = "lwf"
    handles = {
        "temperature": None,
        "weight": None,
        "scaling": ("tasks", "t2", "none"),
        "warmup_epochs": None,
    }

    @classmethod
    def shared_settings(cls, params) -> tuple:
        return (("warmup_epochs", params["warmup_epochs"]),)

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
            self._warm_up_head(task)

    def _warm_up_head(self, task: int) -> None:
        """R3's warm-up, as the single run's: ``warmup_epochs`` epochs on the new task training
        only the output layer (each member with a fresh optimizer of its own settings)."""
        epochs = self.params[0]["warmup_epochs"]
        if not epochs:
            return
        net, pctx = self.net, self.pctx
        head = net.head_columns
        optimizer = make_stacked_optimizer(pctx.cfgs, net.theta[:, head])
        weight, bias = net.trainable[-1]
        for _ in range(epochs):
            for batch in pctx.batches([task], pctx.cfg.batch_size):
                net.grad.zero_()
                with torch.no_grad():
                    features = net.features(batch.x)
                logits = torch.baddbmm(bias.unsqueeze(1), features, weight.transpose(1, 2))
                active = pctx.active_logits(logits, batch.task)
                member_cross_entropy(active, batch.target).sum().backward()
                optimizer.step(net.theta[:, head], net.grad[:, head])
        net.grad.zero_()

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
