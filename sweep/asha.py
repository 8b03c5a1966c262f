"""Asynchronous successive halving (ASHA), one instance per study: its own rungs, no Ray.

Li et al. 2020, "A System for Massively Parallel Hyperparameter Tuning" (MLSys), Algorithm 2 with
stopping instead of promotion, as in Ray Tune's AsyncHyperBandScheduler: rungs sit at
``grace * factor**k`` tasks learned (k = 0, 1, ... while below the task count); a trial reaching
a rung is stopped if its value is below the ``1 - 1/factor`` quantile of the values recorded at
that rung before it (the cut-off is taken before the value joins the rung). Values are kept sorted
per rung, so a decision costs O(log n) plus an insertion, not a pass over every trial.

Keeping this small class ours (instead of one Ray scheduler per cell) lets each cell have its own
brackets inside one Tune run, and lets a resumed sweep rebuild the rungs from the intermediate
values that the studies hold for the trials already ended (:mod:`sweep.resume`). Why not Ray's
scheduler: docs/design.md, "The ASHA rungs".
"""

from __future__ import annotations

import bisect
import math


class Asha:
    """Rungs of one study. ``mode`` "max" keeps high values; "min" keeps low ones."""

    def __init__(self, grace: int, factor: float, max_t: int, mode: str = "max") -> None:
        if grace < 1 or factor <= 1 or max_t <= grace:
            raise ValueError(f"need 1 <= grace < max_t and factor > 1, got {grace}, {factor}")
        self.factor = factor
        self.sign = 1.0 if mode == "max" else -1.0
        milestones: set[int] = set()
        k = 0
        while (milestone := math.ceil(grace * factor**k - 1e-9)) < max_t:
            milestones.add(milestone)
            k += 1
        self.milestones = sorted(milestones)
        self.rungs: dict[int, list[float]] = {m: [] for m in self.milestones}
        self.seen: dict[int, set[str]] = {m: set() for m in self.milestones}

    def cutoff(self, milestone: int) -> float | None:
        """The value a trial must reach at ``milestone`` not to be stopped (in "max" units).

        Linear interpolation between the two nearest order statistics, like numpy's default
        percentile, of the values recorded so far.
        """
        values = self.rungs[milestone]
        if not values:
            return None
        q = (1 - 1 / self.factor) * (len(values) - 1)
        lo = math.floor(q)
        hi = min(lo + 1, len(values) - 1)
        return values[lo] + (values[hi] - values[lo]) * (q - lo)

    def on_result(self, trial: str, tasks_learned: int, value: float | None) -> bool:
        """Record a report; True if the trial should stop here.

        A trial is judged once per rung: at the first report at or past the rung's milestone.
        A missing or non-finite value is never recorded and never stops a trial (a diverged trial
        ends by itself and is told to Optuna as failed).
        """
        stop = False
        for milestone in self.milestones:
            if tasks_learned < milestone or trial in self.seen[milestone]:
                continue
            self.seen[milestone].add(trial)
            if value is None or not math.isfinite(value):
                continue
            signed = self.sign * value
            cut = self.cutoff(milestone)
            if cut is not None and signed < cut:
                stop = True
            bisect.insort(self.rungs[milestone], signed)
        return stop

    def seed(self, trial: str, values: dict[int, float]) -> None:
        """Restore a finished trial's recorded values (``{tasks learned: value}``) on resume."""
        for milestone in self.milestones:
            at = [step for step in values if step >= milestone]
            if at and trial not in self.seen[milestone]:
                self.seen[milestone].add(trial)
                value = values[min(at)]
                if value is not None and math.isfinite(value):
                    bisect.insort(self.rungs[milestone], self.sign * value)
