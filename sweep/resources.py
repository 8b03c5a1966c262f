"""What the machine or the cluster can give, checked against what each trial asks for.

A trial that asks for more CPUs or GPUs than any node has never starts: Ray keeps it pending and
the sweep hangs. On a local Ray that is known before Ray starts (a usage error, exit 2). A cluster
(``--address``) is asked once connected; an autoscaling cluster may still be adding the GPU node,
so the runner waits, saying so, up to ``--wait-for-resources`` seconds, and then refuses.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from cl_core.errors import ClsweepError
from sweep.space import SweepSpec


@dataclass(frozen=True)
class Capacity:
    """CPUs and GPUs available to trials (a machine, or a cluster's total)."""

    cpus: float
    gpus: float

    def trials_at_once(self, spec: SweepSpec) -> int:
        """How many trials of ``spec`` fit at once (at least 1), capped by max_concurrent."""
        fits = math.floor(self.cpus / spec.cpus + 1e-9)
        if spec.gpus > 0:
            fits = min(fits, math.floor(self.gpus / spec.gpus + 1e-9))
        if spec.max_concurrent:
            fits = min(fits, spec.max_concurrent)
        return max(fits, 1)


def local_cpus() -> int:
    """CPUs this process may use (its affinity mask, as in a container or under taskset)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def local_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def shortfall(spec: SweepSpec, capacity: Capacity, where: str) -> str | None:
    """Why one trial of ``spec`` cannot run on ``capacity``; None if it can."""
    if spec.gpus > 0 and capacity.gpus == 0:
        return (
            f"resources.gpus: each trial asks for {spec.gpus:g} GPU but {where} has none; "
            "set resources.gpus: 0 (--gpus-per-trial 0), or run where GPUs are"
        )
    if spec.gpus > capacity.gpus:
        return (
            f"resources.gpus: each trial asks for {spec.gpus:g} GPUs but {where} has "
            f"{capacity.gpus:g}; ask for at most {capacity.gpus:g}"
        )
    if spec.cpus > capacity.cpus:
        return (
            f"resources.cpus: each trial asks for {spec.cpus:g} CPUs but {where} has "
            f"{capacity.cpus:g}; ask for at most {capacity.cpus:g} (--cpus-per-trial)"
        )
    return None


def check_local(spec: SweepSpec, capacity: Capacity) -> None:
    """Refuse, before Ray starts, a trial this machine cannot run."""
    problem = shortfall(spec, capacity, "this machine")
    if problem:
        raise ClsweepError(f"{spec.file}: {problem}")


def wait_for_cluster(
    spec: SweepSpec, resources: Callable[[], dict[str, float]], timeout_s: float
) -> Capacity:
    """Poll the cluster until one trial fits; refuse after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    told = False
    while True:
        total = resources()
        capacity = Capacity(total.get("CPU", 0.0), total.get("GPU", 0.0))
        problem = shortfall(spec, capacity, "the cluster")
        if problem is None:
            return capacity
        if time.monotonic() >= deadline:
            raise ClsweepError(
                f"{spec.file}: {problem} (waited {timeout_s:g} s for nodes; "
                "--wait-for-resources S waits longer for an autoscaling cluster)"
            )
        if not told:
            print(
                f"waiting up to {timeout_s:g} s for the cluster to offer what a trial asks "
                f"({spec.cpus:g} CPU, {spec.gpus:g} GPU): {problem.split(';')[0]}",
                file=sys.stderr,
                flush=True,
            )
            told = True
        time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))
