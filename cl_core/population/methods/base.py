"""The population form of a method: the single-run hooks, for all members at once.

A population method sees the stacked network (``theta``, ``grad``: (M, P)) and per-member
hyperparameters as (M, 1) tensors. Per task the trainer calls ``training_tasks`` and
``before_task``; per step ``extra_loss`` (differentiable terms such as a distillation), backward,
``before_step`` (``grad`` holds the task loss's gradient), ``penalty`` (a quadratic penalty adds
its closed-form gradient to ``grad`` and returns its value per member), the optimizer step and
``after_step``; after the task ``after_task``. ``select`` drops members (early stopping,
divergence). Plain training (fine-tuning) is this class itself.

Each form declares the hyperparameters it handles (``handles``: None = any value, else the
supported values); a hyperparameter it does not handle must keep its default, so an option added
to a method later runs per trial until its population form exists.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from cl_core.methods import get_method
from cl_core.population.context import PopulationContext, StackedBatch
from cl_core.population.network import StackedMLP


class PopulationMethod:
    """Fine-tuning for a population; subclasses override the hooks they need."""

    name: ClassVar[str] = "finetune"
    handles: ClassVar[dict[str, tuple[Any, ...] | None]] = {}

    def __init__(
        self, params: list[dict[str, Any]], pctx: PopulationContext, net: StackedMLP
    ) -> None:
        self.params = params
        self.pctx = pctx
        self.net = net

    # ---- what has a population form --------------------------------------------------------
    @classmethod
    def problem(cls, params: dict[str, Any]) -> str | None:
        """Why a member with method hyperparameters ``params`` has no population form, or None."""
        declared = get_method(cls.name).hyperparams
        for name, value in params.items():
            if name in cls.handles:
                allowed = cls.handles[name]
                if allowed is None or value in allowed:
                    continue
            elif value == declared[name].default:
                continue
            return f"{cls.name} {name}={value!r} has no population form"
        return None

    @classmethod
    def shared_settings(cls, params: dict[str, Any]) -> tuple:
        """Method settings all members of one population must share (they change shapes)."""
        return ()

    def column(self, name: str, convert=float) -> torch.Tensor:
        """Hyperparameter ``name`` of every member as a (M, 1) float32 tensor."""
        return self.pctx.per_member([convert(p[name]) for p in self.params])

    # ---- hooks ----------------------------------------------------------------------------------
    def training_tasks(self, task: int) -> list[int]:
        return [task]

    def before_task(self, task: int) -> None:
        """Before the first step on ``task``."""

    def extra_loss(
        self, batch: StackedBatch, logits: torch.Tensor, task: int
    ) -> torch.Tensor | None:
        """Differentiable per-member terms (M,) added to the cross-entropy."""
        return None

    def before_step(self, task: int) -> None:
        """After backward; ``net.grad`` holds the gradient of the task loss (no penalty)."""

    def penalty(self, task: int) -> torch.Tensor | None:
        """Add a penalty's gradient to ``net.grad``; return its value per member (M,)."""
        return None

    def after_step(self, batch: StackedBatch, task: int) -> None:
        """After the optimizer step."""

    def after_task(self, task: int) -> None:
        """Once ``task`` is learned."""

    # ---- members --------------------------------------------------------------------------------
    def state_tensors(self) -> list[str]:
        """Names of attributes holding (M, ...) tensors or lists of them, narrowed by ``select``."""
        return []

    def select(self, keep: torch.Tensor) -> None:
        """Keep the members at positions ``keep`` (the trainer narrows net and context)."""
        positions = keep.tolist()
        self.params = [self.params[i] for i in positions]
        for name in self.state_tensors():
            setattr(self, name, _narrow(getattr(self, name), keep))


def _narrow(value, keep: torch.Tensor):
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return value.index_select(0, keep.to(value.device))
    return type(value)(_narrow(v, keep) for v in value)
