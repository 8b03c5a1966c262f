"""Context-dependent gating, XdG (Masse, Grant & Freedman 2018, PNAS 115(44): E10467).

Each task t has a random, fixed binary gate m_{t,l} ∈ {0,1}^{n_l} over the n_l units of every
gated hidden layer l, and the layer's output becomes h_l ⊙ m_{t,l} (the paper's gating: a
gated unit's activity is set to zero). Exactly ⌊gating_prop · n_l⌋ units are silenced and the
other n_l − ⌊gating_prop · n_l⌋ kept, per task and per layer, drawn independently per task
(units are shared between tasks by chance, not by design). The gates are applied in training and
at evaluation; the task identity picks them, so XdG is a task-IL method (with the task-IL
multi-head output of REFERENCE R4).

Which layers: the model's ``gated_layers()``, i.e. the fully connected hidden layers, also for
the conv net (the three-scenario code gates ``fcE``'s layers only, never conv layers or the
output layer).

Default ``gating_prop`` = 0.9, the three-scenario code's value for Split MNIST task-IL
(``params/param_values.py``: 0.6 for Permuted MNIST, 0.85 for CIFAR-100; the presets set those).

Differences from the three-scenario code (2022 version, ``main.py`` and ``models/fc/layers.py``):
- it gates by multiplying x·Wᵀ before the bias is added (its "excitability buffer"), so a gated
  unit still outputs ReLU(b); here a gated unit is silent, as in the paper;
- it draws gates with ``np.random.choice`` from the global numpy generator; here they come from
  ``ctx.new_generator("xdg")``: deterministic under ``train_seed``, without shifting the batch
  order; tasks in order, layers in order within a task (as there), ⌊prop · n⌋ units per draw
  (as ``int(prop * n)`` there, with a 1e-9 tolerance for float error such as 0.29 · 100).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from cl_core.errors import ClsweepError
from cl_core.methods.base import Method
from cl_core.params import HyperParam


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

    def __init__(self, params, ctx) -> None:
        super().__init__(params, ctx)
        self.gates: list[torch.Tensor] = []  # per gated layer: (n_tasks, units) of 0.0 / 1.0
        self._task: int | torch.Tensor | None = None  # the task whose gates apply right now

    def build_model(self, factory: Callable[..., nn.Module]) -> nn.Module:
        model = factory()
        layers = model.gated_layers()
        if not layers:
            raise ClsweepError(
                f"xdg gates hidden layers but the {self.ctx.cfg.model} model has none; "
                "give it hidden layers (--hidden 400,400)"
            )
        widths = gated_widths(model, layers, self.ctx.seq.dataset.input_dim, self.ctx.device)
        self.gates = draw_gates(
            widths,
            self.ctx.seq.n_tasks,
            self.params["gating_prop"],
            self.ctx.new_generator("xdg"),
        )
        for layer, gate in zip(layers, self.gates, strict=True):
            layer.register_forward_hook(self._gate_hook(gate))
        return model

    def _gate_hook(self, gate: torch.Tensor):
        def hook(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor | None:
            if self._task is None:  # a forward outside ``self.forward`` (e.g. the width probe)
                return None
            return output * gate[self._task]  # (units,) for one task, (N, units) per sample

        return hook

    def forward(self, model: nn.Module, x: torch.Tensor, task: int | torch.Tensor) -> torch.Tensor:
        self._task = task
        try:
            return model(x)
        finally:
            self._task = None


def gated_widths(
    model: nn.Module, layers: list[nn.Module], input_dim: int, device: torch.device
) -> list[int]:
    """Units of each layer in ``layers``, read off one forward pass of a zero input (eval mode,
    no gradients: batch norm statistics and the random streams are untouched)."""
    widths: dict[int, int] = {}

    def record(k: int):
        def hook(module, inputs, output: torch.Tensor) -> None:
            if output.dim() != 2:
                raise ClsweepError(
                    f"xdg gates (N, units) outputs, but gated layer {k} of the model outputs "
                    f"shape {tuple(output.shape)}"
                )
            widths[k] = output.shape[1]

        return hook

    handles = [layer.register_forward_hook(record(k)) for k, layer in enumerate(layers)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, input_dim, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [widths[k] for k in range(len(layers))]


def silenced_count(prop: float, units: int) -> int:
    """⌊prop · units⌋, the number of units a gate silences (tolerant of float error)."""
    return min(units, math.floor(prop * units + 1e-9))


def draw_gates(
    widths: list[int], n_tasks: int, prop: float, gen: torch.Generator
) -> list[torch.Tensor]:
    """Per layer a (n_tasks, width) tensor of 0.0 / 1.0: row t silences ``silenced_count``
    units of task t, drawn without replacement; tasks outer, layers inner."""
    gates = [torch.ones(n_tasks, w, device=gen.device) for w in widths]
    for t in range(n_tasks):
        for gate, w in zip(gates, widths, strict=True):
            order = torch.randperm(w, generator=gen, device=gen.device)
            gate[t, order[: silenced_count(prop, w)]] = 0.0
    return gates
