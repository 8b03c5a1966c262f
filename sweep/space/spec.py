"""The validated sweep spec and its parts: what to run, how to search it, with which resources.

Only :mod:`sweep.space.sections` builds a :class:`SweepSpec`, after every check has passed; the
rest of the sweep reads it and never changes it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cl_core.config import RunConfig
from cl_core.methods import METHODS
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
        text = json.dumps(doc, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def base_config(self, method: str, cell: Cell) -> dict[str, Any]:
        """The validated RunConfig of ``method`` on ``cell``, as a dict, before searched values
        are filled in (each trial's: :func:`sweep.trial_config.launch_run`)."""
        cfg = RunConfig.from_dict(
            {
                **self.train,
                "benchmark": cell.benchmark,
                "scenario": cell.scenario,
                "n_tasks": cell.n_tasks,
                "method": method,
                "method_params": self.fixed_for(method),
                "device": "cuda" if self.gpus > 0 else "cpu",
            }
        )
        return cfg.validated().to_dict()

    def params_for(self, method: str) -> tuple[SearchParam, ...]:
        """The parameters searched for ``method`` (its own study searches exactly these)."""
        return tuple(p for p in self.params if p.applies_to(method))

    def fixed_for(self, method: str) -> dict[str, Any]:
        """The fixed hyperparameters that ``method`` declares."""
        declared = METHODS[method].hyperparams
        return {k: v for k, v in self.hyperparams.items() if k in declared}
