"""Exemplar memory: stored samples with whatever a method keeps beside them, one memory per
member, on the run's device.

A memory holds named fields of equal length per member, each (M, K, ...) (``x``, ``target``,
``task``, ``label`` by convention, plus e.g. ``logits`` for DER), so replay methods build a
``Batch`` from it without knowing how it was filled. Members share the budget (it fixes K) and
fill their memories with their own draws. Two policies:

- ``ClassBalancedMemory``: after each task, each new class keeps ``quota`` exemplars chosen at
  random or by herding (iCaRL); with a total budget the quota shrinks as classes arrive
  (``budget // classes seen``) and each old class keeps its first ``quota`` (herding order is a
  priority order, so the best exemplars stay).
- ``ReservoirMemory``: reservoir sampling over the stream of training samples (Vitter 1985,
  Algorithm R; as DER uses it): every sample seen so far is in memory with equal probability.

Every random draw uses the memory's own stream (``ctx.random("memory")``), so a memory never
shifts the trainer's batch order and a run is deterministic under ``train_seed``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from cl_core.context import rows_of
from cl_core.errors import ClsweepError
from cl_core.params import HyperParam
from cl_core.random import MemberRandom

if TYPE_CHECKING:
    from cl_core.context import Batch

Fields = dict[str, torch.Tensor]
BUDGET_PER = ("class", "total")


def memory_hyperparams(budget: int = 100, per: str = "class") -> tuple[HyperParam, ...]:
    """The memory budget, as a method declares it (the three-scenario protocol stores 100 per
    class on Split MNIST, docs/references.md)."""
    return (
        HyperParam("budget", "int", budget, "memory size (per class or in total)", 0, 10**7),
        HyperParam("budget_per", "choice", per, "budget per class or in total", choices=BUDGET_PER),
    )


def batch_fields(batch: Batch) -> Fields:
    """The conventional fields of a batch, (M, B, ...) each (inputs, scenario targets, task ids,
    global labels)."""
    return {"x": batch.x, "target": batch.target, "task": batch.task_ids(), "label": batch.label}


def as_batch(fields: Fields) -> Batch:
    """A training batch from stored conventional fields (per-sample task ids)."""
    from cl_core.context import Batch

    return Batch(fields["x"], fields["target"], fields["task"], fields["label"])


def gather_rows(values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Rows ``rows`` (M, k) of each member's ``values`` (M, K, ...): (M, k, ...), as rows of
    the (M·K, ...) table (``rows_of``): a ``gather`` with the index expanded over the trailing
    dimensions costs 8x as much for 32 members' replay batches on a CPU."""
    m, k = values.shape[:2]
    flat = rows + torch.arange(m, device=rows.device).unsqueeze(1) * k
    return rows_of(values.flatten(0, 1), flat)


class ExemplarMemory:
    """Fields of equal length per member; ``sample`` draws a random subset without replacement."""

    def __init__(self, random: MemberRandom) -> None:
        self.random = random
        self.data: Fields = {}

    def __len__(self) -> int:
        """Stored samples per member (the same for every member)."""
        return 0 if not self.data else next(iter(self.data.values())).shape[1]

    def sample(self, n: int) -> Fields:
        """``min(n, len)`` stored samples per member, drawn uniformly without replacement."""
        size = len(self)
        if size == 0:
            return {}
        pick = self.random.subset(size, n)
        return {name: gather_rows(values, pick) for name, values in self._tables().items()}

    def _tables(self) -> Fields:
        """What ``sample`` gathers rows from: member m's first ``len(self)`` rows of each field
        are its samples. Contiguous, so that flattening a table copies nothing."""
        return self.data

    def select(self, keep: torch.Tensor) -> None:
        self.data = {k: v.index_select(0, keep.to(v.device)) for k, v in self.data.items()}


class ClassBalancedMemory(ExemplarMemory):
    """Exemplar sets per class (the ``label`` field), filled after each task."""

    def __init__(
        self, random: MemberRandom, budget: int, per: str, selection: str = "random"
    ) -> None:
        super().__init__(random)
        if per not in BUDGET_PER:
            raise ClsweepError(f"budget_per must be one of {BUDGET_PER}, got {per!r}")
        if selection not in ("random", "herding"):
            raise ClsweepError(f"selection must be random or herding, got {selection!r}")
        self.budget, self.per, self.selection = budget, per, selection
        self.classes: dict[int, Fields] = {}  # label -> its exemplars (M, q, ...), selection order

    def quota(self, n_classes: int) -> int:
        """Exemplars per class when ``n_classes`` classes are stored."""
        if self.per == "class":
            return self.budget
        return self.budget // max(n_classes, 1)

    def add_classes(self, samples: Fields, features: torch.Tensor | None = None) -> None:
        """Store exemplars of every class in ``samples`` (a task's training data, shared by all
        members: (N, ...) each) and shrink the other classes to the new quota. Herding needs
        each member's ``features`` of the samples, (M, N, F)."""
        labels = samples["label"]
        new = [c for c in labels.unique().tolist() if c not in self.classes]
        quota = self.quota(len(self.classes) + len(new))
        for label in self.classes:
            self.classes[label] = {k: v[:, :quota] for k, v in self.classes[label].items()}
        for label in new:
            rows = (labels == label).nonzero().flatten()
            if self.selection == "herding":
                if features is None:
                    raise ValueError("herding selection needs the samples' features")
                order = rows[herding_order(features[:, rows], quota)]
            else:
                order = rows[self.random.subset(len(rows), quota)]
            self.classes[label] = {k: v[order] for k, v in samples.items()}
        self.data = self._concatenated()

    def _concatenated(self) -> Fields:
        sets = [self.classes[c] for c in sorted(self.classes)]
        if not sets or not sets[0]:
            return {}
        return {k: torch.cat([s[k] for s in sets], dim=1) for k in sets[0]}

    def select(self, keep: torch.Tensor) -> None:
        self.classes = {
            label: {k: v.index_select(0, keep.to(v.device)) for k, v in fields.items()}
            for label, fields in self.classes.items()
        }
        self.data = self._concatenated()


class ReservoirMemory(ExemplarMemory):
    """A fixed number of slots per member, filled by reservoir sampling over the samples
    offered to that member."""

    def __init__(self, random: MemberRandom, capacity: int) -> None:
        super().__init__(random)
        self.capacity = capacity
        self.seen = 0  # samples offered to each member so far
        self._slots: Fields = {}

    def __len__(self) -> int:
        return min(self.seen, self.capacity)

    def offer(self, samples: Fields) -> None:
        """Algorithm R for a batch (M, n, ...): sample j (the (seen+j)-th overall) fills the next
        free slot while the memory is not full, else replaces slot r ~ U{0..seen+j} if r <
        capacity. Where two samples of a batch pick one slot, the later wins, as in a
        sequential loop. No step waits for the device: rows that replace nothing are written
        to a scratch slot past the end (its content is never read)."""
        m, n = next(iter(samples.values())).shape[:2]
        if self.capacity == 0 or n == 0:
            self.seen += n
            return
        device = self.random.device
        index = torch.arange(self.seen, self.seen + n, device=device)
        draw = (self.random.rand(n) * (index + 1)).long()
        slot = torch.where(index < self.capacity, index, draw).clamp_max(self.capacity)  # (M, n)
        width = self.capacity + 1
        # keep the last row aiming at each slot: the largest row index per (member, slot)
        rows = torch.arange(n, device=device).expand(m, n)
        last = torch.full((m, width), -1, dtype=rows.dtype, device=device)
        last.scatter_reduce_(1, slot, rows, "amax")
        slot = torch.where(last.gather(1, slot) == rows, slot, self.capacity)  # else scratch
        flat_slot = (torch.arange(m, device=device).unsqueeze(1) * width + slot).flatten()
        if not self._slots:
            self._slots = {
                k: torch.zeros((m, width, *v.shape[2:]), dtype=v.dtype, device=v.device)
                for k, v in samples.items()
            }
        for k, v in samples.items():
            target = self._slots[k].view(m * width, *v.shape[2:])
            target.index_copy_(0, flat_slot, v.detach().reshape(m * n, *v.shape[2:]))
        self.seen += n
        size = len(self)
        self.data = {k: v[:, :size] for k, v in self._slots.items()}

    def _tables(self) -> Fields:
        """The slots themselves: ``data`` is a view of their first ``len(self)`` rows, and
        flattening that view would copy every member's whole memory at every draw."""
        return self._slots

    def select(self, keep: torch.Tensor) -> None:
        self._slots = {k: v.index_select(0, keep.to(v.device)) for k, v in self._slots.items()}
        size = len(self)
        self.data = {k: v[:, :size] for k, v in self._slots.items()}


def herding_order(features: torch.Tensor, m: int) -> torch.Tensor:
    """Indices (M, m) of ``m`` exemplars per member chosen by herding (Rebuffi et al. 2017,
    iCaRL, Algorithm 4) from each member's features (M, n, F) of the same n samples.

    With φ the L2-normalised features and μ their mean, exemplar k is
        p_k = argmin_x ‖ μ − (φ(x) + Σ_{j<k} φ(p_j)) / k ‖,
    each sample chosen at most once; the order is a priority order (best first).
    """
    phi = torch.nn.functional.normalize(features.float(), dim=-1)
    members, n = phi.shape[:2]
    mu = phi.mean(1, keepdim=True)
    running = torch.zeros_like(mu)
    chosen = torch.empty(members, min(m, n), dtype=torch.long, device=phi.device)
    available = torch.ones(members, n, dtype=torch.bool, device=phi.device)
    for k in range(1, min(m, n) + 1):
        dist = (mu - (running + phi) / k).norm(dim=-1)
        dist = dist.masked_fill(~available, float("inf"))
        best = dist.argmin(1)
        chosen[:, k - 1] = best
        available.scatter_(1, best.unsqueeze(1), False)
        running += phi.gather(1, best.view(-1, 1, 1).expand(-1, 1, phi.shape[2]))
    return chosen
