"""CIFAR-10 and CIFAR-100 from torchvision's files under the data root (never substituted).

torchvision keeps the original archives' pickled batches: ``<root>/cifar-10-batches-py/``
(``data_batch_1`` .. ``data_batch_5``, ``test_batch``) and ``<root>/cifar-100-python/``
(``train``, ``test``). Each is a dict with ``data`` (N x 3072 uint8, channel-major: 1024 red,
1024 green, 1024 blue values of a 32x32 image) and ``labels`` (CIFAR-10) or ``fine_labels``
(CIFAR-100). The files were written by Python 2, so they are decoded as torchvision decodes them
(``encoding="latin1"``, which turns the keys into ``str``); ``bytes`` keys (a reader using
``encoding="bytes"``) are accepted too. Rows are kept as they are: flattened uint8 with shape
(3, 32, 32), the layout the conv net reshapes to.

Untrusted files: a data root is often shared, and ``pickle.load`` runs whatever callable a file
names. The batches are read by :class:`BatchUnpickler`, which resolves only the few globals a
CIFAR batch needs to rebuild its numpy array (:data:`ALLOWED_GLOBALS`); any other is refused
before it is imported or called, and the file is reported in one line.

Normalisation: per-channel mean/std as in the three-scenario code (REFERENCE R4, its
``data/available.py``); they are applied batch by batch in ``TrainContext.make_batch``.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from cl_core.data.datasets import Dataset, download_timeout
from cl_core.errors import ClsweepError

CIFAR_SHAPE = (3, 32, 32)


def _numpy_private(name: str) -> Any:
    """numpy's array-rebuilding helper ``name`` (``numpy._core`` from numpy 2, ``numpy.core``
    before), whatever module name the file recorded."""
    module, _, attr = name.rpartition(".")
    for prefix in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{prefix}.{module}"), attr)
        except (ImportError, AttributeError):
            continue
    raise ImportError(name)


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as Python 3 uses it to pickle ``bytes`` at protocol 2 (files
    re-written by Python 3), limited to the latin-1 codec it names there."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r} is not allowed")
    return text.encode("latin1")


ALLOWED_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    # the Python 2 originals: ndarray rebuilt by numpy.core.multiarray._reconstruct
    ("numpy.core.multiarray", "_reconstruct"): lambda: _numpy_private("multiarray._reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): lambda: _numpy_private("multiarray._reconstruct"),
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    # the same data re-pickled by numpy 2 at protocol 5, and bytes pickled by Python 3
    ("numpy.core.numeric", "_frombuffer"): lambda: _numpy_private("numeric._frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): lambda: _numpy_private("numeric._frombuffer"),
    ("_codecs", "encode"): lambda: _latin1_encode,
}
"""(module, name) -> the object a CIFAR batch may reference; nothing else is resolved."""


class BatchUnpickler(pickle.Unpickler):
    """An unpickler for CIFAR batches: plain containers, numbers and strings, and numpy arrays;
    every global outside :data:`ALLOWED_GLOBALS` is refused, and so are persistent ids."""

    def __init__(self, file: BinaryIO) -> None:
        super().__init__(file, encoding="latin1")

    def find_class(self, module: str, name: str) -> Any:
        resolve = ALLOWED_GLOBALS.get((module, name))
        if resolve is None:
            raise pickle.UnpicklingError(
                f"it names {module}.{name}, which no CIFAR batch holds; refused without running it"
            )
        return resolve()

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("it holds a persistent id, which no CIFAR batch holds")


def read_batch(path: Path) -> dict[str, Any]:
    """One pickled CIFAR batch as a dict with ``str`` keys, read by :class:`BatchUnpickler`."""
    with open(path, "rb") as f:
        entry = BatchUnpickler(f).load()
    if not isinstance(entry, dict):
        raise pickle.UnpicklingError(f"it holds a {type(entry).__name__}, not a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


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
            entry = read_batch(path)
            data = np.asarray(entry["data"], dtype=np.uint8)
            labels = np.asarray(entry[layout.label_key], dtype=np.int64)
        except OSError as exc:
            raise ClsweepError(f"{path} cannot be read ({exc.strerror or exc})") from None
        except Exception as exc:  # noqa: BLE001 - whatever a damaged or planted file raises
            detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
            raise ClsweepError(
                f"{path} is not a CIFAR batch ({detail}); replace it with torchvision's original "
                "file"
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
    """Let torchvision fetch and unpack the archive; offline this fails (fast: see
    :func:`download_timeout`), and the caller names the missing files."""
    from torchvision import datasets

    try:
        with download_timeout():
            getattr(datasets, layout.tv_class)(str(root), train=True, download=True)
    except Exception:  # noqa: BLE001 - any failure is reported as the missing-files error
        return
