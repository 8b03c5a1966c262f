"""CIFAR-10 and CIFAR-100 from torchvision's files under the data root (never substituted).

torchvision keeps the original archives' pickled batches: ``<root>/cifar-10-batches-py/``
(``data_batch_1`` .. ``data_batch_5``, ``test_batch``) and ``<root>/cifar-100-python/``
(``train``, ``test``). Each is a dict with ``data`` (N x 3072 uint8, channel-major: 1024 red,
1024 green, 1024 blue values of a 32x32 image) and ``labels`` (CIFAR-10) or ``fine_labels``
(CIFAR-100). The files were written by Python 2, so they are read as torchvision reads them
(``pickle.load(f, encoding="latin1")``, which turns the keys into ``str``); ``bytes`` keys (a
reader using ``encoding="bytes"``) are accepted too. Rows are kept as they are: flattened uint8
with shape (3, 32, 32), the layout the conv net reshapes to.

Normalisation: per-channel mean/std as in the three-scenario code (REFERENCE R4, its
``data/available.py``); they are applied batch by batch in ``TrainContext.make_batch``.
"""

from __future__ import annotations

import pickle
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cl_core.data.datasets import Dataset
from cl_core.errors import ClsweepError

CIFAR_SHAPE = (3, 32, 32)
DOWNLOAD_TIMEOUT_S = 30  # per socket operation, so an offline machine fails fast instead of hanging


@dataclass(frozen=True)
class CifarLayout:
    """Where torchvision keeps one CIFAR variant and what its files hold."""

    name: str
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_key: str
    n_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    tv_class: str  # the torchvision.datasets class that downloads it

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train, *self.test)


CIFAR10 = CifarLayout(
    "cifar10",
    "cifar-10-batches-py",
    tuple(f"data_batch_{i}" for i in range(1, 6)),
    ("test_batch",),
    "labels",
    10,
    (0.4914, 0.4822, 0.4465),
    (0.2470, 0.2435, 0.2616),
    "CIFAR10",
)
CIFAR100 = CifarLayout(
    "cifar100",
    "cifar-100-python",
    ("train",),
    ("test",),
    "fine_labels",
    100,
    (0.5071, 0.4865, 0.4409),
    (0.2673, 0.2564, 0.2761),
    "CIFAR100",
)


def load_cifar10(root: Path) -> Dataset:
    """CIFAR-10 (50,000 train / 10,000 test, 10 classes) from ``root/cifar-10-batches-py``."""
    return _load(CIFAR10, root)


def load_cifar100(root: Path) -> Dataset:
    """CIFAR-100 (50,000 train / 10,000 test, 100 fine classes) from ``root/cifar-100-python``."""
    return _load(CIFAR100, root)


def _load(layout: CifarLayout, root: Path) -> Dataset:
    folder = root / layout.folder
    if _missing(layout, folder):
        _download(layout, root)
    missing = _missing(layout, folder)
    if missing:
        raise ClsweepError(
            f"dataset {layout.name!r} not found: {folder} lacks {', '.join(missing)} and the "
            f"download failed; put torchvision's {layout.folder}/ ({', '.join(layout.files)}) "
            f"under the data root, or point --data-root / CLSWEEP_DATA at a folder holding it"
        )
    x_train, y_train = _read_batches(layout, folder, layout.train)
    x_test, y_test = _read_batches(layout, folder, layout.test)
    return Dataset(
        layout.name,
        x_train,
        y_train,
        x_test,
        y_test,
        scale=255.0,
        shape=CIFAR_SHAPE,
        n_classes=layout.n_classes,
        mean=layout.mean,
        std=layout.std,
    )


def _missing(layout: CifarLayout, folder: Path) -> list[str]:
    return [f for f in layout.files if not (folder / f).is_file()]


def _read_batches(
    layout: CifarLayout, folder: Path, names: tuple[str, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate the pickled batches ``names``: uint8 rows (N, 3072) and int64 labels."""
    xs, ys = [], []
    for name in names:
        path = folder / name
        try:
            with open(path, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            entry = {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}
            data = np.asarray(entry["data"], dtype=np.uint8)
            labels = np.asarray(entry[layout.label_key], dtype=np.int64)
        except (pickle.UnpicklingError, EOFError, KeyError, AttributeError, ValueError) as exc:
            raise ClsweepError(
                f"{path} is not a CIFAR batch ({type(exc).__name__}: {exc}); replace it with "
                f"torchvision's original file"
            ) from None
        if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
            raise ClsweepError(
                f"{path} holds data of shape {data.shape} with {len(labels)} labels, expected "
                f"(N, 3072) with N labels; replace it with torchvision's original file"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= layout.n_classes):
            raise ClsweepError(
                f"{path} has labels outside 0..{layout.n_classes - 1}; is it the right dataset?"
            )
        xs.append(torch.from_numpy(data.copy()))
        ys.append(torch.from_numpy(labels.copy()))
    return torch.cat(xs).contiguous(), torch.cat(ys)


def _download(layout: CifarLayout, root: Path) -> None:
    """Let torchvision fetch and unpack the archive; offline this fails (fast: every socket
    operation times out after DOWNLOAD_TIMEOUT_S), and the caller names the missing files."""
    from torchvision import datasets

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        getattr(datasets, layout.tv_class)(str(root), train=True, download=True)
    except Exception:  # noqa: BLE001 - any failure is reported as the missing-files error
        return
    finally:
        socket.setdefaulttimeout(previous)
