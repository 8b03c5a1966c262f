"""Benchmarks from real data: permutations, splits, validation carving, missing data."""

import random

import pytest
import torch

from cl_core.config import RunConfig
from cl_core.data import build_tasks, load_dataset
from cl_core.data.benchmarks import permutations
from cl_core.errors import ClsweepError


def test_permutations_match_reference_r1():
    random.seed(2024)
    expected = []
    for _ in range(3):
        p = list(range(784))
        random.shuffle(p)
        expected.append(p)
    assert permutations(3, 784, 2024, first_unpermuted=False) == expected


def test_first_task_unpermuted_switch():
    perms = permutations(3, 16, 5, first_unpermuted=True)
    assert perms[0] is None and sorted(perms[1]) == list(range(16)) and perms[1] != perms[2]


def test_permuted_digits_tasks_share_images_with_disjoint_val():
    cfg = RunConfig(benchmark="permuted-digits", n_tasks=3, val_fraction=0.2, data_seed=3)
    seq = build_tasks(cfg, load_dataset(cfg))
    assert seq.n_tasks == 3 and seq.dataset.input_dim == 64
    for task in seq.tasks:
        train, val = set(task.train_idx.tolist()), set(task.val_idx.tolist())
        assert not train & val and len(train | val) == 1400
        assert len(val) == 280
        assert len(task.test_idx) == 397
        assert sorted(task.perm.tolist()) == list(range(64))


def test_split_digits_class_order_and_sizes():
    cfg = RunConfig(benchmark="split-digits", n_tasks=5, data_seed=0)
    data = load_dataset(cfg)
    seq = build_tasks(cfg, data)
    assert [t.classes for t in seq.tasks] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    for t in seq.tasks:
        labels = set(data.y_train[torch.cat([t.train_idx, t.val_idx])].tolist())
        assert labels == set(t.classes)
        assert set(data.y_test[t.test_idx].tolist()) == set(t.classes)
    shuffled = build_tasks(RunConfig(benchmark="split-digits", n_tasks=5, data_seed=7), data)
    assert sorted(c for t in shuffled.tasks for c in t.classes) == list(range(10))
    assert [t.classes for t in shuffled.tasks] != [t.classes for t in seq.tasks]


def test_split_needs_even_class_count():
    cfg = RunConfig(benchmark="split-digits", n_tasks=3)
    with pytest.raises(ClsweepError, match="n_tasks must be in"):
        build_tasks(cfg, load_dataset(cfg))


def test_mnist_from_shared_data(data_root):
    cfg = RunConfig(benchmark="split-mnist", n_tasks=5, data_root=str(data_root), val_fraction=0.1)
    data = load_dataset(cfg)
    assert data.x_train.shape == (60000, 784) and data.x_test.shape == (10000, 784)
    assert data.y_train[:5].tolist() == [5, 0, 4, 1, 9]  # the well-known first MNIST labels
    padded = load_dataset(
        RunConfig(benchmark="permuted-mnist", data_root=str(data_root), pad32=True)
    )
    assert padded.x_train.shape == (60000, 1024)
    assert padded.x_train.reshape(-1, 32, 32)[:, :2].sum() == 0  # zero border


def test_missing_dataset_names_folder_and_files(tmp_path):
    cfg = RunConfig(benchmark="permuted-fashion", data_root=str(tmp_path))
    with pytest.raises(ClsweepError) as err:
        load_dataset(cfg)
    msg = str(err.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in msg
    assert "train-images-idx3-ubyte.gz" in msg and "CLSWEEP_DATA" in msg


def test_digits_are_scikit_learns_read_without_importing_its_loader(monkeypatch):
    """The digits come from the CSV file scikit-learn ships, read directly (importing
    ``sklearn.datasets`` costs most of a second); the values are its loader's, and a
    scikit-learn without that file is read through its loader."""
    import subprocess
    import sys

    import numpy as np
    from sklearn.datasets import load_digits as sklearn_digits

    from cl_core.data import datasets

    pixels, labels = datasets._digits_arrays()
    bunch = sklearn_digits()
    assert np.array_equal(pixels, bunch.data) and np.array_equal(labels, bunch.target)
    assert pixels.shape == (1797, 64) and sorted(set(labels.tolist())) == list(range(10))
    code = (
        "import sys; from cl_core.data.datasets import load_digits; d = load_digits(); "
        "print(len(d.y_train), len(d.y_test), 'sklearn.datasets' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1400", "397", "False"]
    monkeypatch.setattr(datasets, "DIGITS_CSV", ("datasets", "data", "no-such-file.csv.gz"))
    fallback_pixels, fallback_labels = datasets._digits_arrays()
    assert np.array_equal(fallback_pixels, pixels) and np.array_equal(fallback_labels, labels)
