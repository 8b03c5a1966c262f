"""A fully connected ReLU network (the MLP of the classic Permuted MNIST protocol and of the
three-scenario protocol, docs/references.md): the one-member template and its stacked form."""

from __future__ import annotations

import math

import torch
from torch import nn

from cl_core.models.base import ContinualModel
from cl_core.models.stacked import (
    StackedModel,
    StackedParameters,
    linear,
    linear_shapes,
    relu_stack,
    template_tensors,
)

WB = ("weight", "bias")


class MLP(ContinualModel):
    """in -> hidden... -> out with ReLU; every hidden ReLU's output can be gated (XdG)."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], out_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(width, out_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def gated_layers(self) -> list[nn.Module]:
        return [m for m in self.trunk if isinstance(m, nn.ReLU)]


def build_mlp(
    cfg, input_shape: tuple[int, ...], out_units: int, hidden: tuple[int, ...]
) -> ContinualModel:
    """The factory entry for ``model: mlp``: flattened inputs, ``hidden`` widths."""
    return MLP(math.prod(input_shape), hidden, out_units)


class StackedMLP(StackedModel):
    """M members of ``MLP``: fully connected ReLU layers ``fc0..``, then ``head``."""

    def __init__(self, templates: list[MLP], device: torch.device) -> None:
        first = templates[0]
        linears = [m for m in first.trunk if isinstance(m, nn.Linear)]
        self.sizes = [first.head.in_features] if not linears else [linears[0].in_features]
        self.sizes += [lin.out_features for lin in linears]
        shapes = {
            **linear_shapes("fc", self.sizes),
            "head.weight": tuple(first.head.weight.shape),
            "head.bias": tuple(first.head.bias.shape),
        }
        store = StackedParameters(shapes, len(templates), device)
        rename = {f"trunk.{2 * k}.{p}": f"fc{k}.{p}" for k in range(len(linears)) for p in WB}
        rename.update({f"head.{p}": f"head.{p}" for p in WB})
        for m, template in enumerate(templates):
            store.load(m, template_tensors(template, rename))
        super().__init__(store)

    def features(self, x, params=None, gates=None) -> torch.Tensor:
        p = self.params() if params is None else params
        return relu_stack(x, p, "fc", len(self.sizes) - 1, gates)

    def gated_widths(self) -> list[int]:
        return self.sizes[1:]

    def linear_layers(self) -> list[str]:
        """Prefixes of the linear layers in order (per-sample Fisher by the outer product)."""
        return [f"fc{k}" for k in range(len(self.sizes) - 1)] + ["head"]

    def forward_recording(
        self, x: torch.Tensor, params
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Logits and, per linear layer (``linear_layers`` order), its (input, pre-activation
        output); the outputs carry a graph, so gradients with respect to them can be taken
        (per-sample Fisher by the outer-product identity)."""
        record = []
        h = x
        for k, name in enumerate(self.linear_layers()):
            z = linear(h, params[f"{name}.weight"], params[f"{name}.bias"])
            if k == 0:
                z.requires_grad_(True)
            record.append((h, z))
            h = torch.relu(z) if name != "head" else z
        return h, record
