"""The keys a space file may hold, their choices, and the limits of what one sweep can run.

Beyond the limits a sweep would not end in any useful time (or its numbers would not fit the
Parquet columns); the validator's messages say how to split it.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from cl_core.config import RunConfig, sweep_role
from contract import objective_metrics

SPACES_DIR = Path(__file__).resolve().parents[2] / "search_spaces"
"""The shipped spaces: ``--space NAME.yaml`` also finds a file here."""

TOP_KEYS = (
    "name",
    "description",
    "method",
    "train",
    "hyperparams",
    "search",
    "grid",
    "objective",
    "sampler",
    "budget",
    "early_stopping",
    "resources",
    "final",
    "selection",
    "loggers",
    "from_entry",
)
# RunConfig fields a space may not set under `train:`, and where it sets them instead: the grid,
# the method, the selection protocol and the machine decide them (their metadata's sweep role).
NOT_TRAIN_KEYS = {
    f.name: {
        "cell": f"grid.{f.name}",
        "method": "hyperparams" if f.name == "method_params" else "method",
        "selection": "selection",
        "machine": "resources.gpus" if f.name == "device" else "--data-root",
    }[sweep_role(f.name)]
    for f in dataclasses.fields(RunConfig)
    if sweep_role(f.name) != "train"
}
TRAIN_KEYS = tuple(f.name for f in dataclasses.fields(RunConfig) if sweep_role(f.name) == "train")
DISTRIBUTIONS = ("uniform", "loguniform", "int", "categorical")
DIST_KEYS = {
    "uniform": ("type", "low", "high", "step"),
    "loguniform": ("type", "low", "high"),
    "int": ("type", "low", "high", "step", "log"),
    "categorical": ("type", "choices"),
}
# Only metrics of validation data; searches never select on test (contract.metrics).
OBJECTIVE_METRICS = objective_metrics()
SAMPLERS = ("tpe", "random", "cmaes", "nsga2", "grid")
SCHEDULERS = ("asha",)
SECTION_KEYS = {
    "objective": ("metric", "mode"),
    "sampler": ("name", "seed"),
    "budget": ("trials", "time_limit_s"),
    "early_stopping": ("scheduler", "grace_tasks", "reduction_factor"),
    "resources": ("cpus", "gpus", "max_concurrent", "population", "max_failures"),
    "final": ("top_k", "seeds", "seed_base"),
    "grid": ("benchmark", "scenario", "n_tasks"),
    "selection": ("protocol", "tasks", "evaluate", "drop", "decay", "lr_grid", "max_attempts"),
}
LOGGERS = {
    "tensorboard": ("tensorboardX", ()),
    "csv": (None, ()),
    "json": (None, ()),
    "wandb": ("wandb", ("project", "group", "entity", "mode")),
    "mlflow": ("mlflow", ("experiment_name", "tracking_uri")),
}
"""Tune logger callbacks a space may switch on: name -> (package it needs, its settings)."""
DEFAULT_LOGGERS = ("tensorboard",)

MAX_FILE_BYTES = 1_000_000
MAX_NAME = 100
MAX_TRIALS = 100_000  # search trials per cell
MAX_TRIALS_TOTAL = 1_000_000  # all trials of the sweep
MAX_TASKS = 100
MAX_EPOCHS = 10_000
MAX_ITERATIONS = 100_000_000
MAX_FINAL_SEEDS = 100
MAX_SETTING_COMBINATIONS = 256
"""Combinations of the other searched train settings a searched setting's value is checked with."""
MAX_INT = 2**63 - 1  # Parquet int64 columns (seeds, batch sizes)
MAX_SAMPLER_SEED = 2**32 - 1  # numpy's RandomState, which Optuna's samplers use
MAX_TIME_LIMIT_S = 365 * 24 * 3600.0
MIN_CPUS = 0.01
MAX_POPULATION = 1024  # configurations one Ray trial trains together
MAX_FAILURES = 100  # restarts of one trial after its worker or node went away
DEFAULT_MAX_FAILURES = 2
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
