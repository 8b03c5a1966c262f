"""Population training: many configurations of one architecture trained as one batched computation.

    from cl_core.population import train_population
    population = train_population(configs)        # list[RunConfig]; dataset=... to share one
    for reports in population:                    # one round per task: {config index: TaskReport}
        ...
        population.stop(i)                        # early stopping: i trains no further task

Every run is a population (a single run is a population of one, ``cl_core.trainer.Run``); this
package groups configurations into populations. Which configs can share one:
``population_problem(cfg)`` (None = it has a population form), ``sharing_problem(configs)``
(None = they can be one), ``group_configs(configs)``.
"""

from cl_core.config import SHARED_FIELDS
from cl_core.population.compat import (
    group_configs,
    population_problem,
    sharing_key,
    sharing_problem,
)
from cl_core.population.trainer import Population, run_population, train_population

__all__ = [
    "SHARED_FIELDS",
    "Population",
    "group_configs",
    "population_problem",
    "run_population",
    "sharing_key",
    "sharing_problem",
    "train_population",
]
