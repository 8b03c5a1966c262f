"""The configuration of one continual-learning run: a flat dataclass whose fields carry their own
metadata, and the checks each field makes on its own (``RunConfig.checked``).

The bottom layer of the project: it imports the standard library and ``cl_core.errors`` only.
The checks that need the registries (benchmarks, methods, models) live above them, in
``cl_core.validation``; the CLI, the Parquet contract, populations and sweeps build what they
need from the fields' metadata (``setting``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cl_core.errors import ClsweepError

OPTIMIZERS = ("adam", "adamw", "sgd")
DEVICES = ("auto", "cpu", "cuda")
SCENARIOS = ("task", "domain", "class")
CLASS_IL_UNITS = ("all", "seen")
STREAMS = ("none", "academic", "fuzzy-boundaries", "random")
"""Task-free streams (cl_core/stream.py); ``none`` is the task-based protocol (the trainer tells
methods where tasks end)."""

SWEEP_ROLES = {
    "cell": "the grid (grid.benchmark, grid.scenario, grid.n_tasks)",
    "method": "method / hyperparams",
    "selection": "the selection protocol (selection:)",
    "machine": "the machine (resources.gpus, --data-root)",
    "train": "train:",
}
"""Where a sweep's space sets a field (``sweep``): a ``train`` field under ``train:``, the others
where the value names."""
POPULATION_ROLES = ("member", "method", "shared")
"""How members of a population may differ in a field: a ``member`` field per member; ``method``
fields are the method's to split (its floats per member, the rest shared); a ``shared`` field
fixes a shape, the data or the schedule."""


def setting(
    default: Any = dataclasses.MISSING,
    help: str = "",  # noqa: A002 - argparse's word for it
    *,
    flag: str | None = "",
    column: str | None = "",
    population: str = "shared",
    sweep: str = "train",
    choices: tuple[str, ...] | str | None = None,
    group: str | None = None,
    metavar: str | None = None,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A RunConfig field with everything the rest of the project builds from it:
    ``flag``: its ``python -m cl_core`` flag ("" = ``--<name>``, None = none) with ``help`` and
    ``choices`` (a tuple, or the registry "benchmarks", "methods" or "models") in argparse group
    ``group``; ``column``: its Parquet settings column's Arrow type ("" = from the annotation,
    None = not a settings column: the identity columns, the ``hp_*`` columns and fields that do
    not change results); ``population`` (POPULATION_ROLES) and ``sweep`` (SWEEP_ROLES)."""
    meta = {
        "flag": flag,
        "help": help,
        "column": column,
        "population": population,
        "sweep": sweep,
        "choices": choices,
        "group": group,
        "metavar": metavar,
    }
    return field(default=default, default_factory=default_factory, metadata=meta)


@dataclass
class RunConfig:
    """Everything that determines a run. Same config on the same device gives the same numbers.

    ``task_start``/``task_stop`` cut a window out of the task sequence
    (cl_core.data.benchmarks.task_window); ``learned_tasks`` is its length.
    ``data_seed`` builds the scenario (permutations, class order, validation split); ``train_seed``
    drives training (initialisation, batch order, sampled Fisher labels).
    Exactly one of ``epochs`` and ``iterations`` sets the training length per task.
    ``stream`` other than "none" runs the tasks as a task-free stream (cl_core/stream.py):
    "academic", "fuzzy-boundaries" (``transition`` steps of mixing at each boundary) or "random";
    methods consolidate every ``update_every`` steps; all tasks are evaluated every
    ``eval_every`` steps (0: only at the nominal task ends), the accuracy-over-time curve.
    """

    benchmark: str = setting("permuted-digits", choices="benchmarks", column=None, sweep="cell")
    scenario: str = setting(
        "domain", "task-, domain- or class-incremental", choices=SCENARIOS, column=None,
        sweep="cell",
    )  # fmt: skip
    n_tasks: int = setting(5, "number of tasks", flag="--tasks", column=None, sweep="cell")
    # The run learns tasks [task_start, task_stop) of the n_tasks-task sequence (None: to its
    # end), as a sequence of its own: renumbered from 0, scored on those tasks alone (the
    # "first-tasks" selection protocol searches on the first k and reports on the rest).
    task_start: int = setting(
        0, "learn only tasks from this one on (0-based; the rest of the run is those tasks)",
        column="int64", sweep="selection",
    )  # fmt: skip
    task_stop: int | None = setting(
        None, "learn only tasks before this one", column="int64", sweep="selection"
    )
    method: str = setting("finetune", choices="methods", column=None, sweep="method")
    method_params: dict[str, Any] = setting(
        default_factory=dict, flag=None, column=None, population="method", sweep="method"
    )
    model: str = setting(
        "mlp", "architecture: mlp (default) or conv (5 conv layers)", choices="models"
    )
    hidden: tuple[int, ...] = setting(
        (400, 400, 400), "hidden sizes, e.g. 400,400,400 (conv: the fc layers)", column="string"
    )
    conv_weights: str | None = setting(
        None, "conv: pre-trained conv layers (made by python -m cl_core.pretrain)", metavar="PATH"
    )
    freeze_conv: bool = setting(
        False, "conv: freeze the pre-trained conv layers (eval mode, no gradients)"
    )
    optimizer: str = setting("adam", choices=OPTIMIZERS)
    lr: float = setting(1e-3, population="member")
    weight_decay: float = setting(0.0, population="member")
    momentum: float = setting(0.9, "SGD momentum", population="member")
    reset_optimizer: bool = setting(False, "new optimizer per task")
    epochs: int | None = setting(1, "epochs per task", group="length")
    iterations: int | None = setting(None, "batches per task", group="length")
    batch_size: int = setting(128)
    eval_batch_size: int = setting(4096, flag=None, column=None)  # speed only
    device: str = setting("auto", choices=DEVICES, column=None, sweep="machine")
    # CUDA matmuls and convolutions in TensorFloat-32 (about 3 significant digits, faster on
    # Ampere and later GPUs); off: float32 throughout. No effect on a CPU.
    tf32: bool = setting(
        False, "CUDA matmuls and convolutions in TensorFloat-32 (faster, ~3 digits); no CPU effect"
    )
    data_seed: int = setting(0, "builds the scenario (permutations, class order)")
    train_seed: int = setting(0, "drives training (init, batch order)", population="member")
    val_fraction: float = setting(0.1, "share of each task's training data held out")
    data_root: str | None = setting(
        None,
        "folder holding MNIST/raw, FashionMNIST/raw, cifar-10-batches-py, cifar-100-python "
        "(else $CLSWEEP_DATA)",
        column=None,
        sweep="machine",
    )
    first_task_unpermuted: bool = setting(False)
    pad32: bool = setting(False, "zero-pad MNIST to 32x32")
    class_il_units: str = setting("all", "active output units in class-IL", choices=CLASS_IL_UNITS)
    stream: str = setting(
        "none", "present the tasks as one stream without task boundaries (none: task-based)",
        choices=STREAMS, group="stream",
    )  # fmt: skip
    update_every: int = setting(100, "steps between consolidations", group="stream")
    transition: int = setting(1000, "fuzzy-boundaries: steps mixing two tasks", group="stream")
    eval_every: int = setting(0, "steps between evaluations (0: only at task ends)", group="stream")

    def checked(self) -> RunConfig:
        """Return a copy with types normalised, each field checked on its own and against the
        other fields; raise ClsweepError naming the field and the fix. What only the registries
        know (the benchmark's task counts, the model, the method's scenarios and
        hyperparameters) is checked above them: ``cl_core.validation.validated``."""
        cfg = dataclasses.replace(self, hidden=parse_hidden(self.hidden))
        if cfg.conv_weights:  # absolute, so a worker in another directory (Ray) finds it too
            cfg.conv_weights = str(Path(cfg.conv_weights).expanduser().resolve())
        _one_of("scenario", cfg.scenario, SCENARIOS)
        _one_of("optimizer", cfg.optimizer, OPTIMIZERS)
        _one_of("device", cfg.device, DEVICES)
        _one_of("class_il_units", cfg.class_il_units, CLASS_IL_UNITS)
        if cfg.epochs is not None and cfg.iterations is not None:
            raise ClsweepError("set either epochs or iterations per task, not both")
        if cfg.epochs is None and cfg.iterations is None:
            raise ClsweepError("set epochs or iterations per task")
        _at_least("epochs", cfg.epochs, 1)
        _at_least("iterations", cfg.iterations, 1)
        _at_least("n_tasks", cfg.n_tasks, 1)
        _check_window(cfg)
        _at_least("batch_size", cfg.batch_size, 1)
        _at_least("eval_batch_size", cfg.eval_batch_size, 1)
        if any(h < 1 for h in cfg.hidden):
            raise ClsweepError(f"hidden sizes must be positive integers, got {cfg.hidden}")
        if not cfg.lr > 0:
            raise ClsweepError(f"lr must be > 0, got {cfg.lr}")
        if cfg.weight_decay < 0:
            raise ClsweepError(f"weight_decay must be >= 0, got {cfg.weight_decay}")
        if not 0 <= cfg.momentum < 1:
            raise ClsweepError(f"momentum must be in [0, 1), got {cfg.momentum}")
        if not 0 <= cfg.val_fraction < 1:
            raise ClsweepError(f"val_fraction must be in [0, 1), got {cfg.val_fraction}")
        _check_conv_settings(cfg)
        _check_stream(cfg)
        return cfg

    @property
    def learned_tasks(self) -> int:
        """How many tasks the run learns: those of its window (all ``n_tasks`` by default)."""
        return (self.n_tasks if self.task_stop is None else self.task_stop) - self.task_start

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["hidden"] = list(self.hidden)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        """Build from a dict, refusing unknown keys by name."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ClsweepError(
                f"unknown run setting(s) {unknown}; valid settings: {', '.join(sorted(names))}"
            )
        values = dict(values)
        if "hidden" in values:
            values["hidden"] = parse_hidden(values["hidden"])
        return cls(**values)


def parse_hidden(value: Any) -> tuple[int, ...]:
    """Hidden sizes from "400,400", [400, 400] or 400."""
    if isinstance(value, str):
        parts = [p for p in value.replace(" ", "").split(",") if p]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = [value]
    try:
        return tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise ClsweepError(
            f"hidden must be comma-separated integers like 400,400; got {value!r}"
        ) from None


def _check_conv_settings(cfg: RunConfig) -> None:
    """Pre-trained / frozen conv layers only make sense for the conv net, and freezing only with
    pre-trained weights (frozen random filters are almost surely a forgotten --conv-weights).
    Whether the benchmark's images fit the conv net is the validation's (cl_core.validation)."""
    if cfg.model != "conv" and (cfg.conv_weights or cfg.freeze_conv):
        raise ClsweepError(
            f"conv_weights and freeze_conv apply to model 'conv', not {cfg.model!r}; "
            "set --model conv or drop them"
        )
    if cfg.freeze_conv and not cfg.conv_weights:
        raise ClsweepError(
            "freeze_conv freezes pre-trained conv layers: set conv_weights (--conv-weights PATH, "
            "made by `python -m cl_core.pretrain --out PATH`)"
        )
    if cfg.conv_weights and not Path(cfg.conv_weights).expanduser().is_file():
        raise ClsweepError(
            f"conv_weights file {cfg.conv_weights} not found; write one with "
            "`python -m cl_core.pretrain --out PATH` or fix the path"
        )


def _check_window(cfg: RunConfig) -> None:
    """0 <= task_start < task_stop <= n_tasks: a window of at least one task."""
    _at_least("task_start", cfg.task_start, 0)
    _at_least("task_stop", cfg.task_stop, 1)
    stop = cfg.n_tasks if cfg.task_stop is None else cfg.task_stop
    if stop > cfg.n_tasks or cfg.task_start >= stop:
        raise ClsweepError(
            f"the task window [task_start, task_stop) = [{cfg.task_start}, {stop}) must hold at "
            f"least one of the {cfg.n_tasks} tasks (0 <= task_start < task_stop <= n_tasks)"
        )


def _check_stream(cfg: RunConfig) -> None:
    """The task-free settings (cl_core/stream.py)."""
    _one_of("stream", cfg.stream, STREAMS)
    _at_least("update_every", cfg.update_every, 1)
    _at_least("transition", cfg.transition, 0)
    _at_least("eval_every", cfg.eval_every, 0)
    if cfg.stream == "none":
        return
    if cfg.scenario == "task":
        raise ClsweepError(
            "a task-free stream cannot run task-IL (it needs the task at test); "
            "use scenario domain or class, or stream none"
        )
    if cfg.iterations is None:
        raise ClsweepError(
            "a task-free stream needs iterations (steps per task's stretch of the stream), "
            "not epochs; set iterations"
        )
    if cfg.stream == "fuzzy-boundaries" and cfg.transition > cfg.iterations:
        raise ClsweepError(
            f"transition ({cfg.transition} steps) must not exceed iterations per task "
            f"({cfg.iterations}), or neighbouring transitions overlap; lower transition"
        )


def _one_of(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ClsweepError(f"unknown {name} {value!r}; choose one of: {', '.join(valid)}")


def _at_least(name: str, value: int | None, low: int) -> None:
    if value is not None and (int(value) != value or value < low):
        raise ClsweepError(f"{name} must be an integer >= {low}, got {value!r}")


_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}


def population_role(name: str) -> str:
    """ "member", "method" or "shared": how members of a population may differ in field ``name``."""
    return _FIELDS[name].metadata["population"]


def sweep_role(name: str) -> str:
    """Where a sweep's space sets field ``name`` (a key of SWEEP_ROLES)."""
    return _FIELDS[name].metadata["sweep"]


def cli_flag(name: str) -> str | None:
    """The ``python -m cl_core`` flag of field ``name``; None if it has none."""
    flag = _FIELDS[name].metadata["flag"]
    return None if flag is None else flag or "--" + name.replace("_", "-")


def settings_columns() -> list[tuple[str, str]]:
    """(column, Arrow type name) of every field recorded as a Parquet settings column, in field
    order (contract.schema.SETTINGS is built from it)."""
    out = []
    for f in _FIELDS.values():
        column = f.metadata["column"]
        if column is not None:
            out.append((f.name, column or _ARROW_TYPES[str(f.type).removesuffix(" | None")]))
    return out


_ARROW_TYPES = {"int": "int64", "float": "float64", "bool": "bool", "str": "string"}
SHARED_FIELDS = tuple(name for name in _FIELDS if population_role(name) == "shared")
"""Settings every member of one population shares (they fix shapes, data, steps or evaluation)."""
