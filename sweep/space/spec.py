"""The validated sweep spec and its parts: what to run, how to search it, with which resources.

Only :mod:`sweep.space.sections` builds a :class:`SweepSpec`, after every check has passed; the
rest of the sweep reads it and never changes it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cl_core.config import RunConfig
from cl_core.methods import METHODS
from cl_core.validation import validated
from contract import SearchParam
from sweep.space.keys import DEFAULT_LOGGERS


@dataclass(frozen=True)
class LoggerSpec:
    """A Tune logger callback the space switches on, with its settings."""

    name: str
    settings: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Cell:
    """One scenario cell of the grid; each cell is searched on its own."""

    benchmark: str
    scenario: str
    n_tasks: int

    @property
    def key(self) -> str:
        return f"{self.benchmark}/{self.scenario}/{self.n_tasks}"

    @property
    def slug(self) -> str:
        """A file-name-safe form of ``key`` (Ray experiment folders, study names)."""
        return self.key.replace("/", "_")


END_OF_SEQUENCE, FIRST_TASKS, TRANSFER = "end-of-sequence", "first-tasks", "transfer"
PER_TASK = "per-task"
PROTOCOLS = (END_OF_SEQUENCE, FIRST_TASKS, TRANSFER, PER_TASK)
PER_TASK_KEYS = ("drop", "decay", "lr_grid", "max_attempts")
"""The per-task protocol's settings a space may give (cl_core.per_task.PerTaskSettings)."""


@dataclass(frozen=True)
class Selection:
    """What data the search may see, and what the final phase reports (docs/selection.md).

    - end-of-sequence: every search trial learns the whole sequence and is scored on the
      validation data of every task at its end; the final phase re-runs the chosen
      configurations with fresh seeds on the same cell.
    - first-tasks (``tasks`` = k): the learning protocol of Chaudhry et al. 2019 ("Efficient
      Lifelong Learning with A-GEM", Sec. 2: the first tasks form the stream for
      cross-validation, the rest the stream that is learned once and reported). Search
      trials learn and validate on tasks [0, k) only; the final phase learns tasks [k, T) with
      the chosen configuration, from scratch, and reports on those tasks alone.
    - transfer (``evaluate``: the cell fields replaced): the protocol of Cha & Cho 2024
      ("Hyperparameters in Continual Learning: A Reality Check": tune on one dataset, then
      evaluate the chosen configuration unchanged on another of the same scenario). The
      search runs on the grid's cells; the final phase runs on each cell's evaluation cell,
      and only that is reported.
    - per-task (``per_task``: the settings of cl_core.per_task.PerTaskSettings given): the
      continual hyperparameter framework of De Lange et al. 2021 (TPAMI, Algorithm 1) inside
      every trial: at each task the learning rate is chosen by fine-tuning on that task's
      validation data, then the method's stability knob decays from its set value until the
      task's accuracy is within p of fine-tuning's. The search (of any other parameters) and
      the final phase both run that procedure.
    """

    protocol: str = END_OF_SEQUENCE
    tasks: int | None = None  # first-tasks: k
    evaluate: tuple[tuple[str, Any], ...] = ()  # transfer: (cell field, value) replaced
    per_task: tuple[tuple[str, Any], ...] = ()  # per-task: PerTaskSettings fields given

    def search_settings(self) -> dict[str, Any]:
        """RunConfig settings of a search trial beyond its cell's."""
        return {"task_stop": self.tasks} if self.protocol == FIRST_TASKS else {}

    def final_settings(self) -> dict[str, Any]:
        """RunConfig settings of a final-phase trial beyond its (evaluation) cell's."""
        return {"task_start": self.tasks} if self.protocol == FIRST_TASKS else {}

    def final_cell(self, cell: Cell) -> Cell:
        """Where the final phase of ``cell``'s search runs."""
        if self.protocol != TRANSFER:
            return cell
        return dataclasses.replace(cell, **dict(self.evaluate))

    def train_fn(self) -> Any:
        """The trainer of each trial under this protocol (None: cl_core's own ``Run``)."""
        if self.protocol != PER_TASK:
            return None
        from cl_core.per_task import PerTaskSettings, per_task_train

        return functools.partial(per_task_train, settings=PerTaskSettings(**dict(self.per_task)))

    def search_tasks(self, cell: Cell) -> int:
        """How many tasks a search trial on ``cell`` learns (the early-stopping rungs')."""
        return self.tasks if self.protocol == FIRST_TASKS else cell.n_tasks

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"protocol": self.protocol}
        if self.protocol == FIRST_TASKS:
            out["tasks"] = self.tasks
        if self.protocol == TRANSFER:
            out["evaluate"] = dict(self.evaluate)
        if self.protocol == PER_TASK:
            out.update(dict(self.per_task))
        return out

    def describe(self, cell: Cell) -> str:
        """What the search saw and what is reported, for ``cell`` (run record, captions)."""
        if self.protocol == FIRST_TASKS:
            return (
                f"first-tasks: searched on tasks 0-{self.tasks - 1} of {cell.key}; final phase "
                f"learns and reports tasks {self.tasks}-{cell.n_tasks - 1} alone"
            )
        if self.protocol == TRANSFER:
            return (
                f"transfer: searched on {cell.key}; final phase on "
                f"{self.final_cell(cell).key}, reported alone"
            )
        if self.protocol == PER_TASK:
            return (
                f"per-task: on {cell.key}, lr and the stability knob chosen at each task on that "
                "task's validation data (De Lange et al. 2021), in the search and the final phase"
            )
        return (
            f"end-of-sequence: searched on the validation data of all tasks of {cell.key}; "
            "final phase on the same cell with fresh seeds"
        )


@dataclass(frozen=True)
class SweepSpec:
    """A validated search space: what to run, how to search it, with which resources."""

    name: str
    file: str  # path of the space file, as found
    raw: dict[str, Any]
    methods: tuple[str, ...]
    train: dict[str, Any]
    hyperparams: dict[str, Any]
    params: tuple[SearchParam, ...]
    cells: tuple[Cell, ...]
    metrics: tuple[str, ...]
    modes: tuple[str, ...]
    sampler: str
    sampler_seed: int | None
    trials: int
    time_limit_s: float | None
    early_stopping: dict[str, Any] | None
    cpus: float
    gpus: float
    max_concurrent: int | None
    final_top_k: int
    final_seeds: int
    final_seed_base: int
    loggers: tuple[LoggerSpec, ...] = tuple(LoggerSpec(n) for n in DEFAULT_LOGGERS)
    population: int = 1  # configurations one Ray trial trains at once (1: one per trial)
    max_failures: int = 2  # restarts of a trial whose worker or node went away (Tune's retries)
    selection: Selection = Selection()

    @property
    def units(self) -> list[tuple[str, Cell]]:
        """(method, cell) pairs, each searched on its own (its own study and early stopping)."""
        return [(method, cell) for method in self.methods for cell in self.cells]

    def fingerprint(self) -> str:
        """What a resumed sweep must share with the one it continues: the methods, fixed
        settings, searched parameters, cells, objective, sampler and final-phase seeds. Budgets,
        resources and loggers may change on resume (e.g. --trials 40 --resume to search on)."""
        doc = {
            "methods": self.methods,
            "train": self.train,
            "hyperparams": self.hyperparams,
            "params": [p.to_json() for p in self.params],
            "cells": [c.key for c in self.cells],
            "objective": [self.metrics, self.modes],
            "sampler": [self.sampler, self.sampler_seed],
            "early_stopping": self.early_stopping,
            "final": [self.final_top_k, self.final_seeds, self.final_seed_base],
        }
        if self.selection.protocol != END_OF_SEQUENCE:  # (older sweeps keep their fingerprint)
            doc["selection"] = self.selection.to_json()
        text = json.dumps(doc, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def base_config(self, method: str, cell: Cell, phase: str = "search") -> dict[str, Any]:
        """The validated RunConfig of ``method`` for ``phase`` of ``cell``'s study, as a dict,
        before searched values are filled in (each trial's: :func:`sweep.trial_config.
        launch_run`). The selection protocol decides the final phase's cell and each phase's
        task window."""
        final = phase == "final"
        where = self.selection.final_cell(cell) if final else cell
        extra = self.selection.final_settings() if final else self.selection.search_settings()
        cfg = RunConfig.from_dict(
            {
                **self.train,
                **extra,
                "benchmark": where.benchmark,
                "scenario": where.scenario,
                "n_tasks": where.n_tasks,
                "method": method,
                "method_params": self.fixed_for(method),
                "device": "cuda" if self.gpus > 0 else "cpu",
            }
        )
        return validated(cfg).to_dict()

    def params_for(self, method: str) -> tuple[SearchParam, ...]:
        """The parameters searched for ``method`` (its own study searches exactly these)."""
        return tuple(p for p in self.params if p.applies_to(method))

    def fixed_for(self, method: str) -> dict[str, Any]:
        """The fixed hyperparameters that ``method`` declares."""
        declared = METHODS[method].hyperparams
        return {k: v for k, v in self.hyperparams.items() if k in declared}
