"""The dataset and benchmark registries: the one place that knows what a benchmark name means.

A dataset entry names its loader, the shape of one image and its class count. A benchmark entry
names its dataset and how its tasks are built (a task builder of ``cl_core.data.benchmarks``),
and checks the settings that depend on it (task counts, padding). Code elsewhere asks here; it
never parses a benchmark name. Adding a benchmark is one entry below.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cl_core.data import benchmarks as builders
from cl_core.data.cifar import load_cifar10, load_cifar100
from cl_core.data.datasets import (
    Dataset,
    default_data_root,
    load_digits,
    load_fashion,
    load_mnist,
    pad_to_32,
)
from cl_core.errors import ClsweepError

if TYPE_CHECKING:
    from cl_core.config import RunConfig
    from cl_core.data.benchmarks import SequenceSettings, TaskSequence


@dataclass(frozen=True)
class DatasetSpec:
    """A raw dataset: how to load it from a data root, its image shape and class count."""

    name: str
    load: Callable[[Path], Dataset]
    shape: tuple[int, int, int]  # (channels, height, width)
    n_classes: int
    needs_root: bool = True  # False: bundled with a package (no data root involved)


@dataclass(frozen=True)
class Benchmark:
    """A benchmark: a dataset and how its task sequence is built from it."""

    name: str
    dataset: str
    build_tasks: Callable[[SequenceSettings, Dataset], TaskSequence]
    split_by_class: bool  # True: tasks partition the classes; False: every task has all classes
    description: str

    @property
    def spec(self) -> DatasetSpec:
        return DATASETS[self.dataset]

    @property
    def n_classes(self) -> int:
        return self.spec.n_classes

    def input_shape(self, pad32: bool = False) -> tuple[int, int, int]:
        """(channels, height, width) of the inputs the model sees."""
        c, h, w = self.spec.shape
        return (c, h + 4, w + 4) if pad32 else (c, h, w)

    def valid_task_counts(self) -> list[int] | None:
        """Task counts a split benchmark accepts (divisors of its class count); None = any."""
        if not self.split_by_class:
            return None
        return [n for n in range(1, self.n_classes + 1) if self.n_classes % n == 0]

    def check(self, n_tasks: int, pad32: bool) -> None:
        """Refuse settings this benchmark cannot build, naming the fix."""
        valid = self.valid_task_counts()
        if valid is not None and n_tasks not in valid:
            raise ClsweepError(
                f"{self.name} splits {self.n_classes} classes evenly: n_tasks must be in "
                f"{valid}, got {n_tasks}"
            )
        if pad32 and self.spec.shape[1:] != (28, 28):
            raise ClsweepError(
                f"pad32 pads 28x28 images to 32x32; {self.name}'s images are "
                f"{self.spec.shape[1]}x{self.spec.shape[2]}: drop pad32"
            )


DATASETS: dict[str, DatasetSpec] = {
    d.name: d
    for d in (
        DatasetSpec("mnist", load_mnist, (1, 28, 28), 10),
        DatasetSpec("fashion", load_fashion, (1, 28, 28), 10),
        DatasetSpec("digits", load_digits, (1, 8, 8), 10, needs_root=False),
        DatasetSpec("cifar10", load_cifar10, (3, 32, 32), 10),
        DatasetSpec("cifar100", load_cifar100, (3, 32, 32), 100),
    )
}


def permuted(name: str, dataset: str, what: str) -> Benchmark:
    """Every task holds all classes of ``dataset`` under its own pixel permutation."""
    return Benchmark(name, dataset, builders.permuted_tasks, False, f"{what}, permuted per task")


def split(name: str, dataset: str, what: str) -> Benchmark:
    """The classes of ``dataset`` dealt out evenly to the tasks."""
    return Benchmark(name, dataset, builders.split_tasks, True, f"{what}, split by class")


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        permuted("permuted-mnist", "mnist", "MNIST"),
        split("split-mnist", "mnist", "MNIST"),
        permuted("permuted-fashion", "fashion", "Fashion-MNIST"),
        split("split-fashion", "fashion", "Fashion-MNIST"),
        permuted("permuted-digits", "digits", "scikit-learn 8x8 digits (offline)"),
        split("split-digits", "digits", "scikit-learn 8x8 digits (offline)"),
        split("split-cifar10", "cifar10", "CIFAR-10"),
        split("split-cifar100", "cifar100", "CIFAR-100"),
    )
}


def get_benchmark(name: str) -> Benchmark:
    """The benchmark registered as ``name``; a clear error for an unknown name."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ClsweepError(
            f"unknown benchmark {name!r}; choose one of: {', '.join(BENCHMARKS)}"
        ) from None


def dataset_key(cfg: RunConfig) -> str:
    """Configs with equal keys share one loaded dataset (the sweep loads each key once)."""
    return f"{get_benchmark(cfg.benchmark).dataset}:pad32={cfg.pad32}"


def load_dataset(cfg: RunConfig) -> Dataset:
    """The raw dataset ``cfg.benchmark`` is built from, cached per process."""
    benchmark = get_benchmark(cfg.benchmark)
    benchmark.check(cfg.n_tasks, cfg.pad32)
    root = ""
    if benchmark.spec.needs_root:
        root_path = Path(cfg.data_root).expanduser() if cfg.data_root else default_data_root()
        root = str(root_path.resolve())
    return _load_cached(benchmark.dataset, root, cfg.pad32)


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, root: str, pad32: bool) -> Dataset:
    data = DATASETS[name].load(Path(root) if root else Path(os.curdir))
    return pad_to_32(data) if pad32 else data


def build_tasks(cfg: RunConfig, dataset: Dataset) -> TaskSequence:
    """The task sequence of ``cfg.benchmark`` built from ``dataset`` with ``cfg.data_seed``: its
    window of tasks [task_start, task_stop) (all of them by default)."""
    benchmark = get_benchmark(cfg.benchmark)
    benchmark.check(cfg.n_tasks, cfg.pad32)
    return builders.task_window(benchmark.build_tasks(cfg, dataset), cfg.task_start, cfg.task_stop)
