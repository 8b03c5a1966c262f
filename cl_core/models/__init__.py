"""The model factory: ``cfg.model`` names a builder; adding an architecture is one entry here.

A builder takes ``(cfg, input_shape, out_units, hidden)`` and returns a ``ContinualModel``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from cl_core.errors import ClsweepError
from cl_core.models.base import ContinualModel
from cl_core.models.conv import ConvNet, build_conv
from cl_core.models.mlp import MLP, build_mlp

if TYPE_CHECKING:
    from cl_core.config import RunConfig

ModelBuilder = Callable[..., ContinualModel]

MODELS: dict[str, ModelBuilder] = {"mlp": build_mlp, "conv": build_conv}


def get_model_builder(name: str) -> ModelBuilder:
    """The builder registered as ``name``; a clear error for an unknown name."""
    try:
        return MODELS[name]
    except KeyError:
        raise ClsweepError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}") from None


@dataclass
class ModelFactory:
    """Builds the run's architecture on the run's device; a method may ask for variants of it
    (separate networks: narrower ``hidden``, fewer ``out_units``)."""

    cfg: RunConfig
    input_shape: tuple[int, int, int]
    out_units: int
    device: torch.device

    def __call__(
        self, hidden: tuple[int, ...] | None = None, out_units: int | None = None
    ) -> ContinualModel:
        return self._build(hidden, out_units).to(self.device)

    def n_params(self, hidden: tuple[int, ...] | None = None, out_units: int | None = None) -> int:
        """Trainable parameters of the variant ``self(hidden, out_units)`` builds; built on the
        CPU with the random state restored, so counting never changes the run's initialisation."""
        with torch.random.fork_rng(devices=[]):
            model = self._build(hidden, out_units)
        return sum(p.numel() for p in model.parameters() if p.requires_grad)

    def _build(self, hidden: tuple[int, ...] | None, out_units: int | None) -> ContinualModel:
        build = get_model_builder(self.cfg.model)
        return build(
            self.cfg,
            self.input_shape,
            self.out_units if out_units is None else out_units,
            self.cfg.hidden if hidden is None else hidden,
        )


__all__ = ["MLP", "ConvNet", "MODELS", "ContinualModel", "ModelFactory", "get_model_builder"]
