"""Raw datasets, benchmarks (task sequences) and scenarios."""

from cl_core.data.benchmarks import Task, TaskSequence, build_tasks, load_benchmark_dataset
from cl_core.data.datasets import Dataset, default_data_root
from cl_core.data.scenarios import Scenario

load_dataset = load_benchmark_dataset  # the one entry point: load_dataset(cfg) -> Dataset

__all__ = [
    "Dataset",
    "Scenario",
    "Task",
    "TaskSequence",
    "build_tasks",
    "default_data_root",
    "load_dataset",
]
