"""Which trials of one unit may be trained together as a population, and how many at once.

With ``resources.population`` N > 1 a Ray trial trains up to N runs of one unit (a method in a
cell) with :mod:`cl_core.population`. Runs may share a population when their RunConfigs have a
population form (:func:`cl_core.population.population_problem`) and equal sharing keys
(:func:`cl_core.population.sharing_key`: benchmark, widths, data seed, ...). Final-phase plans
differ in their data seed, so the final phase trains one population per fresh seed.

How many: up to N, but no more than the unit's remaining plans spread over the free slots, so
that a small budget fills every CPU (16 trials on 2 slots: two populations of 8, not one of 16
and an idle core).
"""

from __future__ import annotations

import math

from cl_core.population.compat import population_problem, sharing_key, sharing_problem
from sweep.trial_config import TrialRun


def batch_size(population: int, plans_left: int, free_slots: int) -> int:
    """Members of the next population: at most ``population``, at least 1, and no more than an
    even share of the ``plans_left`` over the ``free_slots``."""
    share = math.ceil(max(plans_left, 1) / max(free_slots, 1))
    return max(1, min(population, share))


def solo_reason(run: TrialRun) -> str | None:
    """Why ``run`` has no population form and must run on its own, or None."""
    return run.problem or population_problem(run.config)


def key(run: TrialRun) -> tuple | None:
    """Runs with equal keys (and a population form) can share a population; None: never."""
    return None if run.problem else sharing_key(run.config)


def mismatch(first: TrialRun, run: TrialRun) -> str | None:
    """Why ``run`` cannot join a population started by ``first`` (None if it can)."""
    if run.problem:
        return run.problem
    problem = sharing_problem([first.config, run.config])
    return None if problem is None else problem.removeprefix("config 1: ")
