"""Learning without forgetting (Li & Hoiem 2016/2017; REFERENCE R3).

Loss on task t ≥ 1: CE(new task) + weight · m · KD_T(old model's outputs, current outputs) with
    KD_T(o, z) = −Σ_c softmax(o/T)_c · log_softmax(z/T)_c   (R3; Hinton et al. 2015),
averaged over the batch. Which outputs are distilled depends on the scenario: each previous
task's head (task-IL, averaged over those tasks), the shared head (domain-IL), the units of the
classes seen before task t (class-IL). The multiplier m is the explicit choice of R3:
  - "tasks": m = t (number of previous tasks) in task- and domain-IL, 1 in class-IL
    (the three-scenario implementation, no T²);
  - "t2":    m = T² (Hinton et al.'s gradient-scale correction);
  - "none":  m = 1.
The old model's outputs are computed on each batch by a frozen copy taken before the task, which
equals recording them up front (the copy never changes) without storing them.
``warmup_epochs`` first trains only the output layer on the new task with cross-entropy alone
(R3's warm-up step: trunk and old heads frozen).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from cl_core.methods.base import Method
from cl_core.optim import make_optimizer
from cl_core.params import HyperParam


class LwF(Method):
    """Distil the previous model's outputs on the current task's inputs."""

    name = "lwf"
    hyperparams = {
        p.name: p
        for p in (
            HyperParam(
                "temperature",
                "float",
                2.0,
                "distillation temperature T",
                low=0.0,
                high=100.0,
                low_open=True,
                log=True,
            ),
            HyperParam("weight", "float", 1.0, "distillation weight λ_o", low=0.0, high=1e4),
            HyperParam(
                "scaling",
                "choice",
                "tasks",
                "multiplier of the distillation term",
                choices=("tasks", "t2", "none"),
            ),
            HyperParam(
                "warmup_epochs", "int", 0, "epochs training only the output layer", low=0, high=1000
            ),
        )
    }

    def __init__(self, params, ctx) -> None:
        super().__init__(params, ctx)
        self.old: nn.Module | None = None

    def before_task(self, model: nn.Module, task: int) -> None:
        if task == 0:
            return
        self.old = copy.deepcopy(model).eval()
        self.old.requires_grad_(False)
        self._warm_up_head(model, task)

    def _warm_up_head(self, model: nn.Module, task: int) -> None:
        """R3's warm-up: ``warmup_epochs`` epochs on the new task training only the output layer
        (trunk frozen; no distillation term, as the old heads do not move in task-IL)."""
        epochs = self.params["warmup_epochs"]
        if not epochs:
            return
        optimizer = make_optimizer(self.ctx.cfg, model.head.parameters())
        for _ in range(epochs):
            for batch in self.ctx.batches([task], self.ctx.cfg.batch_size):
                optimizer.zero_grad(set_to_none=True)
                with torch.no_grad():
                    features = model.features(batch.x)
                logits = self.ctx.active_logits(model.head(features), batch.task)
                F.cross_entropy(logits, batch.target).backward()
                optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def loss(self, model: nn.Module, batch, task: int) -> torch.Tensor:
        ce, logits = self.ce_and_logits(model, batch)
        if self.old is None:
            return ce
        with torch.no_grad():
            old_logits = self.old(batch.x)
        temperature = self.params["temperature"]
        kind = self.ctx.scenario.kind
        c = self.ctx.scenario.classes_per_task
        if kind == "task":
            pairs = [(slice(k * c, (k + 1) * c)) for k in range(task)]
        elif kind == "domain":
            pairs = [slice(None)]
        else:
            pairs = [slice(0, task * c)]
        kd = sum(distillation(old_logits[:, s], logits[:, s], temperature) for s in pairs) / len(
            pairs
        )
        return ce + self.params["weight"] * self._multiplier(task, kind) * kd

    def _multiplier(self, task: int, kind: str) -> float:
        scaling = self.params["scaling"]
        if scaling == "tasks":
            return float(task) if kind in ("task", "domain") else 1.0
        if scaling == "t2":
            return self.params["temperature"] ** 2
        return 1.0


def distillation(
    old_logits: torch.Tensor, logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Batch mean of −Σ softmax(old/T) · log_softmax(new/T) (R3)."""
    target = F.softmax(old_logits / temperature, dim=1)
    return -(target * F.log_softmax(logits / temperature, dim=1)).sum(1).mean()
