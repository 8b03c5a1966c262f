"""Schema of a sweep folder (docs/results-schema.md): version, files, columns, statuses.

``<out>/<sweep>/`` holds ``trials.parquet`` and ``tasks.parquet`` (each a folder of Parquet parts,
read as one table: :mod:`contract.tables`), ``sweep.json`` and ``study.db`` (Optuna, SQLite).
Sweeps with task-free stream runs also hold ``curves.parquet`` (accuracy over time, same layout).
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from cl_core.config import settings_columns
from contract.metrics import METRICS

SCHEMA_VERSION = 5
"""2: tables are folders of parts; trial ids are the sweep's own (study, number), not Ray's.
3: trials.parquet has a ``population`` column (the Ray trial a configuration was trained in).
4: trials.parquet has the cost columns (:data:`COST`).
5: trials.parquet has the task window (``task_start``, ``task_stop``: the selection protocols),
``tf32`` and ``per_task_choices``."""
READABLE_VERSIONS = (1, 2, 3, 4, 5)
"""Schemas 1 (single-file tables) and 2 have the same columns but ``population``, 3 all but the
cost columns, 4 all but the task window; analysis reads all five (a column a version lacks
reads as missing; a missing task window is the whole sequence)."""

TRIALS_FILE = "trials.parquet"
TASKS_FILE = "tasks.parquet"
CURVES_FILE = "curves.parquet"
"""Task-free stream runs only (cl_core/stream.py); a sweep without them has no curves table."""
META_FILE = "sweep.json"
STUDY_FILE = "study.db"
LOCK_FILE = ".sweep.lock"

PHASES = ("search", "final")
SPLITS = ("val", "test")
COMPLETED, STOPPED, DIVERGED, ERROR = "completed", "stopped", "diverged", "error"
STATUSES = (COMPLETED, STOPPED, DIVERGED, ERROR)
"""completed: learned every task; stopped: ended early by the scheduler or the time limit;
diverged: NaN/inf loss; error: raised (message in ``message``)."""
FAILED_STATUSES = (DIVERGED, ERROR)

NODE_LOST, NODE_PREEMPTED, WORKER_DIED = "node lost", "node preempted", "worker died"
"""Causes of a trial's failure outside its run (its worker or node went away), with which the
``message`` of an ``error`` row begins once the trial's retries are spent."""
RERUN_CAUSES = (NODE_LOST, NODE_PREEMPTED)
"""Error rows with these causes are run again by ``--resume`` (:func:`lost_to_node`)."""


def tasks_in_run(row: dict) -> int:
    """How many tasks a trials row's run learns: its task window (schema 5), else all of
    ``n_tasks``; ``tasks_completed`` counts up to it."""
    start = row.get("task_start") or 0
    stop = row.get("task_stop")
    stop = row["n_tasks"] if stop is None or stop != stop else int(stop)  # (NaN: pandas' null)
    return stop - int(start)


def lost_to_node(row: dict) -> bool:
    """Whether a trials row is an error caused by a lost or preempted node (not by the run)."""
    message = row.get("message") or ""
    return row.get("status") == ERROR and message.startswith(RERUN_CAUSES)


HYPERPARAM_TYPES = {
    "float": pa.float64(),
    "int": pa.int64(),
    "bool": pa.bool_(),
    "choice": pa.string(),
}
"""Arrow type of an ``hp_<name>`` column by the kind the method declares."""

ARROW_TYPES = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
}
SETTINGS = tuple((name, ARROW_TYPES[kind]) for name, kind in settings_columns())
"""Trainer settings recorded per trial: every RunConfig field that can change results, as its
metadata declares (cl_core.config.setting; the config module imports neither torch nor Ray)."""

IDENTITY = (
    ("schema_version", pa.int64()),
    ("sweep", pa.string()),
    ("trial_id", pa.string()),
    ("phase", pa.string()),
    ("cell", pa.string()),
    ("config_id", pa.string()),
    ("final_rank", pa.int64()),
    ("method", pa.string()),
    ("benchmark", pa.string()),
    ("scenario", pa.string()),
    ("n_tasks", pa.int64()),
)
OUTCOME = (
    ("status", pa.string()),
    ("message", pa.string()),
    ("tasks_completed", pa.int64()),
)
RUN = (
    ("objective", pa.float64()),
    ("wall_time_s", pa.float64()),
    ("device", pa.string()),
    ("node", pa.string()),
    ("population", pa.string()),
    ("started_at", pa.string()),
    ("ended_at", pa.string()),
    ("restarts", pa.int64()),
    ("per_task_choices", pa.string()),
)
PER_TASK_COLUMN = "per_task_choices"
"""Under the per-task selection protocol: what was chosen at each task (JSON, see
docs/results-schema.md); null otherwise."""
COST = (
    ("cpu_time_s", pa.float64()),
    ("gpu_time_s", pa.float64()),
    ("peak_memory_bytes", pa.int64()),
    ("trainable_params", pa.int64()),
    ("stored_samples", pa.int64()),
)
"""What a trial cost (schema 4; docs/results-schema.md): CPU-seconds of its process, GPU-seconds
(wall time x the GPU share it held), the device's peak memory (CUDA only, else null), and its
size: trainable parameters and the raw samples its method may store (the memory budget). The
measures CLEVA-Compass (Mundt et al. 2022) and compute-budgeted CL (Prabhu et al. 2023) ask a
comparison to state."""
COST_COLUMNS = tuple(name for name, _ in COST)


def metric_columns() -> list[tuple[str, pa.DataType]]:
    """``val_avg_acc``, ``test_avg_acc``, ``val_bwt``, ... in registry order."""
    return [(m.column(split), pa.float64()) for m in METRICS.values() for split in SPLITS]


def trials_schema(hyperparams: Iterable[tuple[str, str]]) -> pa.Schema:
    """Columns of trials.parquet; ``hyperparams`` are (name, kind) of every method in the sweep."""
    hps = [(f"hp_{name}", HYPERPARAM_TYPES[kind]) for name, kind in hyperparams]
    return pa.schema([*IDENTITY, *SETTINGS, *hps, *OUTCOME, *metric_columns(), *RUN, *COST])


TASKS_SCHEMA = pa.schema(
    [
        ("schema_version", pa.int64()),
        ("sweep", pa.string()),
        ("trial_id", pa.string()),
        ("phase", pa.string()),
        ("tasks_learned", pa.int64()),
        ("task", pa.int64()),
        ("split", pa.string()),
        ("accuracy", pa.float64()),
        ("train_loss", pa.float64()),
        ("task_seconds", pa.float64()),
    ]
)

CURVE_POINT_COLUMNS = ("iteration", "tasks_seen", "task", "split", "accuracy")
"""One evaluation of a stream run: after ``iteration`` steps (``tasks_seen`` tasks reached), the
accuracy on ``task``'s ``split``."""
CURVES_SCHEMA = pa.schema(
    [
        ("schema_version", pa.int64()),
        ("sweep", pa.string()),
        ("trial_id", pa.string()),
        ("phase", pa.string()),
        ("iteration", pa.int64()),
        ("tasks_seen", pa.int64()),
        ("task", pa.int64()),
        ("split", pa.string()),
        ("accuracy", pa.float64()),
    ]
)

TRIAL_KEY_COLUMNS = (
    "schema_version", "sweep", "trial_id", "phase", "cell", "config_id", "method", "benchmark",
    "scenario", "n_tasks", "data_seed", "train_seed", "status", "tasks_completed", "val_avg_acc",
    "test_avg_acc", "objective",
)  # fmt: skip
"""Columns a reader may rely on in every readable schema version."""
TASK_KEY_COLUMNS = ("sweep", "trial_id", "tasks_learned", "task", "split", "accuracy")
CURVE_KEY_COLUMNS = ("sweep", "trial_id", *CURVE_POINT_COLUMNS)


def study_name(sweep: str, method: str, cell: str, phase: str) -> str:
    """The Optuna study of one method in one cell and phase: ``<sweep>:<method>:<cell>:<phase>``."""
    return f"{sweep}:{method}:{cell}:{phase}"


# Optuna user attributes of each trial in study.db (besides its intermediate values and values).
ATTR_TRIAL_ID = "trial_id"  # the trials.parquet trial_id
ATTR_STATUS = "status"
ATTR_TASKS = "tasks_completed"
ATTR_CONFIG_ID = "config_id"
ATTR_FINAL_RANK = "final_rank"
ATTR_SEED = "seed"  # final phase: the fresh data and training seed (not a searched parameter)
