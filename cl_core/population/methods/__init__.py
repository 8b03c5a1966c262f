"""Population forms of methods: one file per method plus one line here. A method without an
entry runs per trial (see ``cl_core.population.compat``)."""

from __future__ import annotations

from cl_core.population.methods.base import PopulationMethod
from cl_core.population.methods.ewc import PopulationEWC
from cl_core.population.methods.joint import PopulationJoint
from cl_core.population.methods.lwf import PopulationLwF
from cl_core.population.methods.si import PopulationSI

POPULATION_METHODS: dict[str, type[PopulationMethod]] = {
    m.name: m
    for m in (PopulationMethod, PopulationJoint, PopulationEWC, PopulationSI, PopulationLwF)
}

__all__ = ["POPULATION_METHODS", "PopulationMethod"]
