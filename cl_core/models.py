"""Models: a fully connected ReLU network (the MLP of REFERENCE R1 and R4)."""

from __future__ import annotations

from torch import nn


class MLP(nn.Module):
    """in -> hidden... -> out with ReLU; ``head`` is the output layer (alone in LwF's warm-up)."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], out_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(width, out_dim)

    def forward(self, x):
        return self.head(self.trunk(x))
