"""Learning without forgetting (Li & Hoiem 2016/2017; docs/references.md, LwF).

Loss on task t ≥ 1 (t counts the previous tasks), with m the multiplier below:
  - weighting "additive" (default): CE(new task) + weight · m · KD
  - weighting "one-over-t": (1/(t+1)) · CE + (1 − 1/(t+1)) · weight · m · KD, the three-scenario
    reference's weighting of current vs replayed data in every scenario (GMvandeVen/
    continual-learning, 2019: ``train_cl`` in train.py passes ``rnt=1/task`` to
    ``Classifier.train_a_batch`` in encoder.py, which returns rnt·loss_cur + (1−rnt)·loss_replay).
KD is a distillation cross-entropy between the old model's outputs o (a frozen copy taken before
the task, on the current batch: the same as recording them up front) and the current ones z:
    KD_T(o, z) = −Σ_c softmax(o/T)_c · log_softmax(z/T)_c     (Li & Hoiem; Hinton et al. 2015),
averaged over the batch; ``distill`` chooses which units and how they are normalised:
  - "per-scenario" (default): each previous task's head (task-IL, averaged over those tasks), the
    shared head (domain-IL), the units of the classes seen before task t on both sides (class-IL).
  - "padded-unit-mean": the three-scenario reference's form, as its 2019 preprint code has it
    (``loss_fn_kd`` in utils.py at commit 86802a8, 2019-04-17): o is restricted to the old units
    and its softmax padded with zeros up to the current model's active units, so that
        KD = −(1/n) Σ_{c<n} p̃_c · log_softmax(z/T)_c,   p̃ = [softmax(o_old/T), 0, ..., 0],
    with n = the active units (class-IL: the classes seen so far, the new task's included, or all
    units with class_il_units "all"; task-IL: each previous head, averaged over those heads;
    domain-IL: the shared head), i.e. averaged over units as well as samples.
  - "padded-unit-sum": the same, summed over units instead of averaged: ``loss_fn_kd`` from commit
    26f00db (2019-05-17, "summation over classes was omitted") on, and in the 2022 code
    (models/utils/loss_functions.py; there without T², as ``norm=False``, and in class-IL only
    with ``--active-classes all-so-far``: its default, ``all``, distils all units unpadded).
In task- and domain-IL all three forms distil the same units (nothing is padded); "padded-unit-mean"
then differs from "per-scenario" only by the 1/n. The multiplier m is an explicit choice
(docs/references.md, LwF):
  - "tasks": m = t (number of previous tasks) in task- and domain-IL, 1 in class-IL, no T² (the
    2022 three-scenario code: ``lwf_weighting`` in models/classifier.py);
  - "t2":    m = T² (Hinton et al.'s gradient-scale correction; the 2019 reference code, where
    with weighting "one-over-t" the distillation term is t · T² times the current loss' weight);
  - "none":  m = 1.
``warmup_epochs`` first trains only the output layer on the new task with cross-entropy alone
(Li & Hoiem's warm-up step: trunk and old heads frozen).
Members of a population differ in T and the weight; they share the rest.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cl_core.methods.base import Method
from cl_core.models import StackedModel
from cl_core.optim import make_optimizer
from cl_core.params import HyperParam

DISTILL_FORMS = ("per-scenario", "padded-unit-mean", "padded-unit-sum")


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
                "distill",
                "choice",
                "per-scenario",
                "which units are distilled and how they are normalised",
                choices=DISTILL_FORMS,
            ),
            HyperParam(
                "weighting",
                "choice",
                "additive",
                "CE + distillation, or 1/(t+1) vs 1 − 1/(t+1) (the reference's replay weighting)",
                choices=("additive", "one-over-t"),
            ),
            HyperParam(
                "warmup_epochs", "int", 0, "epochs training only the output layer", low=0, high=1000
            ),
        )
    }
    stability = ("weight",)

    member_state = ("old",)

    def __init__(self, params, ctx) -> None:
        super().__init__(params, ctx)
        self.old: StackedModel | None = None

    def before_task(self, model: StackedModel, task: int) -> None:
        if task == 0:
            return
        self.old = model.frozen_copy()
        self._warm_up_head(model, task)

    def _warm_up_head(self, model: StackedModel, task: int) -> None:
        """Li & Hoiem's warm-up: ``warmup_epochs`` epochs on the new task training only the output
        layer (trunk frozen; no distillation term, as the old heads do not move in task-IL),
        each member with a fresh optimizer of its own settings."""
        epochs = self.shared("warmup_epochs")
        if not epochs:
            return
        head = model.store.columns(model.head_names)
        optimizer = make_optimizer(self.ctx.cfgs, model.theta[:, head])
        for _ in range(epochs):
            for batch in self.ctx.batches([task], self.ctx.cfg.batch_size):
                model.zero_grad_()
                with torch.no_grad():
                    features = model.features(batch.x)
                logits = model.head(features)
                self.ctx.cross_entropy(logits, batch).sum().backward()
                optimizer.step(model.theta[:, head], model.grad[:, head])
        model.zero_grad_()

    def loss(self, model: StackedModel, batch, task: int) -> torch.Tensor:
        ce, logits = self.ce_and_logits(model, batch)
        if self.old is None:
            return ce
        with torch.no_grad():
            old_logits = self.old(batch.x)
        kind = self.ctx.scenario.kind
        if self.shared("distill") == "per-scenario":
            kd = self._per_scenario(old_logits, logits, task, kind)
        else:
            kd = self._padded(old_logits, logits, task, kind)
        term = self.column("weight") * self._multiplier(task, kind) * kd
        if self.shared("weighting") == "one-over-t":
            current = 1.0 / (task + 1)
            return current * ce + (1.0 - current) * term
        return ce + term

    def temperature(self) -> torch.Tensor:
        """T per member, shaped (M, 1, 1) to broadcast over samples and units."""
        return self.column("temperature").view(-1, 1, 1)

    def _per_scenario(self, old_logits, logits, task: int, kind: str) -> torch.Tensor:
        temperature = self.temperature()
        c = self.ctx.scenario.classes_per_task
        if kind == "task":
            pairs = [(slice(k * c, (k + 1) * c)) for k in range(task)]
        elif kind == "domain":
            pairs = [slice(None)]
        else:
            pairs = [slice(0, task * c)]
        total = sum(distillation(old_logits[..., s], logits[..., s], temperature) for s in pairs)
        return total / len(pairs)

    def _padded(self, old_logits, logits, task: int, kind: str) -> torch.Tensor:
        """The reference's form: old units' softmax zero-padded to the current active units."""
        temperature = self.temperature()
        unit_mean = self.shared("distill") == "padded-unit-mean"
        c = self.ctx.scenario.classes_per_task
        if kind == "task":
            heads = [slice(k * c, (k + 1) * c) for k in range(task)]
            total = sum(
                padded_distillation(old_logits[..., h], logits[..., h], temperature, unit_mean)
                for h in heads
            )
            return total / len(heads)
        active = self.ctx.active_logits(logits, task)
        old = old_logits if kind == "domain" else old_logits[..., : task * c]
        return padded_distillation(old, active, temperature, unit_mean)

    def _multiplier(self, task: int, kind: str) -> torch.Tensor | float:
        scaling = self.shared("scaling")
        if scaling == "tasks":
            return float(task) if kind in ("task", "domain") else 1.0
        if scaling == "t2":
            return self.column("temperature") ** 2
        return 1.0


def distillation(
    old_logits: torch.Tensor, logits: torch.Tensor, temperature: torch.Tensor | float
) -> torch.Tensor:
    """Batch mean of −Σ softmax(old/T) · log_softmax(new/T) (Li & Hoiem), per member: logits
    (M, N, units) give (M,); (N, units) give a scalar."""
    target = F.softmax(old_logits / temperature, dim=-1)
    return -(target * F.log_softmax(logits / temperature, dim=-1)).sum(-1).mean(-1)


def padded_distillation(
    old_logits: torch.Tensor,
    logits: torch.Tensor,
    temperature: torch.Tensor | float,
    unit_mean: bool,
) -> torch.Tensor:
    """−Σ_c p̃_c · log_softmax(logits/T)_c with p̃ = softmax(old/T) padded with zeros to the width
    of ``logits``; averaged over the batch, and over the units too when ``unit_mean``
    (the three-scenario reference's ``loss_fn_kd`` without its T², which ``scaling`` sets);
    per member, as ``distillation``."""
    target = F.softmax(old_logits / temperature, dim=-1)
    target = F.pad(target, (0, logits.shape[-1] - target.shape[-1]))
    per_unit = -(target * F.log_softmax(logits / temperature, dim=-1))
    return per_unit.mean((-2, -1)) if unit_mean else per_unit.sum(-1).mean(-1)
