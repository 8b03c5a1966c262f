"""Small setups for unit tests: real scikit-learn digits, and CIFAR files in torchvision's format
written by the test (real CIFAR is not on the test machines)."""

import math
import pickle
from pathlib import Path

import numpy as np
import torch

from cl_core.config import RunConfig
from cl_core.context import TrainContext
from cl_core.data import build_tasks, load_dataset
from cl_core.models import MLP, ContinualModel, ModelFactory


def digits_setup(**overrides) -> tuple[RunConfig, TrainContext, MLP]:
    """A validated digits config, its context on CPU and a seeded model."""
    values = dict(benchmark="permuted-digits", scenario="domain", n_tasks=3, hidden=(16,), epochs=1)
    values.update(overrides)
    cfg = RunConfig(**values).validated()
    ctx = TrainContext(cfg, build_tasks(cfg, load_dataset(cfg)), torch.device("cpu"))
    torch.manual_seed(0)
    return cfg, ctx, ModelFactory(cfg, ctx.input_shape, ctx.scenario.out_units, ctx.device)()


FLIP_SHARE = 0.015
"""Samples, as a share of a task's split, that two equivalent float32 computations may classify
differently: summation order differs between PyTorch's CPU kernel sets (``ATEN_CPU_CAPABILITY``
default, avx2, avx512) and thread counts, and training amplifies last-bit differences. Measured on
digits (EWC, SGD, lr 0.05): population vs single run apart by up to 2 of 140 validation and 4 of
397 test samples of a task under avx512 or two threads, identical under avx2 on one thread."""


def flip_tolerance(n: int) -> int:
    """The samples of a split of ``n`` that may flip between equivalent runs: 1.5 %, at least 3."""
    return max(3, math.ceil(FLIP_SHARE * n))


def split_sizes(cfg: RunConfig) -> dict[str, np.ndarray]:
    """Per task, the number of validation (``val``) and test (``test``) samples of ``cfg``'s run:
    what one sample is worth in its accuracies."""
    cfg = cfg.validated()
    tasks = build_tasks(cfg, load_dataset(cfg)).tasks
    return {
        "val": np.array([len(t.val_idx) for t in tasks]),
        "test": np.array([len(t.test_idx) for t in tasks]),
    }


def samples_apart(a: np.ndarray, b: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Per entry, how many samples two accuracy matrices (or rows; column j = task j, ``sizes[j]``
    its samples) are apart; NaN (a task not yet learned) counts as 0."""
    return np.rint(np.nan_to_num(np.abs(np.asarray(a) - np.asarray(b))) * sizes).astype(int)


PER_CLASS_TRAIN = 3  # images per class in each CIFAR file written


def write_cifar(root: Path, layout, seed: int = 0, bytes_keys: bool = False) -> dict[str, dict]:
    """Small files under ``root/<layout.folder>/`` in torchvision's layout: per file a pickled dict
    (protocol 2, as the Python 2 originals) with ``data`` (N, 3072) uint8 channel-major rows,
    ``labels`` / ``fine_labels`` (+ ``coarse_labels``), ``batch_label`` and ``filenames``.
    Returns what each file holds (str keys)."""
    rng = np.random.default_rng(seed)
    folder = root / layout.folder
    folder.mkdir(parents=True)
    written = {}
    for name in layout.files:
        labels = [c for c in range(layout.n_classes) for _ in range(PER_CLASS_TRAIN)]
        rng.shuffle(labels)
        labels = [int(y) for y in labels]
        entry = {
            "batch_label": f"batch {name}",
            layout.label_key: labels,
            "data": rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8),
            "filenames": [f"img_{i}.png" for i in range(len(labels))],
        }
        if layout.label_key == "fine_labels":
            entry["coarse_labels"] = [y // 5 for y in labels]
        if bytes_keys:
            entry = {k.encode(): v for k, v in entry.items()}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
        written[name] = {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}
    return written


def cifar_setup(root: Path, **overrides) -> tuple[RunConfig, TrainContext, ContinualModel]:
    """Split CIFAR-10 task-IL from small written files: a validated config, its CPU context and
    a seeded model (conv net unless ``model`` is given)."""
    from cl_core.data.cifar import CIFAR10

    if not (root / CIFAR10.folder).is_dir():
        write_cifar(root, CIFAR10)
    values = dict(
        benchmark="split-cifar10",
        scenario="task",
        n_tasks=5,
        model="conv",
        hidden=(16,),
        epochs=1,
        batch_size=16,
        data_root=str(root),
    )
    values.update(overrides)
    cfg = RunConfig(**values).validated()
    ctx = TrainContext(cfg, build_tasks(cfg, load_dataset(cfg)), torch.device("cpu"))
    torch.manual_seed(0)
    return cfg, ctx, ModelFactory(cfg, ctx.input_shape, ctx.scenario.out_units, ctx.device)()
