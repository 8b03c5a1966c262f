"""A fully connected ReLU network (the MLP of REFERENCE R1 and R4)."""

from __future__ import annotations

import math

import torch
from torch import nn

from cl_core.models.base import ContinualModel


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
