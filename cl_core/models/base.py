"""What every model exposes, so that methods work with any architecture.

A model is a feature extractor followed by one linear output layer (``head``):
``forward(x) = head(features(x))``. Inputs arrive flattened, (N, C·H·W), as the data layer keeps
them; a model that needs images reshapes them itself. Methods use ``features`` (iCaRL's class
means), ``head`` (LwF's warm-up trains it alone) and ``gated_layers`` (XdG masks the outputs of
these modules, one unit per output feature) without knowing the architecture.
"""

from __future__ import annotations

import torch
from torch import nn


class ContinualModel(nn.Module):
    """Base of all models: subclasses set ``self.head`` and implement ``features``."""

    head: nn.Linear

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The input to the output layer, (N, feature_dim)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @property
    def feature_dim(self) -> int:
        return self.head.in_features

    def gated_layers(self) -> list[nn.Module]:
        """Modules whose (N, units) outputs are hidden units that may be gated per task (XdG)."""
        return []
