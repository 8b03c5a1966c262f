"""The method interface: a few named hooks into the trainer's loop; a method owns only its state.

A method is written once, for M ≥ 1 members trained together (a single run is a population of
one): every tensor it keeps or returns has the members first, and each member's hyperparameters
are a column ``self.column(name)`` (M,). Members of one run share every hyperparameter that is
not a float (a choice, a flag, a size: they change the code path or a shape; the population
groups configurations by them), ``self.shared(name)``.

The trainer owns the loop, the optimizer, batching and evaluation. Per run it calls
``build_model`` once; per task t it calls ``training_tasks(t)`` and ``before_task``; per training
batch ``loss`` (each member's loss, (M,), which calls ``forward``), backward, ``before_step``,
the optimizer step and ``after_step``; after the task ``after_task``; and to evaluate,
``predict`` (on inputs shared by all members). When members leave (early stopping, divergence)
it calls ``select``, which narrows the attributes named in ``member_state``. Plain training is
this class itself: every hook below is what fine-tuning does. ``docs/adding-a-method.md`` walks
through a real method.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch

from cl_core.data.scenarios import SCENARIOS
from cl_core.errors import ClsweepError
from cl_core.params import HyperParam

if TYPE_CHECKING:
    from cl_core.context import Batch, TrainContext
    from cl_core.models import ModelFactory, StackedModel


class Method:
    """Plain training (no protection against forgetting); subclasses override the hooks they need.

    Class attributes declare what the sweep layer validates before anything runs: ``name`` (the
    registry key), ``hyperparams`` (each with its default, range and help), ``scenarios`` (the
    scenarios the method supports), ``task_free`` (whether it can learn from a task-free
    stream, consolidating every few steps instead of at task ends) and ``member_state`` (the
    attributes holding per-member state: tensors with the members first, lists or dicts of them,
    or objects with a ``select(keep)`` method).
    """

    name: ClassVar[str] = "finetune"
    hyperparams: ClassVar[dict[str, HyperParam]] = {}
    scenarios: ClassVar[tuple[str, ...]] = SCENARIOS
    task_free: ClassVar[bool] = True  # runs on a task-free stream (consolidating periodically)
    member_state: ClassVar[tuple[str, ...]] = ()
    stability: ClassVar[tuple[str, ...]] = ()
    """The float hyperparameters that trade plasticity for stability (EWC's λ, SI's c, ...):
    what the per-task selection protocol decays (cl_core.per_task); empty: the method has none."""

    def __init__(self, params: list[dict[str, Any]], ctx: TrainContext) -> None:
        self.params = params  # one dict per member, defaults filled in and checked
        self.ctx = ctx
        self._columns: dict[str, torch.Tensor] = {}

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

    @classmethod
    def shared_settings(cls, params: dict[str, Any]) -> tuple:
        """The hyperparameters members of one run must share: all but the floats."""
        return tuple(
            (name, params[name]) for name, p in cls.hyperparams.items() if not p.per_member
        )

    # ---- hyperparameters ----------------------------------------------------------------------
    def shared(self, name: str) -> Any:
        """A hyperparameter every member shares (any kind but float)."""
        return self.params[0][name]

    def column(self, name: str) -> torch.Tensor:
        """A float hyperparameter of every member, (M,) float32 on the run's device."""
        if name not in self._columns:
            values = [float(p[name]) for p in self.params]
            self._columns[name] = self.ctx.per_member(values)
        return self._columns[name]

    def set_hyperparam(self, name: str, values: list[float]) -> None:
        """Give member i the value ``values[i]`` of float hyperparameter ``name`` from now on
        (the per-task selection protocol changes the stability knob between tasks). A method
        that derives state from it at a task's end recomputes that state here."""
        for params, value in zip(self.params, values, strict=True):
            params[name] = float(value)
        self._columns.pop(name, None)

    @property
    def size(self) -> int:
        """M, the number of members."""
        return len(self.params)

    # ---- the run -------------------------------------------------------------------------------
    def build_model(self, factory: ModelFactory) -> StackedModel:
        """The network the trainer optimizes (separate networks build one per task)."""
        return factory()

    # ---- a task --------------------------------------------------------------------------------
    def training_tasks(self, task: int) -> list[int]:
        """Tasks whose training data are used while learning ``task`` (joint: all so far)."""
        return [task]

    def before_task(self, model: StackedModel, task: int) -> None:
        """Before the first step on ``task``: snapshot a model, draw gates, warm up a head."""

    def after_task(self, model: StackedModel, task: int) -> None:
        """Once ``task`` is learned: consolidate (Fisher, importances, exemplars)."""

    # ---- a step --------------------------------------------------------------------------------
    def forward(
        self, model: StackedModel, x: torch.Tensor, task: int | torch.Tensor
    ) -> torch.Tensor:
        """Logits (M, N, units) over all output units for inputs of ``task`` (an int, or one per
        sample); ``x`` is (M, N, D) per member or (N, D) shared."""
        return model(x)

    def loss(self, model: StackedModel, batch: Batch, task: int) -> torch.Tensor:
        """Each member's loss (M,) of one training step on ``batch`` of task ``task``:
        cross-entropy over the scenario's active units. Methods add a penalty or distillation
        term, or mix in replayed samples with their weight."""
        return self.ce_and_logits(model, batch)[0]

    def before_step(self, model: StackedModel, task: int) -> None:
        """After backward, before the optimizer step: read or change ``model.grad`` (A-GEM)."""

    def after_step(self, model: StackedModel, batch: Batch, task: int) -> None:
        """After the optimizer step (path integrals; storing the batch in a memory)."""

    # ---- evaluation ----------------------------------------------------------------------------
    def predict(self, model: StackedModel, x: torch.Tensor, task: int) -> torch.Tensor:
        """Scores (M, N, units) for shared inputs ``x`` (N, D); the argmax over the active units
        is the prediction (iCaRL scores by distance to class means instead)."""
        return self.forward(model, x, task)

    # ---- members -------------------------------------------------------------------------------
    def select(self, keep: torch.Tensor) -> None:
        """Keep the members at positions ``keep`` (the trainer narrows model and context)."""
        self.params = [self.params[i] for i in keep.tolist()]
        self._columns = {}
        for name in self.member_state:
            setattr(self, name, narrow(getattr(self, name), keep))

    # ---- shared by subclasses ------------------------------------------------------------------
    def ce_and_logits(self, model: StackedModel, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Each member's mean cross-entropy (M,) of ``batch`` over the scenario's active units,
        and the logits."""
        logits = self.forward(model, batch.x, batch.task)
        return self.ctx.cross_entropy(logits, batch), logits


def narrow(value: Any, keep: torch.Tensor) -> Any:
    """``value`` with only the members at positions ``keep``: tensors (members first), lists,
    tuples and dicts of them, and objects with ``select``; None and other values unchanged."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return value.index_select(0, keep.to(value.device))
    if isinstance(value, dict):
        return {k: narrow(v, keep) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(narrow(v, keep) for v in value)
    if hasattr(value, "select"):
        value.select(keep)
        return value
    return value


def per_member(column: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """An (M,) column shaped (M, 1, ..., 1) to broadcast against ``like`` (M, ...)."""
    return column.view(-1, *([1] * (like.dim() - 1)))
