"""iCaRL (Rebuffi, Kolesnikov, Sperl & Lampert 2017, "iCaRL: Incremental Classifier and
Representation Learning", CVPR). Class-incremental only.

- Exemplars (Algorithms 4 and 5): once a task is learned, each new class keeps ``budget``
  exemplars chosen by herding on L2-normalised features φ = ``model.features`` (priority order).
  The paper shares a total budget K among the classes seen (``budget_per: total``; old sets keep
  their first K / classes exemplars); R4 stores 100 per class on Split MNIST, which is our default
  (``budget_per: class``).
- Representation learning (Algorithm 3): the training set of task t is its data ∪ the exemplars.
  With old classes 1..s−1 and q_y the previous model's sigmoid outputs, the loss of a sample is
      ℓ(x) = −Σ_{y<s} [q_y log g_y + (1−q_y) log(1−g_y)] − Σ_{y=s}^{t} [δ_{y=label} log g_y
              + (1−δ_{y=label}) log(1−g_y)],     g_y = sigmoid(logit_y),
  i.e. binary cross-entropy over the units of the classes seen so far whose targets are one-hot
  for new classes and the old model's sigmoid outputs for old ones; summed over units, averaged
  over the batch (as R4's code does). ``temperature`` T scales the old logits, q = sigmoid(o/T):
  the paper's T = 1 is our default (R4's 2022 code uses its distillation temperature, 2).
- Nearest-mean-of-exemplars classification (Algorithm 1): μ_y = normalised mean of the
  exemplars' normalised features, recomputed once each task is learned; a sample is scored
  −‖φ(x) − μ_y‖ on every unit, −inf on units of classes without exemplars. Before any exemplar
  exists (the untrained model's evaluation, or budget 0), the network's outputs score instead.

Batches: the trainer draws the current task's samples; each step appends
round(B · |memory| / |task data|) exemplars, so a batch holds exemplars in their share of
data ∪ exemplars, as a batch drawn from the union would (R4's code concatenates the two datasets).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from cl_core.methods.memory import memory_hyperparams
from cl_core.methods.replay import ExemplarReplay, features_of, joined, selection_hyperparam
from cl_core.params import HyperParam


class ICaRL(ExemplarReplay):
    """Herding exemplars, binary cross-entropy with distillation, nearest-mean classification."""

    name = "icarl"
    scenarios = ("class",)
    hyperparams = {
        p.name: p
        for p in (
            *memory_hyperparams(),
            selection_hyperparam("herding"),
            HyperParam(
                "temperature",
                "float",
                1.0,
                "old logits are divided by T before the sigmoid (paper: 1)",
                low=0.0,
                high=100.0,
                low_open=True,
                log=True,
            ),
        )
    }

    def __init__(self, params, ctx) -> None:
        super().__init__(params, ctx)
        self.old: nn.Module | None = None
        self.means: torch.Tensor | None = None  # (output units, feature dim)
        self.has_mean: torch.Tensor | None = None  # (output units,) bool

    def before_task(self, model: nn.Module, task: int) -> None:
        if task > 0:
            self.old = copy.deepcopy(model).eval()
            self.old.requires_grad_(False)

    def loss(self, model: nn.Module, batch, task: int) -> torch.Tensor:
        if len(self.memory):
            data_rows = len(self.ctx.seq.tasks[task].train_idx)
            n_stored = round(len(batch) * len(self.memory) / max(data_rows, 1))
            if n_stored:
                batch = joined(batch, self.memory.sample(n_stored))
        c = self.ctx.scenario.classes_per_task
        seen, old = (task + 1) * c, task * c
        logits = self.forward(model, batch.x, batch.task)[:, :seen]
        targets = F.one_hot(batch.target, seen).to(logits.dtype)
        if self.old is not None and old:
            with torch.no_grad():
                old_logits = self.old(batch.x)[:, :old]
            targets[:, :old] = torch.sigmoid(old_logits / self.params["temperature"])
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        return bce.sum(1).mean()

    def after_task(self, model: nn.Module, task: int) -> None:
        super().after_task(model, task)  # herding with the model that just learned the task
        self.means, self.has_mean = self.class_means(model)
        if not self.has_mean.any():  # budget 0: no exemplars, the network's outputs score
            self.means = self.has_mean = None

    def class_means(self, model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """μ_y per output unit from the exemplars' normalised features (renormalised)."""
        units = self.ctx.scenario.out_units
        means = torch.zeros(units, model.feature_dim, device=self.ctx.device)
        has = torch.zeros(units, dtype=torch.bool, device=self.ctx.device)
        for label, exemplars in self.memory.classes.items():
            if len(exemplars["x"]) == 0:
                continue
            phi = F.normalize(features_of(model, exemplars["x"], self.ctx.cfg.eval_batch_size))
            means[label] = F.normalize(phi.mean(0), dim=0)
            has[label] = True
        return means, has

    def predict(self, model: nn.Module, x: torch.Tensor, task: int) -> torch.Tensor:
        if self.means is None:
            return self.forward(model, x, task)
        return nearest_mean_scores(model.features(x), self.means, self.has_mean)


def nearest_mean_scores(
    features: torch.Tensor, means: torch.Tensor, has_mean: torch.Tensor
) -> torch.Tensor:
    """−‖φ(x)/‖φ(x)‖ − μ_y‖ for every class y with a mean, −inf for the others (iCaRL, Alg. 1)."""
    scores = -torch.cdist(F.normalize(features), means)
    return scores.masked_fill(~has_mean, float("-inf"))
