"""Raw datasets -> uint8 tensors: MNIST and Fashion-MNIST through torchvision, digits from sklearn.

Images are kept as flattened uint8 (N, D) tensors with a ``scale`` to divide by, so a dataset is
small to ship through Ray's object store and is turned into floats batch by batch.
"""

from __future__ import annotations

import functools
import gzip
import os
import zlib
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
DIGITS_TRAIN_SIZE = 1400  # REFERENCE R6: 1,400 train / 397 test, a fixed seeded split
DIGITS_SPLIT_SEED = 0


@dataclass
class Dataset:
    """A labelled image dataset with its official (or fixed) train/test split."""

    name: str
    x_train: torch.Tensor  # uint8 (N, D)
    y_train: torch.Tensor  # int64 (N,)
    x_test: torch.Tensor
    y_test: torch.Tensor
    scale: float  # pixel value that maps to 1.0
    side: int  # images are side x side
    n_classes: int = 10

    @property
    def input_dim(self) -> int:
        return self.x_train.shape[1]

    def to(self, device: torch.device | str) -> Dataset:
        """A copy on ``device``: the whole benchmark lives on the trial's device."""
        move = functools.partial(torch.Tensor.to, device=device)
        return Dataset(
            self.name,
            move(self.x_train),
            move(self.y_train),
            move(self.x_test),
            move(self.y_test),
            self.scale,
            self.side,
            self.n_classes,
        )


def default_data_root() -> Path:
    """``CLSWEEP_DATA`` if set, else a cache folder in the user's home (DESIGN.md, Data)."""
    env = os.environ.get("CLSWEEP_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "clsweep" / "data"


def load_dataset(
    name: str, data_root: str | os.PathLike | None = None, pad32: bool = False
) -> Dataset:
    """Load ``name`` ("mnist", "fashion" or "digits"), cached per process."""
    root = Path(data_root).expanduser() if data_root else default_data_root()
    return _load_cached(name, str(root.resolve()) if name != "digits" else "", pad32)


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, root: str, pad32: bool) -> Dataset:
    if name == "digits":
        if pad32:
            raise ClsweepError("pad32 applies to 28x28 MNIST-style data, not to the 8x8 digits")
        return _load_digits()
    if name not in TORCHVISION_FOLDERS:
        raise ClsweepError(f"unknown dataset {name!r}; choose one of: mnist, fashion, digits")
    data = _load_torchvision(name, Path(root))
    return _pad_to_32(data) if pad32 else data


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.as_tensor(bunch.data, dtype=torch.uint8)  # values 0..16
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(DIGITS_SPLIT_SEED))
    train, test = order[:DIGITS_TRAIN_SIZE], order[DIGITS_TRAIN_SIZE:]
    return Dataset("digits", x[train], y[train], x[test], y[test], scale=16.0, side=8)


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
        side=x_train.shape[1],
    )


def _missing_raw_files(raw: Path) -> list[str]:
    return [f for f in RAW_FILES if not (raw / f).exists() and not (raw / f"{f}.gz").exists()]


def _download(name: str, root: Path) -> None:
    """Let torchvision fetch the archives; offline this fails, and the caller names the gap."""
    from torchvision import datasets

    cls = getattr(datasets, TORCHVISION_FOLDERS[name])
    try:
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception:  # noqa: BLE001 - any failure is reported as the missing-files error
        return


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


def _pad_to_32(data: Dataset) -> Dataset:
    """Zero-pad 28x28 images by 2 on each side (REFERENCE R4: Permuted MNIST input is 32x32)."""

    def pad(x: torch.Tensor) -> torch.Tensor:
        images = x.reshape(-1, data.side, data.side)
        return torch.nn.functional.pad(images, (2, 2, 2, 2)).reshape(len(x), -1).contiguous()

    return Dataset(
        data.name,
        pad(data.x_train),
        data.y_train,
        pad(data.x_test),
        data.y_test,
        data.scale,
        data.side + 4,
        data.n_classes,
    )
