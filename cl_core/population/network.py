"""M MLPs of one architecture as one computation: stacked parameters and batched matmuls.

All members' parameters live in one (M, P) tensor ``theta`` (member-major, each member's
parameters flattened in ``model.parameters()`` order), so that optimizers and penalties run as a
few elementwise ops over the whole population. Each layer's weight (M, out, in) and bias (M, out)
are views of ``theta``; they are the autograd leaves, and their ``.grad`` are views of one (M, P)
``grad`` tensor that backward accumulates into. A linear layer of all members is one
``torch.baddbmm`` (measured faster than ``torch.func.vmap`` over ``functional_call``:
``benchmarks/population_speed.py --compare-backends``).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from cl_core.models.mlp import MLP

# Our grads are strided views of one (M, P) tensor on purpose (see module docstring): autograd
# accumulates into them in place and only warns that it cannot steal its buffer instead.
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")

Layer = tuple[torch.Tensor, torch.Tensor]  # (weight (M, out, in), bias (M, out))


class StackedMLP:
    """The stacked form of ``cl_core.models.MLP``: ReLU after every layer but the head."""

    def __init__(self, models: list[nn.Module]) -> None:
        first = models[0]
        if not all(isinstance(m, MLP) for m in models):
            raise TypeError("StackedMLP stacks cl_core.models.MLP instances only")
        linears = [m for m in first.trunk if isinstance(m, nn.Linear)] + [first.head]
        self.shapes = [(lin.out_features, lin.in_features) for lin in linears]
        self.sizes = [o * i + o for o, i in self.shapes]
        with torch.no_grad():
            self.theta = torch.stack(
                [torch.cat([p.reshape(-1) for p in m.parameters()]) for m in models]
            ).contiguous()
        self.grad = torch.zeros_like(self.theta)
        self._bind()

    @property
    def size(self) -> int:
        return self.theta.shape[0]

    def layers(self, theta: torch.Tensor) -> list[Layer]:
        """(weight, bias) views of a (M, P) parameter tensor, layer by layer."""
        out, offset = [], 0
        m = theta.shape[0]
        for (o, i), n in zip(self.shapes, self.sizes, strict=True):
            w = theta[:, offset : offset + o * i].view(m, o, i)
            b = theta[:, offset + o * i : offset + n]
            out.append((w, b))
            offset += n
        return out

    @property
    def head_columns(self) -> slice:
        """Columns of ``theta`` holding the output layer (weight, then bias)."""
        return slice(sum(self.sizes[:-1]), sum(self.sizes))

    def param_slices(self) -> list[slice]:
        """Column ranges of ``theta`` holding each parameter (weight, bias, weight, ...)."""
        out, offset = [], 0
        for o, i in self.shapes:
            out += [slice(offset, offset + o * i), slice(offset + o * i, offset + o * i + o)]
            offset += o * i + o
        return out

    def _bind(self) -> None:
        """Make the per-layer views of ``theta`` the autograd leaves, with grads in ``grad``."""
        self.trainable = self.layers(self.theta)
        for (w, b), (gw, gb) in zip(self.trainable, self.layers(self.grad), strict=True):
            w.requires_grad_(True)
            b.requires_grad_(True)
            w.grad, b.grad = gw, gb

    def select(self, keep: torch.Tensor) -> None:
        """Keep only the members at positions ``keep`` (a long tensor), dropping the others."""
        self.theta = self.theta.index_select(0, keep)
        self.grad = torch.zeros_like(self.theta)
        self._bind()

    def forward(self, x: torch.Tensor, layers: list[Layer] | None = None) -> torch.Tensor:
        """Logits (M, N, out) of inputs ``x``: (M, N, in) per member, or (N, in) shared by all."""
        layers = self.trainable if layers is None else layers
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(layers[0][0].shape[0], *x.shape)
        h = x
        last = len(layers) - 1
        for k, (w, b) in enumerate(layers):
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            if k < last:
                h = torch.relu(h)
        return h

    def features(self, x: torch.Tensor, layers: list[Layer] | None = None) -> torch.Tensor:
        """The output layer's inputs (M, N, feature_dim), as ``ContinualModel.features``."""
        layers = self.trainable if layers is None else layers
        h = x
        for w, b in layers[:-1]:
            h = torch.relu(torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2)))
        return h

    def forward_recording(
        self, x: torch.Tensor, layers: list[Layer]
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Logits and, per layer, (input, pre-activation output); the outputs carry a graph so
        that gradients with respect to them can be taken (per-sample Fisher)."""
        h = x
        record = []
        last = len(layers) - 1
        for k, (w, b) in enumerate(layers):
            z = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            if k == 0:
                z.requires_grad_(True)
            record.append((h, z))
            h = torch.relu(z) if k < last else z
        return h, record
