"""Shared test settings: Ray stays on loopback, and the data root points at real MNIST files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def mnist_root() -> Path | None:
    """CLSWEEP_DATA if it holds MNIST, else ../shared/data beside the checkout, else None."""
    for root in (os.environ.get("CLSWEEP_DATA"), SHARED_DATA):
        if root and (Path(root) / "MNIST" / "raw").is_dir():
            return Path(root)
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = mnist_root()
    if root is None:
        pytest.skip("MNIST raw files not found: set CLSWEEP_DATA to a folder holding MNIST/raw/")
    return root


def pytest_configure(config):
    """Small models run fastest on one thread, and the suite shares two cores with Ray workers."""
    import torch

    torch.set_num_threads(1)
    # stacked models bind their grads as views of one (M, P) tensor on purpose
    # (cl_core/models/stacked.py); autograd only notes it cannot steal their buffers
    config.addinivalue_line(
        "filterwarnings", "ignore:grad and param do not obey the gradient layout contract"
    )


def pytest_report_header(config):
    """Which CPU kernels torch dispatches to (ATEN_CPU_CAPABILITY): population equivalence
    depends on it (tests/core/test_population.py)."""
    import torch

    return f"torch {torch.__version__}, CPU kernels: {torch.backends.cpu.get_cpu_capability()}"
