"""Advice about a valid space: notes printed in the plan and at sweep start, never errors."""

from __future__ import annotations

from cl_core.methods import METHODS
from sweep.space.spec import SweepSpec


def scale_notes(spec: SweepSpec) -> list[str]:
    """Hints for a method hyperparameter whose natural scale is logarithmic (``HyperParam.log``)
    that the space searches on a linear one over two decades or more: almost every trial then
    lands in the top decade, and the small values the method is often best at are never tried.
    Not an error: a linear search can be what the user wants."""
    notes = []
    for param in spec.params:
        if not param.is_hyperparam or param.distribution != "uniform" or param.log:
            continue
        declared = [
            METHODS[m].hyperparams[param.name]
            for m in spec.methods
            if param.applies_to(m) and param.name in METHODS[m].hyperparams
        ]
        low, high = float(param.low), float(param.high)
        if not any(hp.log for hp in declared) or low < 0 or (low > 0 and high / low < 100):
            continue
        top = (high - max(low, high / 10)) / (high - low)
        notes.append(
            f"note: search.{param.name} is uniform over [{low:g}, {high:g}], so {top:.0%} of its "
            f"trials fall in the top decade [{high / 10:g}, {high:g}]; {param.name} is a log-scale "
            "parameter (python -m cl_core --list-methods): `type: loguniform` with low > 0 gives "
            "every decade the same share"
        )
    return notes
