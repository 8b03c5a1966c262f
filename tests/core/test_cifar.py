"""CIFAR-10/100 from files written here in torchvision's format (no real CIFAR on this machine)."""

import numpy as np
import pytest
import torch
from helpers import PER_CLASS_TRAIN, write_cifar

from cl_core.config import RunConfig
from cl_core.context import TrainContext
from cl_core.data import BENCHMARKS, build_tasks, load_dataset
from cl_core.data import cifar as cifar_module
from cl_core.data.cifar import CIFAR10, CIFAR100
from cl_core.errors import ClsweepError
from cl_core.pretrain import main as pretrain_main
from cl_core.validation import validated


def _cfg(root, benchmark, n_tasks, **kw):
    return RunConfig(benchmark=benchmark, n_tasks=n_tasks, data_root=str(root), **kw)


def test_cifar10_loader_reads_values_and_labels_exactly(tmp_path):
    written = write_cifar(tmp_path, CIFAR10)
    data = load_dataset(_cfg(tmp_path, "split-cifar10", 5))
    train = [written[f"data_batch_{i}"] for i in range(1, 6)]
    assert data.shape == (3, 32, 32) and data.n_classes == 10 and data.scale == 255.0
    assert data.x_train.dtype == torch.uint8 and data.x_train.shape == (150, 3072)
    assert np.array_equal(data.x_train.numpy(), np.concatenate([b["data"] for b in train]))
    assert data.y_train.tolist() == [y for b in train for y in b["labels"]]
    assert np.array_equal(data.x_test.numpy(), written["test_batch"]["data"])
    assert data.y_test.tolist() == written["test_batch"]["labels"]


def test_our_files_read_the_same_through_torchvision(tmp_path, monkeypatch):
    """torchvision's own CIFAR10 reader (its MD5 check skipped: the files are ours) sees the same
    images (HWC there, channel-major rows here) and labels."""
    from torchvision.datasets import CIFAR10 as TorchvisionCIFAR10

    write_cifar(tmp_path, CIFAR10, seed=4)
    monkeypatch.setattr(TorchvisionCIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(TorchvisionCIFAR10, "_load_meta", lambda self: None)
    ours = load_dataset(_cfg(tmp_path, "split-cifar10", 5))
    for train, x, y in ((True, ours.x_train, ours.y_train), (False, ours.x_test, ours.y_test)):
        tv = TorchvisionCIFAR10(str(tmp_path), train=train, download=False)
        assert np.array_equal(x.reshape(-1, 3, 32, 32).permute(0, 2, 3, 1).numpy(), tv.data)
        assert y.tolist() == tv.targets


def test_cifar100_fine_labels_and_bytes_keys(tmp_path):
    written = write_cifar(tmp_path, CIFAR100, seed=1, bytes_keys=True)
    data = load_dataset(_cfg(tmp_path, "split-cifar100", 10))
    assert data.n_classes == 100 and data.x_train.shape == (300, 3072)
    assert np.array_equal(data.x_train.numpy(), written["train"]["data"])
    assert data.y_train.tolist() == written["train"]["fine_labels"]
    assert data.y_test.tolist() == written["test"]["fine_labels"]


def test_split_cifar_benchmarks_build_their_tasks(tmp_path):
    write_cifar(tmp_path / "a", CIFAR10)
    write_cifar(tmp_path / "b", CIFAR100)
    assert BENCHMARKS["split-cifar10"].input_shape() == (3, 32, 32)
    assert BENCHMARKS["split-cifar100"].n_classes == 100
    cfg10 = _cfg(tmp_path / "a", "split-cifar10", 5, val_fraction=0.0)
    seq = build_tasks(cfg10, load_dataset(cfg10))
    assert [t.classes for t in seq.tasks] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    for t in seq.tasks:
        assert set(seq.dataset.y_train[t.train_idx].tolist()) == set(t.classes)
        assert len(t.train_idx) == 2 * 5 * PER_CLASS_TRAIN  # 2 classes x 5 files x 3 images
        assert set(seq.dataset.y_test[t.test_idx].tolist()) == set(t.classes)
    cfg100 = _cfg(tmp_path / "b", "split-cifar100", 10, data_seed=3)
    seq = build_tasks(cfg100, load_dataset(cfg100))
    assert seq.n_tasks == 10 and all(len(t.classes) == 10 for t in seq.tasks)
    assert sorted(c for t in seq.tasks for c in t.classes) == list(range(100))
    assert [t.classes for t in seq.tasks][0] != tuple(range(10))  # seed 3 shuffles the classes


def test_batches_are_normalised_per_channel(tmp_path):
    written = write_cifar(tmp_path, CIFAR10)
    cfg = validated(_cfg(tmp_path, "split-cifar10", 5, val_fraction=0.0))
    ctx = TrainContext([cfg], build_tasks(cfg, load_dataset(cfg)), torch.device("cpu"))
    row = int(ctx.seq.tasks[1].train_idx[0])
    batch = ctx.make_batch(torch.tensor([[row]]), 1)
    raw = written["data_batch_1"]["data"][row].astype(np.float64).reshape(3, 1024) / 255.0
    mean = np.array(CIFAR10.mean)[:, None]
    std = np.array(CIFAR10.std)[:, None]
    expected = ((raw - mean) / std).reshape(-1)
    np.testing.assert_allclose(batch.x[0, 0].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_missing_cifar_names_folder_and_files(tmp_path, monkeypatch):
    # an online machine would download 170 MB here; the offline failure is what is tested
    monkeypatch.setattr(cifar_module, "_download", lambda layout, root: None)
    for benchmark, folder, files in (
        ("split-cifar10", "cifar-10-batches-py", ("data_batch_1", "data_batch_5", "test_batch")),
        ("split-cifar100", "cifar-100-python", ("train", "test")),
    ):
        with pytest.raises(ClsweepError) as err:
            load_dataset(_cfg(tmp_path, benchmark, 5))
        msg = str(err.value)
        assert "\n" not in msg and str(tmp_path / folder) in msg and "CLSWEEP_DATA" in msg
        assert all(f in msg for f in files)


def test_corrupt_cifar_file_is_one_line_error(tmp_path):
    write_cifar(tmp_path, CIFAR10)
    (tmp_path / CIFAR10.folder / "data_batch_3").write_bytes(b"\x80\x02garbage")
    with pytest.raises(ClsweepError, match="data_batch_3 is not a CIFAR batch") as err:
        load_dataset(_cfg(tmp_path, "split-cifar10", 5))
    assert "\n" not in str(err.value)


def test_pretrain_writes_conv_weights_a_run_loads(tmp_path, capsys):
    write_cifar(tmp_path, CIFAR10)
    out = tmp_path / "weights" / "conv.pt"
    argv = ["--data-root", str(tmp_path), "--out", str(out), "--epochs", "1", "--hidden", "16"]
    assert pretrain_main([*argv, "--batch-size", "50", "--device", "cpu"]) == 0
    assert "test acc" in capsys.readouterr().out
    saved = torch.load(out, weights_only=True)
    assert saved["0.weight"].shape == (16, 3, 3, 3) and "1.running_mean" in saved
    assert not torch.equal(saved["1.running_mean"], torch.zeros(16))  # trained, BN stats moved
    from cl_core.models import ModelFactory

    cfg = _cfg(tmp_path, "split-cifar10", 5, model="conv", conv_weights=str(out), freeze_conv=True)
    model = ModelFactory([validated(cfg)], (3, 32, 32), 10, torch.device("cpu"))()
    assert all(torch.equal(model.trunk.state_dict()[k], v) for k, v in saved.items())
    assert pretrain_main(["--benchmark", "permuted-mnist", "--out", str(out)]) == 2
