"""The three scenarios (van de Ven & Tolias 2019; docs/references.md, the three-scenario
protocol), orthogonal to the benchmark.

Labels are first mapped to a global label ``g`` (see TaskSequence); with C classes per task and
T tasks a sample of task t has within-task label ``g - t*C``.

- task-IL: T*C output units; only task t's C units are active, in training and at test.
- domain-IL: C output units shared by all tasks; target = within-task label.
- class-IL: T*C output units; target = g. ``class_il_units="all"`` keeps every unit active from the
  start (the three-scenario code's default); ``"seen"`` activates the units of the tasks seen so
  far.
"""

from __future__ import annotations

import torch

from cl_core.config import CLASS_IL_UNITS, SCENARIOS  # noqa: F401 - their home is the config


class Scenario:
    """Maps logits and global labels to the active units and targets of a scenario."""

    def __init__(self, kind: str, n_tasks: int, classes_per_task: int, class_il_units: str = "all"):
        self.kind = kind
        self.n_tasks = n_tasks
        self.classes_per_task = classes_per_task
        self.class_il_units = class_il_units

    @property
    def out_units(self) -> int:
        """Size of the output layer."""
        return (
            self.classes_per_task if self.kind == "domain" else self.n_tasks * self.classes_per_task
        )

    def active(
        self, logits: torch.Tensor, task: int | torch.Tensor, seen_tasks: int
    ) -> torch.Tensor:
        """The logits (..., units) of the active units, for a batch of one ``task`` (an int) or
        per-sample tasks (shaped like ``logits`` without its last dimension).

        ``seen_tasks`` counts the tasks seen so far including the current one (class-IL "seen").
        """
        c = self.classes_per_task
        if self.kind == "task":
            if isinstance(task, int):
                return logits[..., task * c : (task + 1) * c]
            units = task.unsqueeze(-1) * c + torch.arange(c, device=logits.device)
            return logits.gather(-1, units)
        if self.kind == "class" and self.class_il_units == "seen":
            return logits[..., : seen_tasks * c]
        return logits

    def targets(self, global_labels: torch.Tensor, task: int | torch.Tensor) -> torch.Tensor:
        """Target index into ``active(...)`` for each sample."""
        if self.kind == "class":
            return global_labels
        return global_labels - task * self.classes_per_task
