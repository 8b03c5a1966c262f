"""Shared fixtures of the sweep tests: loopback Ray, one session per module, tiny spaces."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray per test module (starting one costs seconds), shut down afterwards."""
    import ray

    ray.init(
        address="local",  # a Ray of its own, never another one found running on this machine
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()
