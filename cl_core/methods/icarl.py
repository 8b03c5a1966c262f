"""iCaRL (Rebuffi, Kolesnikov, Sperl & Lampert 2017, "iCaRL: Incremental Classifier and
Representation Learning", CVPR). Class-incremental only.

- Exemplars (Algorithms 4 and 5): once a task is learned, each new class keeps ``budget``
  exemplars chosen by herding on L2-normalised features φ = ``model.features`` (priority order).
  The paper shares a total budget K among the classes seen (``budget_per: total``; old sets keep
  their first K / classes exemplars); the three-scenario protocol stores 100 per class on Split
  MNIST, which is our default (``budget_per: class``).
- Representation learning (Algorithm 3): the training set of task t is its data ∪ the exemplars.
  With old classes 1..s−1 and q_y the previous model's sigmoid outputs, the loss of a sample is
      ℓ(x) = −Σ_{y<s} [q_y log g_y + (1−q_y) log(1−g_y)] − Σ_{y=s}^{t} [δ_{y=label} log g_y
              + (1−δ_{y=label}) log(1−g_y)],     g_y = sigmoid(logit_y),
  i.e. binary cross-entropy over the units of the classes seen so far whose targets are one-hot
  for new classes and the old model's sigmoid outputs for old ones; summed over units, averaged
  over the batch (as the three-scenario code does). ``temperature`` T scales the old logits,
  q = sigmoid(o/T): the paper's T = 1 is our default (the three-scenario 2022 code uses its
  distillation temperature, 2).
- Nearest-mean-of-exemplars classification (Algorithm 1): μ_y = normalised mean of the
  exemplars' normalised features, recomputed once each task is learned; a sample is scored
  −‖φ(x) − μ_y‖ on every unit, −inf on units of classes without exemplars. Before any exemplar
  exists (the untrained model's evaluation, or budget 0), the network's outputs score instead.

Batches: the trainer draws the current task's samples; each step appends
round(B · |memory| / |task data|) exemplars, so a batch holds exemplars in their share of
data ∪ exemplars, as a batch drawn from the union would (the three-scenario code concatenates the
two datasets). Members of a population differ in T; each has its own exemplars and class means.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cl_core.methods.memory import memory_hyperparams
from cl_core.methods.replay import ExemplarReplay, features_of, joined, selection_hyperparam
from cl_core.models import StackedModel
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

    member_state = ("memory", "old", "means")

    def __init__(self, params, ctx) -> None:
        super().__init__(params, ctx)
        self.old: StackedModel | None = None
        self.means: torch.Tensor | None = None  # (M, output units, feature dim)
        self.has_mean: torch.Tensor | None = None  # (output units,) bool, the same for all

    def before_task(self, model: StackedModel, task: int) -> None:
        if task > 0:
            self.old = model.frozen_copy()

    def loss(self, model: StackedModel, batch, task: int) -> torch.Tensor:
        if len(self.memory):
            data_rows = len(self.ctx.seq.tasks[task].train_idx)
            n_stored = round(len(batch) * len(self.memory) / max(data_rows, 1))
            if n_stored:
                batch = joined(batch, self.memory.sample(n_stored))
        c = self.ctx.scenario.classes_per_task
        seen, old = (task + 1) * c, task * c
        logits = self.forward(model, batch.x, batch.task)[..., :seen]
        targets = F.one_hot(batch.target, seen).to(logits.dtype)
        if self.old is not None and old:
            with torch.no_grad():
                old_logits = self.old(batch.x)[..., :old]
            temperature = self.column("temperature").view(-1, 1, 1)
            targets[..., :old] = torch.sigmoid(old_logits / temperature)
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        return bce.sum(-1).mean(-1)

    def after_task(self, model: StackedModel, task: int) -> None:
        super().after_task(model, task)  # herding with the model that just learned the task
        self.means, self.has_mean = self.class_means(model)
        if not self.has_mean.any():  # budget 0: no exemplars, the network's outputs score
            self.means = self.has_mean = None

    def class_means(self, model: StackedModel) -> tuple[torch.Tensor, torch.Tensor]:
        """μ_y per member and output unit from the exemplars' normalised features
        (renormalised): (M, units, F), and which units have exemplars (units,)."""
        units = self.ctx.scenario.out_units
        device = self.ctx.device
        means = torch.zeros(self.size, units, model.feature_dim, device=device)
        has = torch.zeros(units, dtype=torch.bool, device=device)
        for label, exemplars in self.memory.classes.items():
            if exemplars["x"].shape[1] == 0:
                continue
            x = exemplars["x"]  # (M, q, D): each member's own exemplars
            phi = F.normalize(features_of(model, x, self.ctx.cfg.eval_batch_size), dim=-1)
            means[:, label] = F.normalize(phi.mean(1), dim=-1)
            has[label] = True
        return means, has

    def predict(self, model: StackedModel, x: torch.Tensor, task: int) -> torch.Tensor:
        if self.means is None:
            return self.forward(model, x, task)
        return nearest_mean_scores(model.features(x), self.means, self.has_mean)


def nearest_mean_scores(
    features: torch.Tensor, means: torch.Tensor, has_mean: torch.Tensor
) -> torch.Tensor:
    """−‖φ(x)/‖φ(x)‖ − μ_y‖ for every class y with a mean, −inf for the others (iCaRL, Alg. 1);
    features (M, N, F), means (M, units, F): scores (M, N, units)."""
    scores = -torch.cdist(F.normalize(features, dim=-1), means)
    return scores.masked_fill(~has_mean, float("-inf"))
