"""Context-dependent gating, XdG (Masse, Grant & Freedman 2018, PNAS 115(44): E10467).

Each task t has a random, fixed binary gate m_{t,l} ∈ {0,1}^{n_l} over the n_l units of every
gated hidden layer l, and the layer's output becomes h_l ⊙ m_{t,l} (the paper's gating: a
gated unit's activity is set to zero). Exactly ⌊gating_prop · n_l⌋ units are silenced and the
other n_l − ⌊gating_prop · n_l⌋ kept, per task and per layer, drawn independently per task
(units are shared between tasks by chance, not by design). The gates are applied in training and
at evaluation; the task identity picks them, so XdG is a task-IL method (with the task-IL
multi-head output of the three-scenario protocol, docs/references.md).

Which layers: the model's ``gated_layers()``, i.e. the fully connected hidden layers, also for
the conv net (the three-scenario code gates ``fcE``'s layers only, never conv layers or the
output layer).

Default ``gating_prop`` = 0.9, the three-scenario code's value for Split MNIST task-IL
(``params/param_values.py``: 0.6 for Permuted MNIST, 0.85 for CIFAR-100; the presets set those).

Differences from the three-scenario code (2022 version, ``main.py`` and ``models/fc/layers.py``):
- it gates by multiplying x·Wᵀ before the bias is added (its "excitability buffer"), so a gated
  unit still outputs ReLU(b); here a gated unit is silent, as in the paper;
- it draws gates with ``np.random.choice`` from the global numpy generator; here they come from
  ``ctx.random("xdg")``: deterministic under ``train_seed``, without shifting the batch
  order; tasks in order, layers in order within a task (as there), ⌊prop · n⌋ units per draw
  (as ``int(prop * n)`` there, with a 1e-9 tolerance for float error such as 0.29 · 100): the
  units whose rank in a random permutation is below that count.
Members of a population differ in ``gating_prop``; each draws its own gates.
"""

from __future__ import annotations

import math

import torch

from cl_core.errors import ClsweepError
from cl_core.methods.base import Method
from cl_core.models import ModelFactory, StackedModel
from cl_core.params import HyperParam
from cl_core.random import MemberRandom


class XdG(Method):
    """Silence a random, fixed, task-specific subset of each hidden layer's units."""

    name = "xdg"
    scenarios = ("task",)
    task_free = False  # gates are chosen by the task, which a stream does not tell
    hyperparams = {
        p.name: p
        for p in (
            HyperParam(
                "gating_prop",
                "float",
                0.9,
                "share of each gated hidden layer's units silenced per task",
                low=0.0,
                high=1.0,
            ),
        )
    }
    member_state = ("gates",)

    def __init__(self, params, ctx) -> None:
        super().__init__(params, ctx)
        self.gates: list[torch.Tensor] = []  # per gated layer: (M, n_tasks, units) of 0.0 / 1.0

    def build_model(self, factory: ModelFactory) -> StackedModel:
        model = factory()
        widths = model.gated_widths()
        if not widths:
            raise ClsweepError(
                f"xdg gates hidden layers but the {self.ctx.cfg.model} model has none; "
                "give it hidden layers (--hidden 400,400)"
            )
        props = [p["gating_prop"] for p in self.params]
        self.gates = draw_gates(widths, self.ctx.seq.n_tasks, props, self.ctx.random("xdg"))
        return model

    def forward(
        self, model: StackedModel, x: torch.Tensor, task: int | torch.Tensor
    ) -> torch.Tensor:
        if isinstance(task, int):
            gates = [g[:, task].unsqueeze(1) for g in self.gates]  # (M, 1, units)
        else:  # one task per sample, (M, B)
            gates = [
                g.gather(1, task.unsqueeze(-1).expand(*task.shape, g.shape[2])) for g in self.gates
            ]
        return model(x, gates=gates)


def silenced_count(prop: float, units: int) -> int:
    """⌊prop · units⌋, the number of units a gate silences (tolerant of float error)."""
    return min(units, math.floor(prop * units + 1e-9))


def draw_gates(
    widths: list[int], n_tasks: int, props: list[float], random: MemberRandom
) -> list[torch.Tensor]:
    """Per layer an (M, n_tasks, width) tensor of 0.0 / 1.0: row t of member m silences
    ``silenced_count(props[m], width)`` units of task t, drawn without replacement; tasks
    outer, layers inner."""
    device = random.device
    gates = [torch.ones(random.size, n_tasks, w, device=device) for w in widths]
    for t in range(n_tasks):
        for gate, w in zip(gates, widths, strict=True):
            rank = torch.argsort(random.permutation(w), dim=1)  # each unit's place in the draw
            counts = torch.tensor([silenced_count(p, w) for p in props], device=device)
            gate[:, t] = (rank >= counts.unsqueeze(1)).float()
    return gates
