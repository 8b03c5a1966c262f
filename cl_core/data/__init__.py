"""Raw datasets, the benchmark registry (task sequences) and the scenarios."""

from cl_core.data.benchmarks import Task, TaskSequence
from cl_core.data.datasets import Dataset, default_data_root
from cl_core.data.registry import (
    BENCHMARKS,
    DATASETS,
    Benchmark,
    build_tasks,
    dataset_key,
    get_benchmark,
    load_dataset,
)
from cl_core.data.scenarios import SCENARIOS, Scenario

__all__ = [
    "BENCHMARKS",
    "DATASETS",
    "SCENARIOS",
    "Benchmark",
    "Dataset",
    "Scenario",
    "Task",
    "TaskSequence",
    "build_tasks",
    "dataset_key",
    "default_data_root",
    "get_benchmark",
    "load_dataset",
]
