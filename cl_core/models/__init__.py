"""The model factory: ``cfg.model`` names a builder; adding an architecture is one entry here.

A builder takes ``(cfg, input_shape, out_units, hidden)`` and returns one member's template, a
``ContinualModel`` (an ordinary module: it fixes the architecture and initialises the parameters
as torch does); ``STACKED`` maps the template's class to its stacked form, which trains M members
as one computation (``cl_core.models.stacked``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import nn

from cl_core.errors import ClsweepError
from cl_core.models.base import ContinualModel
from cl_core.models.conv import ConvNet, StackedConvNet, build_conv
from cl_core.models.mlp import MLP, StackedMLP, build_mlp
from cl_core.models.stacked import StackedModel

if TYPE_CHECKING:
    from cl_core.config import RunConfig

ModelBuilder = Callable[..., ContinualModel]
T = TypeVar("T")

MODELS: dict[str, ModelBuilder] = {"mlp": build_mlp, "conv": build_conv}
STACKED: dict[type[nn.Module], type[StackedModel]] = {MLP: StackedMLP, ConvNet: StackedConvNet}


def get_model_builder(name: str) -> ModelBuilder:
    """The builder registered as ``name``; a clear error for an unknown name."""
    try:
        return MODELS[name]
    except KeyError:
        raise ClsweepError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}") from None


def stack(templates: list[nn.Module], device: torch.device) -> StackedModel:
    """The stacked form of M templates of one class (one member each)."""
    return STACKED[type(templates[0])](templates, device)


class MemberInit:
    """Each member's own CPU random state for building its modules, so that member m's
    initialisation is what a run of m alone draws (``torch.manual_seed(train_seed)``, then the
    same modules in the same order), whatever the other members are."""

    def __init__(self, seeds: list[int]) -> None:
        self.states = [torch.Generator().manual_seed(s).get_state() for s in seeds]

    def each(self, build: Callable[[], T]) -> list[T]:
        """``build()`` once per member, each under that member's random state."""
        out = []
        with torch.random.fork_rng(devices=[]):
            for m, state in enumerate(self.states):
                torch.set_rng_state(state)
                out.append(build())
                self.states[m] = torch.get_rng_state()
        return out

    def select(self, keep: list[int]) -> None:
        self.states = [self.states[i] for i in keep]


@dataclass
class ModelFactory:
    """Builds the run's architecture for every member on the run's device; a method may ask for
    variants of it (separate networks: narrower ``hidden``, fewer ``out_units``)."""

    cfgs: list[RunConfig]
    input_shape: tuple[int, int, int]
    out_units: int
    device: torch.device
    init: MemberInit = field(init=False)

    def __post_init__(self) -> None:
        self.init = MemberInit([c.train_seed for c in self.cfgs])

    @property
    def cfg(self) -> RunConfig:
        """The settings all members share (architecture, data)."""
        return self.cfgs[0]

    def __call__(
        self, hidden: tuple[int, ...] | None = None, out_units: int | None = None
    ) -> StackedModel:
        return stack(self.templates(hidden, out_units), self.device)

    def templates(
        self, hidden: tuple[int, ...] | None = None, out_units: int | None = None
    ) -> list[ContinualModel]:
        """One template per member, each initialised from that member's random state."""
        return self.init.each(lambda: self._build(hidden, out_units))

    def n_params(self, hidden: tuple[int, ...] | None = None, out_units: int | None = None) -> int:
        """Trainable parameters of one member of the variant ``self(hidden, out_units)``; built
        with the random state restored, so counting never changes the initialisation."""
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


__all__ = [
    "MLP",
    "MODELS",
    "STACKED",
    "ContinualModel",
    "ConvNet",
    "MemberInit",
    "ModelFactory",
    "StackedConvNet",
    "StackedMLP",
    "StackedModel",
    "get_model_builder",
    "stack",
]
