"""What a trial costs: time (wall, CPU, GPU share), the device's peak memory, and its size.

The cost columns of trials.parquet (schema 4, docs/results-schema.md) are the measures that
CLEVA-Compass (Mundt et al. 2022) and compute-budgeted continual learning (Prabhu et al. 2023) ask
a comparison to state: compute time, parameters, stored data, memory.

- :class:`CostMeter` clocks one Ray trial: CPU-seconds of its worker process (``time.process_time``:
  every thread of the process, user and system), GPU-seconds (its wall time times the share of a
  GPU Ray gave it: a trial on 0.25 GPU for an hour used 0.25 GPU-hours), and CUDA's peak of
  allocated memory (``torch.cuda.max_memory_allocated``; a CPU reports no per-trial peak, so it
  stays null there). Workers are reused across trials, so it counts from the trial's start; a
  trial restarted from its checkpoint after a lost worker or node goes on from what it had spent
  (the checkpoint keeps it: :mod:`sweep.trial_checkpoint`).
- :class:`PopulationMeter` splits a population's clock among its members: what each task cost is
  shared equally by the members that trained on it, so members' costs add up to the population's.
- :func:`footprint` counts trainable parameters and stored samples. They belong to the model and
  the method, which ``cl_core`` will expose; until then this one function computes them from the
  trial's configuration, and swapping it for ``cl_core``'s is the only change needed.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch

from cl_core.config import RunConfig
from cl_core.context import TrainContext
from cl_core.data import Dataset
from cl_core.data.registry import build_tasks
from cl_core.methods import get_method
from cl_core.models import ModelFactory
from cl_core.params import resolve

BUDGET, BUDGET_PER = "budget", "budget_per"
"""The memory hyperparameters a method declares (``cl_core.methods.memory``; FROMP: per class)."""


def footprint(cfg: RunConfig, dataset: Dataset) -> dict[str, int]:
    """``trainable_params`` and ``stored_samples`` of the run ``cfg`` describes.

    Parameters: ``n_params`` of the network the method builds (one member's trainable
    parameters: a generative method's VAE included, separate networks all counted, frozen conv
    layers not), built on the CPU with the random state restored, so counting never changes the
    trial's initialisation. Stored samples: the raw training samples the method may hold at the
    end of the run, its memory budget resolved: ``budget`` x the classes of the run (per class,
    the default and FROMP's) or ``budget`` (in total); 0 for a method without a memory.
    """
    cfg = dataclasses.replace(cfg, device="cpu")
    method_cls = get_method(cfg.method)
    params = resolve(method_cls.hyperparams, cfg.method_params, f"method {cfg.method!r}")
    with torch.random.fork_rng(devices=[]):
        ctx = TrainContext([cfg], build_tasks(cfg, dataset), torch.device("cpu"))
        factory = ModelFactory([cfg], ctx.input_shape, ctx.scenario.out_units, ctx.device)
        model = method_cls([params], ctx).build_model(factory)
    trainable = model.n_params
    stored = 0
    if BUDGET in params:
        classes = ctx.seq.n_tasks * ctx.seq.classes_per_task
        per_class = params.get(BUDGET_PER, "class") == "class"
        stored = int(params[BUDGET]) * (classes if per_class else 1)
    return {"trainable_params": int(trainable), "stored_samples": int(stored)}


def safe_footprint(cfg: RunConfig, dataset: Dataset) -> dict[str, int | None]:
    """:func:`footprint`, or nulls if it fails: a count must never fail the trial it describes."""
    try:
        return footprint(cfg, dataset)
    except Exception:  # noqa: BLE001 - the trial itself reports its own errors
        return {"trainable_params": None, "stored_samples": None}


def gpu_share() -> float:
    """The GPUs Ray assigned to this trial (0.25 for a quarter GPU); 0 outside a Ray worker."""
    import ray

    if not ray.is_initialized():
        return 0.0
    try:
        return float(ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0))
    except AssertionError:  # the driver (Ray asserts it is not a worker): no trial's share
        return 0.0


def _cuda_device(device: str) -> torch.device | None:
    """The CUDA device a run on ``device`` ("auto", "cuda", "cpu") uses, or None."""
    if device == "cpu" or not torch.cuda.is_available():
        return None
    return torch.device("cuda", torch.cuda.current_device())


class CostMeter:
    """The clock of one Ray trial (see the module docstring); :meth:`metrics` reads it."""

    def __init__(self, gpus: float | None = None) -> None:
        self.gpus = gpu_share() if gpus is None else gpus
        self.wall0 = time.perf_counter()
        self.cpu0 = time.process_time()
        self.cuda: torch.device | None = None
        self.sizes: dict[str, int | None] = {"trainable_params": None, "stored_samples": None}
        self.before = {"cpu_time_s": 0.0, "gpu_time_s": 0.0}  # spent before a restart

    def watch(self, cfg: RunConfig, dataset: Dataset | None) -> None:
        """Know the run: its CUDA device (peak memory from now on) and its size."""
        self.cuda = _cuda_device(cfg.device)
        if self.cuda is not None:
            torch.cuda.reset_peak_memory_stats(self.cuda)
        if dataset is not None:
            self.sizes = safe_footprint(cfg, dataset)

    def seconds(self) -> tuple[float, float]:
        """(wall, CPU) seconds since the trial started."""
        return time.perf_counter() - self.wall0, time.process_time() - self.cpu0

    def peak_memory(self) -> int | None:
        return None if self.cuda is None else int(torch.cuda.max_memory_allocated(self.cuda))

    def metrics(self) -> dict[str, Any]:
        return {**self.spent(), "peak_memory_bytes": self.peak_memory(), **self.sizes}

    def spent(self) -> dict[str, Any]:
        """CPU and GPU seconds so far (restarts included), also for the trial's checkpoint
        (:meth:`carry` takes them back after a restart)."""
        wall, cpu = self.seconds()
        return {
            "cpu_time_s": self.before["cpu_time_s"] + cpu,
            "gpu_time_s": self.before["gpu_time_s"] + wall * self.gpus,
        }

    def carry(self, spent: dict[str, Any]) -> None:
        """A restarted trial goes on counting from what it had spent before (:meth:`spent`)."""
        self.before = {key: float(spent.get(key, 0.0)) for key in self.before}


class PopulationMeter:
    """One population's clock, shared by its members (see the module docstring)."""

    def __init__(self, n_members: int, gpus: float | None = None) -> None:
        self.meter = CostMeter(gpus)
        self.cpu = [0.0] * n_members
        self.gpu = [0.0] * n_members
        self.sizes: list[dict[str, int | None]] = [dict(self.meter.sizes) for _ in range(n_members)]
        self.lap = (0.0, 0.0)

    def watch(self, cfgs: list[RunConfig], dataset: Dataset) -> None:
        self.meter.watch(cfgs[0], None)
        self.sizes = [safe_footprint(cfg, dataset) for cfg in cfgs]

    def share(self, members: list[int]) -> None:
        """Charge the time since the last call to ``members`` (those that trained on the task
        just reported), in equal parts."""
        wall, cpu = self.meter.seconds()
        d_wall, d_cpu = wall - self.lap[0], cpu - self.lap[1]
        self.lap = (wall, cpu)
        for i in members:
            self.cpu[i] += d_cpu / len(members)
            self.gpu[i] += d_wall * self.meter.gpus / len(members)

    def spent(self) -> dict[str, Any]:
        """Every member's CPU and GPU seconds so far, for the population's checkpoint."""
        return {"cpu_time_s": list(self.cpu), "gpu_time_s": list(self.gpu)}

    def carry(self, spent: dict[str, Any]) -> None:
        """A restarted population goes on counting from its members' shares before."""
        for key, shares in (("cpu_time_s", self.cpu), ("gpu_time_s", self.gpu)):
            before = spent.get(key) or []
            if len(before) == len(shares):
                shares[:] = [float(x) for x in before]

    def member(self, i: int) -> MemberCost:
        """Member ``i``'s view, for its tracker (:class:`sweep.trainable._Tracker`)."""
        return MemberCost(self, i)

    def metrics(self, i: int) -> dict[str, Any]:
        """Member ``i``'s share so far (the population's peak memory: it was one computation)."""
        return {
            "cpu_time_s": self.cpu[i],
            "gpu_time_s": self.gpu[i],
            "peak_memory_bytes": self.meter.peak_memory(),
            **self.sizes[i],
        }


@dataclasses.dataclass
class MemberCost:
    """One member's cost in a population: what a tracker reads instead of a :class:`CostMeter`."""

    population: PopulationMeter
    index: int

    def metrics(self) -> dict[str, Any]:
        return self.population.metrics(self.index)

    def spent(self) -> dict[str, Any]:
        return self.population.spent()

    def carry(self, spent: dict[str, Any]) -> None:
        self.population.carry(spent)
