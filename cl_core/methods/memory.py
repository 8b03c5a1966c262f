"""Exemplar memory: stored samples with whatever a method keeps beside them, on the run's device.

A memory holds named fields of equal length (``x``, ``target``, ``task``, ``label`` by
convention, plus e.g. ``logits`` for DER), so replay methods build a ``Batch`` from it without
knowing how it was filled. Two policies:

- ``ClassBalancedMemory``: after each task, each new class keeps ``quota`` exemplars chosen at
  random or by herding (iCaRL); with a total budget the quota shrinks as classes arrive
  (``budget // classes seen``) and each old class keeps its first ``quota`` (herding order is a
  priority order, so the best exemplars stay).
- ``ReservoirMemory``: reservoir sampling over the stream of training samples (Vitter 1985,
  Algorithm R; as DER uses it): every sample seen so far is in memory with equal probability.

Every random draw uses the memory's own generator (``ctx.new_generator``), so a memory never shifts
the trainer's batch order and a run is deterministic under ``train_seed``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from cl_core.errors import ClsweepError
from cl_core.params import HyperParam

if TYPE_CHECKING:
    from cl_core.context import Batch

Fields = dict[str, torch.Tensor]
BUDGET_PER = ("class", "total")


def memory_hyperparams(budget: int = 100, per: str = "class") -> tuple[HyperParam, ...]:
    """The memory budget, as a method declares it (REFERENCE R4: 100 per class on Split MNIST)."""
    return (
        HyperParam("budget", "int", budget, "memory size (per class or in total)", 0, 10**7),
        HyperParam("budget_per", "choice", per, "budget per class or in total", choices=BUDGET_PER),
    )


def batch_fields(batch: Batch) -> Fields:
    """The conventional fields of a batch (inputs, scenario targets, task ids, global labels)."""
    task = batch.task
    if isinstance(task, int):
        task = torch.full_like(batch.target, task)
    return {"x": batch.x, "target": batch.target, "task": task, "label": batch.label}


def as_batch(fields: Fields) -> Batch:
    """A training batch from stored conventional fields (per-sample task ids)."""
    from cl_core.context import Batch

    return Batch(fields["x"], fields["target"], fields["task"], fields["label"])


class ExemplarMemory:
    """Fields of equal length; ``sample`` draws a random subset without replacement."""

    def __init__(self, generator: torch.Generator) -> None:
        self.gen = generator
        self.data: Fields = {}

    def __len__(self) -> int:
        return 0 if not self.data else len(next(iter(self.data.values())))

    def sample(self, n: int) -> Fields:
        """``min(n, len)`` stored samples drawn uniformly without replacement."""
        size = len(self)
        if size == 0:
            return {}
        pick = torch.randperm(size, generator=self.gen, device=self.gen.device)[: min(n, size)]
        return {name: values[pick] for name, values in self.data.items()}


class ClassBalancedMemory(ExemplarMemory):
    """Exemplar sets per class (the ``label`` field), filled after each task."""

    def __init__(
        self, generator: torch.Generator, budget: int, per: str, selection: str = "random"
    ) -> None:
        super().__init__(generator)
        if per not in BUDGET_PER:
            raise ClsweepError(f"budget_per must be one of {BUDGET_PER}, got {per!r}")
        if selection not in ("random", "herding"):
            raise ClsweepError(f"selection must be random or herding, got {selection!r}")
        self.budget, self.per, self.selection = budget, per, selection
        self.classes: dict[int, Fields] = {}  # label -> its exemplars, in selection order

    def quota(self, n_classes: int) -> int:
        """Exemplars per class when ``n_classes`` classes are stored."""
        if self.per == "class":
            return self.budget
        return self.budget // max(n_classes, 1)

    def add_classes(self, samples: Fields, features: torch.Tensor | None = None) -> None:
        """Store exemplars of every class in ``samples`` (a task's training data) and shrink the
        other classes to the new quota. Herding needs ``features`` (one row per sample)."""
        labels = samples["label"]
        new = [c for c in labels.unique().tolist() if c not in self.classes]
        quota = self.quota(len(self.classes) + len(new))
        for label in self.classes:
            self.classes[label] = {k: v[:quota] for k, v in self.classes[label].items()}
        for label in new:
            rows = (labels == label).nonzero().flatten()
            if self.selection == "herding":
                if features is None:
                    raise ValueError("herding selection needs the samples' features")
                order = rows[herding_order(features[rows], quota)]
            else:
                pick = torch.randperm(len(rows), generator=self.gen, device=self.gen.device)
                order = rows[pick[:quota]]
            self.classes[label] = {k: v[order] for k, v in samples.items()}
        self.data = self._concatenated()

    def _concatenated(self) -> Fields:
        sets = [self.classes[c] for c in sorted(self.classes)]
        if not sets or not sets[0]:
            return {}
        return {k: torch.cat([s[k] for s in sets]) for k in sets[0]}


class ReservoirMemory(ExemplarMemory):
    """A fixed number of slots filled by reservoir sampling over all samples offered."""

    def __init__(self, generator: torch.Generator, capacity: int) -> None:
        super().__init__(generator)
        self.capacity = capacity
        self.seen = 0  # samples offered so far
        self._slots: Fields = {}

    def __len__(self) -> int:
        return min(self.seen, self.capacity)

    def offer(self, samples: Fields) -> None:
        """Algorithm R for a batch: sample j (the (seen+j)-th overall) fills the next free slot
        while the memory is not full, else replaces slot r ~ U{0..seen+j} if r < capacity.
        Where two samples of a batch pick one slot, the later wins, as in a sequential loop."""
        n = len(next(iter(samples.values())))
        if self.capacity == 0 or n == 0:
            self.seen += n
            return
        device = self.gen.device
        index = torch.arange(self.seen, self.seen + n, device=device)
        draw = (torch.rand(n, generator=self.gen, device=device) * (index + 1)).long()
        slot = torch.where(index < self.capacity, index, draw)
        rows = (slot < self.capacity).nonzero().flatten()
        slot = slot[rows]
        # keep the last row aiming at each slot: sort by (slot, row) and take each group's end
        order = torch.argsort(slot * n + rows)
        slot, rows = slot[order], rows[order]
        last = torch.ones_like(slot, dtype=torch.bool)
        last[:-1] = slot[1:] != slot[:-1]
        slot, rows = slot[last], rows[last]
        if not self._slots:
            self._slots = {
                k: torch.zeros((self.capacity, *v.shape[1:]), dtype=v.dtype, device=v.device)
                for k, v in samples.items()
            }
        for k, v in samples.items():
            self._slots[k][slot] = v[rows].detach()
        self.seen += n
        size = len(self)
        self.data = {k: v[:size] for k, v in self._slots.items()}


def herding_order(features: torch.Tensor, m: int) -> torch.Tensor:
    """Indices of ``m`` exemplars chosen by herding (Rebuffi et al. 2017, iCaRL, Algorithm 4).

    With φ the L2-normalised features and μ their mean, exemplar k is
        p_k = argmin_x ‖ μ − (φ(x) + Σ_{j<k} φ(p_j)) / k ‖,
    each sample chosen at most once; the order is a priority order (best first).
    """
    phi = torch.nn.functional.normalize(features.float(), dim=1)
    mu = phi.mean(0)
    chosen: list[int] = []
    running = torch.zeros_like(mu)
    available = torch.ones(len(phi), dtype=torch.bool, device=phi.device)
    for k in range(1, min(m, len(phi)) + 1):
        dist = (mu - (running + phi) / k).norm(dim=1)
        dist[~available] = float("inf")
        best = int(dist.argmin())
        chosen.append(best)
        available[best] = False
        running += phi[best]
    return torch.tensor(chosen, dtype=torch.long, device=features.device)
