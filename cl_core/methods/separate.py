"""Separate networks: one network per task, each trained only on its own task (task-IL).

The parameter-isolation baseline of the three-scenario protocol (van de Ven et al. 2022): with
the task identity known, nothing is shared, so nothing is forgotten; the price is a smaller
network per task.

Width rule (the total parameter budget stays that of the single network):
  every task's network has the run's architecture with each hidden width scaled to
  max(1, ⌊h_i · k / max(hidden)⌋) and only its task's C output units, where k is the largest
  integer in 1..max(hidden) with
      T · P_task(k) ≤ P_single,
  P = trainable parameters (frozen pre-trained conv layers are not counted: they are the same
  fixed weights in every network), P_single = the single network the other methods train (all
  output units). Split MNIST, MLP 784-400-400, 5 tasks of 2 classes: P_single = 478,410 and
  k = 106 (5 x 94,766 = 473,830). The three-scenario code fixes the width instead: 100 units on
  Split MNIST (5 x 88,802 = 444,010), 400 otherwise.

Every network outputs its task's C logits; ``forward`` routes each sample to its task's network
and returns logits over all T·C units with the task's slot filled (other units 0, never active
in task-IL). While task t trains, the optimizer holds network t's parameters alone (a fresh one
per task: the state a shared optimizer would have for parameters that never had a gradient), so
no gradient, optimizer state, weight decay or momentum can move another network: earlier
networks stay bit-identical. In a population each member has its T networks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cl_core.errors import ClsweepError
from cl_core.methods.base import Method
from cl_core.models import ModelFactory, StackedModel


class SeparateNetworks(Method):
    """One narrower network per task (parameter-matched), each sample routed by its task."""

    name = "separate"
    scenarios = ("task",)
    task_free = False  # samples are routed by their task, which a stream does not tell

    def build_model(self, factory: ModelFactory) -> StackedModel:
        n_tasks = self.ctx.seq.n_tasks
        per_task = self.ctx.scenario.classes_per_task
        hidden = per_task_hidden(factory, n_tasks, per_task)
        networks = [factory(hidden=hidden, out_units=per_task) for _ in range(n_tasks)]
        return TaskNetworks(networks, per_task)

    def before_task(self, model: TaskNetworks, task: int) -> None:
        model.train_only(task)

    def forward(self, model: TaskNetworks, x: torch.Tensor, task: int | torch.Tensor):
        return model.routed(x, task)


class TaskNetworks(StackedModel):
    """T stacked networks (each of all M members); the one being trained is ``store``'s."""

    def __init__(self, networks: list[StackedModel], classes_per_task: int) -> None:
        super().__init__(networks[0].store)
        self.networks = torch.nn.ModuleList(networks)
        self.classes_per_task = classes_per_task

    @property
    def n_params(self) -> int:
        return sum(net.n_params for net in self.networks)

    def train_only(self, task: int) -> None:
        """Network ``task`` is the one the optimizer updates from now on."""
        self.store = self.networks[task].store

    def zero_grad_(self) -> None:
        for net in self.networks:
            net.zero_grad_()

    def select(self, keep: torch.Tensor) -> None:
        current = [net.store for net in self.networks].index(self.store)
        for net in self.networks:
            net.select(keep)
        self.store = self.networks[current].store

    def routed(self, x: torch.Tensor, task: int | torch.Tensor) -> torch.Tensor:
        """Logits over all T·C units: each sample's task's network in that task's slot."""
        if isinstance(task, int):
            return self._slot(self.networks[task](x), task)
        out = None
        for t in task.unique().tolist():
            slot = self._slot(self.networks[t](x), t)
            where = (task == t).unsqueeze(-1)
            out = torch.where(where, slot, 0.0 if out is None else out)
        return out

    def forward(self, x, params=None, gates=None) -> torch.Tensor:
        raise TypeError("separate networks route each sample by its task: use routed(x, task)")

    def _slot(self, task_logits: torch.Tensor, task: int) -> torch.Tensor:
        """(M, N, C) logits of ``task``'s network placed in its units of all T·C (zeros
        elsewhere)."""
        c = self.classes_per_task
        right = len(self.networks) * c - (task + 1) * c
        return F.pad(task_logits, (task * c, right))


def scaled_hidden(hidden: tuple[int, ...], k: int) -> tuple[int, ...]:
    """``hidden`` with every width scaled by k / max(hidden), rounded down, at least 1."""
    top = max(hidden)
    return tuple(max(1, h * k // top) for h in hidden)


def per_task_hidden(factory: ModelFactory, n_tasks: int, classes_per_task: int) -> tuple[int, ...]:
    """The hidden widths of one task's network under the module's width rule."""
    hidden = tuple(factory.cfg.hidden)
    if not hidden:
        return hidden
    budget = factory.n_params()

    def fits(k: int) -> bool:
        return n_tasks * factory.n_params(scaled_hidden(hidden, k), classes_per_task) <= budget

    if not fits(1):
        raise ClsweepError(
            f"separate networks: {n_tasks} networks do not fit the single network's "
            f"{budget:,} trainable parameters even with 1 hidden unit; widen --hidden or, with "
            "the conv net, freeze pre-trained conv layers (--freeze-conv)"
        )
    low, high = 1, max(hidden)  # fits(low) holds; find the largest k that fits
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return scaled_hidden(hidden, low)
