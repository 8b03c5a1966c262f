"""Raw datasets -> uint8 tensors: MNIST and Fashion-MNIST through torchvision, digits from sklearn
(CIFAR in ``cl_core.data.cifar``).

Images are kept as flattened uint8 (N, D) tensors with a ``scale`` to divide by, so a dataset is
small to ship through Ray's object store and is turned into floats batch by batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gzip
import importlib.util
import os
import shutil
import socket
import tempfile
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cl_core.errors import ClsweepError

TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashion": "FashionMNIST"}
RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# docs/references.md, Permuted digits: 1,400 train / 397 test, a fixed seeded split
DIGITS_TRAIN_SIZE = 1400
DIGITS_SPLIT_SEED = 0
DOWNLOAD_TIMEOUT_S = 30.0  # seconds a download may wait on one socket operation (connect, read)
_TIMEOUT_GUARD = threading.Lock()


@contextlib.contextmanager
def download_timeout(seconds: float | None = None) -> Iterator[None]:
    """Every socket opened inside gives up after ``seconds`` (default DOWNLOAD_TIMEOUT_S) without
    progress. torchvision's downloads (urllib) take no timeout of their own, so without this an
    unreachable or stalled server would hang the run. The setting is process-wide, hence one
    download at a time."""
    with _TIMEOUT_GUARD:
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S if seconds is None else seconds)
        try:
            yield
        finally:
            socket.setdefaulttimeout(previous)


@dataclass
class Dataset:
    """A labelled image dataset with its official (or fixed) train/test split."""

    name: str
    x_train: torch.Tensor  # uint8 (N, D)
    y_train: torch.Tensor  # int64 (N,)
    x_test: torch.Tensor
    y_test: torch.Tensor
    scale: float  # pixel value that maps to 1.0
    shape: tuple[int, int, int]  # (channels, height, width) of one flattened row
    n_classes: int = 10
    # per-channel normalisation after scaling, (x - mean) / std; None = none (MNIST, digits)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def input_dim(self) -> int:
        return self.x_train.shape[1]

    @property
    def side(self) -> int:
        """Height (= width) of the square images."""
        return self.shape[1]

    def to(self, device: torch.device | str) -> Dataset:
        """A copy on ``device``: the whole benchmark lives on the trial's device."""
        move = functools.partial(torch.Tensor.to, device=device)
        return dataclasses.replace(
            self,
            x_train=move(self.x_train),
            y_train=move(self.y_train),
            x_test=move(self.x_test),
            y_test=move(self.y_test),
        )


def default_data_root() -> Path:
    """``CLSWEEP_DATA`` if set, else a cache folder in the user's home (docs/cl_core-api.md)."""
    env = os.environ.get("CLSWEEP_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "clsweep" / "data"


def load_digits(root: Path | None = None) -> Dataset:
    """scikit-learn's bundled 8x8 digits with the fixed 1,400/397 split (no root)."""
    pixels, labels = _digits_arrays()
    x = torch.as_tensor(pixels, dtype=torch.uint8)  # values 0..16
    y = torch.as_tensor(labels, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(DIGITS_SPLIT_SEED))
    train, test = order[:DIGITS_TRAIN_SIZE], order[DIGITS_TRAIN_SIZE:]
    return Dataset("digits", x[train], y[train], x[test], y[test], scale=16.0, shape=(1, 8, 8))


DIGITS_CSV = ("datasets", "data", "digits.csv.gz")  # inside the sklearn package
DIGITS_ROWS, DIGITS_COLUMNS = 1797, 65  # 64 pixels, then the label


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The digits' pixels (1797, 64) and labels, read from the CSV file scikit-learn ships.

    Read directly, not through ``sklearn.datasets.load_digits``: importing that module (SciPy
    included) takes about 0.8 s, paid by every digits run and by a sweep's driver before it
    starts; the file itself reads in a few milliseconds, and the values are the same. A
    scikit-learn whose file is elsewhere or shaped otherwise is read through its own loader.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations)), *DIGITS_CSV)
        if path.is_file():
            with gzip.open(path, "rt") as handle:
                table = np.loadtxt(handle, delimiter=",")
            if table.shape == (DIGITS_ROWS, DIGITS_COLUMNS):
                return table[:, :-1], table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    return bunch.data, bunch.target


def load_mnist(root: Path) -> Dataset:
    """MNIST from ``root/MNIST/raw``."""
    return _load_torchvision("mnist", root)


def load_fashion(root: Path) -> Dataset:
    """Fashion-MNIST from ``root/FashionMNIST/raw``."""
    return _load_torchvision("fashion", root)


def _load_torchvision(name: str, root: Path) -> Dataset:
    """Read the IDX files (plain or .gz) under ``root/<Folder>/raw``; download only if missing.

    Reading the files ourselves leaves a read-only data root untouched (torchvision would unpack
    the archives next to themselves); torchvision is used only to fetch missing files online.
    """
    folder = TORCHVISION_FOLDERS[name]
    raw = root / folder / "raw"
    if _missing_raw_files(raw):
        _download(name, root)
    missing = _missing_raw_files(raw)
    if missing:
        expected = ", ".join(f"{f}.gz" for f in RAW_FILES)
        raise ClsweepError(
            f"dataset {name!r} not found: {raw} lacks {', '.join(missing)} and the download "
            f"failed; put {expected} into {raw}/ or point --data-root / CLSWEEP_DATA at a folder "
            f"holding {folder}/raw/"
        )
    x_train, y_train, x_test, y_test = (_read_idx(raw, f) for f in RAW_FILES)
    return Dataset(
        name,
        x_train.reshape(len(x_train), -1).contiguous(),
        y_train.to(torch.int64),
        x_test.reshape(len(x_test), -1).contiguous(),
        y_test.to(torch.int64),
        scale=255.0,
        shape=(1, x_train.shape[1], x_train.shape[2]),
    )


def _missing_raw_files(raw: Path) -> list[str]:
    return [f for f in RAW_FILES if not (raw / f).exists() and not (raw / f"{f}.gz").exists()]


def _download(name: str, root: Path) -> None:
    """Let torchvision fetch the archives into a temporary folder, then move the raw files under
    ``root``; offline this fails (fast: see :func:`download_timeout`), and the caller names the
    gap.

    torchvision creates its folders before it tries the network, so downloading in place would
    leave an empty ``root/<Folder>/raw`` behind a failed run (and create a mistyped data root).
    Here a failure leaves the file system as it was.
    """
    from torchvision import datasets

    folder = TORCHVISION_FOLDERS[name]
    cls = getattr(datasets, folder)
    with tempfile.TemporaryDirectory(prefix="clsweep-download-") as staging:
        try:
            with download_timeout():
                for train in (True, False):
                    cls(staging, train=train, download=True)
        except Exception:  # noqa: BLE001 - any failure is reported as the missing-files error
            return
        fetched = Path(staging) / folder / "raw"
        if _missing_raw_files(fetched):
            return
        raw = root / folder / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        for path in sorted(fetched.iterdir()):
            if not (raw / path.name).exists():
                shutil.move(str(path), raw / path.name)


def _read_idx(raw: Path, stem: str) -> torch.Tensor:
    """Parse an IDX file (LeCun's MNIST format: magic, big-endian int32 dims, uint8 data)."""
    path = raw / stem
    opener = open if path.exists() else gzip.open
    path = path if path.exists() else raw / f"{stem}.gz"
    damaged = f"{path} is truncated or corrupt; replace it with the original file"
    try:
        with opener(path, "rb") as f:
            data = f.read()
        n_dims = data[3]
        dims = np.frombuffer(data, dtype=">i4", count=n_dims, offset=4)
        values = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * n_dims)
    except (OSError, EOFError, zlib.error, IndexError, ValueError):
        # a cut .gz (EOFError), a damaged one (BadGzipFile, zlib.error), a header cut short
        raise ClsweepError(damaged) from None
    if values.size != int(np.prod(dims)):
        raise ClsweepError(damaged)
    return torch.from_numpy(values.reshape(*dims).copy())


def pad_to_32(data: Dataset) -> Dataset:
    """Zero-pad 28x28 images by 2 on each side (the three-scenario protocol's Permuted MNIST
    input is 32x32)."""

    def pad(x: torch.Tensor) -> torch.Tensor:
        images = x.reshape(-1, data.side, data.side)
        return torch.nn.functional.pad(images, (2, 2, 2, 2)).reshape(len(x), -1).contiguous()

    return dataclasses.replace(
        data,
        x_train=pad(data.x_train),
        x_test=pad(data.x_test),
        shape=(1, data.side + 4, data.side + 4),
    )
