"""The method interface: a few hooks into the trainer's loop; a method owns only its own state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from cl_core.params import HyperParam

if TYPE_CHECKING:
    from cl_core.context import TrainContext


class Method:
    """Plain training (no protection against forgetting); subclasses override hooks they need.

    The trainer calls, per task t: ``training_tasks(t)`` (whose data to train on), ``before_task``,
    then per batch ``penalty`` (added to the scenario's cross-entropy), ``after_step`` (after the
    optimizer step; gradients of that step are still on ``p.grad``), and finally ``after_task``.
    """

    name: ClassVar[str] = "finetune"
    hyperparams: ClassVar[dict[str, HyperParam]] = {}

    def __init__(self, params: dict[str, Any], ctx: TrainContext) -> None:
        self.params = params
        self.ctx = ctx

    def training_tasks(self, task: int) -> list[int]:
        """Tasks whose training data are used while learning ``task``."""
        return [task]

    def before_task(self, model: nn.Module, task: int) -> None:
        """Called before the first step on ``task``."""

    def frozen_epochs(self, task: int) -> int:
        """Leading epochs of ``task`` in which only the output layer is trained (LwF warm-up)."""
        return 0

    def penalty(
        self, model: nn.Module, x: torch.Tensor, logits: torch.Tensor, task: int
    ) -> torch.Tensor | None:
        """Extra loss for this batch (``None`` for none)."""
        return None

    def before_step(self, model: nn.Module, task: int) -> None:
        """Called after backward and before the optimizer step."""

    def after_step(self, model: nn.Module, task: int) -> None:
        """Called after each optimizer step."""

    def after_task(self, model: nn.Module, task: int) -> None:
        """Called once ``task`` is learned (consolidation: Fisher, importances, snapshots)."""
