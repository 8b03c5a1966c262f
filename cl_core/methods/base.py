"""The method interface: a few named hooks into the trainer's loop; a method owns only its state.

The trainer owns the loop, the optimizer, batching and evaluation. Per run it calls
``build_model`` once; per task t it calls ``training_tasks(t)`` and ``before_task``; per training
batch ``loss`` (which calls ``forward``), backward, ``before_step``, the optimizer step and
``after_step``; after the task ``after_task``; and to evaluate, ``predict``. Plain training is
this class itself: every hook below is what fine-tuning does. ``docs/adding-a-method.md`` walks
through a real method.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from cl_core.data.scenarios import SCENARIOS
from cl_core.errors import ClsweepError
from cl_core.params import HyperParam

if TYPE_CHECKING:
    from cl_core.context import Batch, TrainContext
    from cl_core.models import ContinualModel


class Method:
    """Plain training (no protection against forgetting); subclasses override the hooks they need.

    Class attributes declare what the sweep layer validates before anything runs: ``name`` (the
    registry key), ``hyperparams`` (each with its default, range and help) and ``scenarios`` (the
    scenarios the method supports), and ``task_free`` (whether it can learn from a task-free
    stream, consolidating every few steps instead of at task ends).
    """

    name: ClassVar[str] = "finetune"
    hyperparams: ClassVar[dict[str, HyperParam]] = {}
    scenarios: ClassVar[tuple[str, ...]] = SCENARIOS
    task_free: ClassVar[bool] = True  # runs on a task-free stream (consolidating periodically)

    def __init__(self, params: dict[str, Any], ctx: TrainContext) -> None:
        self.params = params
        self.ctx = ctx

    @classmethod
    def check_scenario(cls, scenario: str) -> None:
        """Refuse a scenario the method does not support, naming those it does."""
        if scenario not in cls.scenarios:
            raise ClsweepError(
                f"method {cls.name!r} does not support the {scenario}-IL scenario; it supports: "
                f"{', '.join(cls.scenarios)}"
            )

    @classmethod
    def check_stream(cls, stream: str) -> None:
        """Refuse a task-free stream if the method needs task boundaries."""
        if stream != "none" and not cls.task_free:
            raise ClsweepError(
                f"method {cls.name!r} needs task boundaries and cannot learn from a task-free "
                f"stream; use stream none or another method"
            )

    # ---- the run -------------------------------------------------------------------------------
    def build_model(self, factory: Callable[..., ContinualModel]) -> nn.Module:
        """The network the trainer optimizes (separate networks build one per task)."""
        return factory()

    # ---- a task --------------------------------------------------------------------------------
    def training_tasks(self, task: int) -> list[int]:
        """Tasks whose training data are used while learning ``task`` (joint: all so far)."""
        return [task]

    def before_task(self, model: nn.Module, task: int) -> None:
        """Before the first step on ``task``: snapshot a model, draw gates, warm up a head."""

    def after_task(self, model: nn.Module, task: int) -> None:
        """Once ``task`` is learned: consolidate (Fisher, importances, exemplars)."""

    # ---- a step --------------------------------------------------------------------------------
    def forward(self, model: nn.Module, x: torch.Tensor, task: int | torch.Tensor) -> torch.Tensor:
        """Logits over all output units for inputs of ``task`` (an int, or one per sample)."""
        return model(x)

    def loss(self, model: nn.Module, batch: Batch, task: int) -> torch.Tensor:
        """The loss of one training step on ``batch`` of task ``task``: cross-entropy over the
        scenario's active units. Methods add a penalty or distillation term, or mix in replayed
        samples with their weight."""
        return self.ce_and_logits(model, batch)[0]

    def before_step(self, model: nn.Module, task: int) -> None:
        """After backward, before the optimizer step: read or change the gradients (A-GEM)."""

    def after_step(self, model: nn.Module, batch: Batch, task: int) -> None:
        """After the optimizer step (path integrals; storing the batch in a memory)."""

    # ---- evaluation ----------------------------------------------------------------------------
    def predict(self, model: nn.Module, x: torch.Tensor, task: int) -> torch.Tensor:
        """Scores over all output units at evaluation; the argmax over the active units is the
        prediction (iCaRL scores by distance to class means instead)."""
        return self.forward(model, x, task)

    # ---- shared by subclasses ------------------------------------------------------------------
    def ce_and_logits(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy of ``batch`` over the scenario's active units, and the logits."""
        logits = self.forward(model, batch.x, batch.task)
        return F.cross_entropy(self.ctx.active_logits(logits, batch.task), batch.target), logits
