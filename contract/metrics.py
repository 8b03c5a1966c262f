"""The metric registry: every metric of a trial's accuracy matrix, its direction and when it exists.

The formulas live in ``cl_core.metrics`` (docs/references.md, Metrics); this registry states
what the rest of the project needs to know about them without importing the core: whether higher
is better, and whether the metric is defined after every task (so that a scheduler may compare
trials part-way) or only over the full task sequence. Columns in trials.parquet are
``<split>_<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One metric: ``direction`` is "max" or "min"; ``before_last_task`` says it is defined (and
    meaningful to compare) after each task learned, not only after the last one."""

    name: str
    direction: str
    before_last_task: bool
    description: str

    def column(self, split: str) -> str:
        """The trials.parquet column of this metric on ``split`` ("val" or "test")."""
        return f"{split}_{self.name}"

    def to_json(self) -> dict[str, object]:
        return {"direction": self.direction, "before_last_task": self.before_last_task}


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "avg_acc",
            "max",
            True,
            "average accuracy over the tasks learned so far (Lopez-Paz & Ranzato 2017)",
        ),
        Metric(
            "bwt",
            "max",
            False,
            "backward transfer (Lopez-Paz & Ranzato 2017, eq. 3); negative = forgetting",
        ),
        Metric("fwt", "max", False, "forward transfer (Lopez-Paz & Ranzato 2017, eq. 4)"),
        Metric(
            "forgetting",
            "min",
            False,
            "average forgetting (Chaudhry et al. 2018, eq. 4); lower is more stable",
        ),
        Metric(
            "plasticity",
            "max",
            False,
            "mean accuracy on each task just after learning it (learning accuracy)",
        ),
    )
}


def metric(column: str) -> Metric:
    """The metric of a column such as ``val_forgetting``; KeyError for an unknown one."""
    split, _, name = column.partition("_")
    if split not in ("val", "test") or name not in METRICS:
        raise KeyError(column)
    return METRICS[name]


def objective_metrics() -> dict[str, str]:
    """Columns a search may select on (validation only), each with its default direction."""
    return {m.column("val"): m.direction for m in METRICS.values()}
