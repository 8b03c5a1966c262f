"""Fixtures for analysis tests: real sweep results (Parquet written by ``python -m sweep``).

``fixtures/`` holds small sweep folders produced by actual runs (see fixtures/README.md for the
commands); tests read the raw files with pyarrow/pandas directly to check analysis independently.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

from analysis_fixtures import FIXTURES, SWEEPS  # noqa: E402

from analysis.load import Results, load_results  # noqa: E402


@pytest.fixture(scope="session")
def results() -> Results:
    """Every fixture sweep, loaded once."""
    return load_results(FIXTURES)


@pytest.fixture(scope="session")
def raw_trials() -> pd.DataFrame:
    """trials.parquet of every fixture sweep, read without analysis."""
    return pd.concat([pd.read_parquet(p / "trials.parquet") for p in SWEEPS], ignore_index=True)


@pytest.fixture(scope="session")
def raw_tasks() -> pd.DataFrame:
    """tasks.parquet of every fixture sweep, read without analysis."""
    return pd.concat([pd.read_parquet(p / "tasks.parquet") for p in SWEEPS], ignore_index=True)


@pytest.fixture
def sweep_copy(tmp_path: Path) -> Path:
    """A writable copy of the first fixture sweep, for tests that damage or filter it."""
    target = tmp_path / SWEEPS[0].name
    shutil.copytree(SWEEPS[0], target)
    return target
