"""Joint training: each task is learned on the data of all tasks so far (the upper bound)."""

from cl_core.methods.base import Method


class Joint(Method):
    """While learning task t, train on the union of tasks 0..t (each sample keeps its own task)."""

    name = "joint"
    task_free = False  # trains on whole tasks so far

    def training_tasks(self, task: int) -> list[int]:
        return list(range(task + 1))
