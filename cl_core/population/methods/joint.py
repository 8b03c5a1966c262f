"""Joint training for a population: each task learned on the data of all tasks so far."""

from cl_core.population.methods.base import PopulationMethod


class PopulationJoint(PopulationMethod):
    name = "joint"

    def training_tasks(self, task: int) -> list[int]:
        return list(range(task + 1))
