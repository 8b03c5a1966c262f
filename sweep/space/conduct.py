"""How a sweep is conducted: objective, sampler, budget, early stopping, resources, final phase
and loggers; each section checked on its own (:mod:`sweep.space.sections` calls them in order).
"""

from __future__ import annotations

import importlib.util
import math
from typing import Any

from cl_core.config import RunConfig
from contract import METRICS, SearchParam
from sweep.errors import shown
from sweep.space.keys import (
    DEFAULT_MAX_FAILURES,
    LOGGERS,
    MAX_FAILURES,
    MAX_FINAL_SEEDS,
    MAX_INT,
    MAX_POPULATION,
    MAX_SAMPLER_SEED,
    MAX_TIME_LIMIT_S,
    MAX_TRIALS,
    MAX_TRIALS_TOTAL,
    MIN_CPUS,
    OBJECTIVE_METRICS,
    SAMPLERS,
    SCHEDULERS,
    SECTION_KEYS,
)
from sweep.space.search import SearchChecks
from sweep.space.spec import Cell, LoggerSpec


class ConductChecks(SearchChecks):
    """Checks of the sections that say how the sweep runs (the validator builds on them)."""

    def objective(self, objective: dict[str, Any], train: dict[str, Any]) -> tuple[tuple, tuple]:
        metric = objective.get("metric", "val_avg_acc")
        metrics = metric if isinstance(metric, list) else [metric]
        if not metrics:
            self.fail("objective.metric", "empty list", "name at least one metric")
        for m in metrics:
            if isinstance(m, str) and m.startswith("test_"):
                self.fail(
                    "objective.metric",
                    f"{shown(m)} selects on test data",
                    f"select on validation: use {m.replace('test_', 'val_', 1)!r}",
                )
        self.name_list("objective.metric", metrics, OBJECTIVE_METRICS, "metric")
        if len(set(metrics)) != len(metrics):
            self.fail("objective.metric", "a metric appears twice", "list each metric once")
        mode = objective.get("mode", [OBJECTIVE_METRICS[m] for m in metrics])
        modes = mode if isinstance(mode, list) else [mode]
        if len(modes) != len(metrics):
            self.fail(
                "objective.mode",
                f"{len(modes)} mode(s) for {len(metrics)} metric(s)",
                "give one mode (max or min) per metric",
            )
        for m in modes:
            if not isinstance(m, str) or m not in ("max", "min"):
                self.fail("objective.mode", f"unknown mode {shown(m)}", "use max or min")
        if train.get("val_fraction", RunConfig.val_fraction) == 0:
            self.fail(
                "train.val_fraction",
                "0 leaves no validation data to select on",
                "use a fraction such as 0.1",
            )
        return tuple(metrics), tuple(modes)

    def sampler(
        self,
        sampler: Any,
        metrics: tuple,
        params: tuple[SearchParam, ...],
        nothing_searched_ok: bool = False,
    ) -> tuple[str, Any]:
        if isinstance(sampler, str):
            sampler = {"name": sampler}
        if not isinstance(sampler, dict):
            self.fail(
                "sampler",
                f"expected a name or a mapping, got {shown(sampler)}",
                f"write e.g. `sampler: tpe` (one of {', '.join(SAMPLERS)})",
            )
        self.keys("sampler", sampler, SECTION_KEYS["sampler"])
        if isinstance(sampler.get("name"), list):
            self.fail("sampler", "expected one sampler, got a list", "name one sampler")
        name = self.name_list("sampler", sampler.get("name", "tpe"), SAMPLERS, "sampler")[0]
        seed = sampler.get("seed", 0)
        if seed is not None:
            self.number("sampler.seed", seed, integer=True, low=0, high=MAX_SAMPLER_SEED)
        if not params and not nothing_searched_ok:
            self.fail("search", "nothing to search", "add at least one parameter under search:")
        if name == "cmaes":
            if len(metrics) > 1:
                self.fail(
                    "sampler",
                    "cmaes optimizes one objective",
                    "use nsga2 or tpe for several metrics",
                )
            try:
                import cmaes  # noqa: F401
            except ImportError:
                self.fail(
                    "sampler", "cmaes needs the 'cmaes' package", "pip install cmaes, or use tpe"
                )
        if name == "grid":
            loose = [p.name for p in params if p.distribution != "categorical"]
            if loose:
                self.fail(
                    f"search.{loose[0]}",
                    "the grid sampler needs listed values",
                    "use type: categorical with choices, or another sampler",
                )
        return name, seed

    def budget(
        self, budget: dict[str, Any], sampler: str, params: tuple[SearchParam, ...]
    ) -> tuple:
        default = 20
        if sampler == "grid":  # every combination of the method with the most
            methods = {m for p in params for m in p.methods}
            default = max(
                math.prod(len(p.choices) for p in params if p.applies_to(m)) for m in methods
            )
        trials = self.count(
            "budget",
            budget,
            "trials",
            default,
            low=1,
            high=MAX_TRIALS,
            why=" per cell, more than one sweep should hold",
            high_fix="split the search into several sweeps (--name), or narrow the grid",
        )
        limit = budget.get("time_limit_s")
        if limit is not None:
            limit = float(
                self.number(
                    "budget.time_limit_s", limit, low=0, low_open=True, high=MAX_TIME_LIMIT_S
                )
            )
        return trials, limit

    def early_stopping(self, early: Any, metrics: tuple, cells: tuple[Cell, ...]) -> dict | None:
        if early is None or early is False:
            return None
        if not isinstance(early, dict):
            self.fail(
                "early_stopping",
                f"expected a mapping or false, got {shown(early)}",
                "write `early_stopping: {scheduler: asha, grace_tasks: 1}` or false",
            )
        self.keys("early_stopping", early, SECTION_KEYS["early_stopping"])
        scheduler = early.get("scheduler", "asha")
        scheduler = self.name_list("early_stopping.scheduler", scheduler, SCHEDULERS, "scheduler")
        if len(scheduler) != 1:
            self.fail("early_stopping.scheduler", "expected one scheduler", "name one scheduler")
        scheduler = scheduler[0]
        first = METRICS[metrics[0].removeprefix("val_")]
        if not first.before_last_task:
            defined = [f"val_{m.name}" for m in METRICS.values() if m.before_last_task]
            self.fail(
                "objective.metric",
                f"early stopping compares {metrics[0]} after each task, "
                f"but only {', '.join(defined)} is defined before the last task",
                f"put {defined[0]} first or set early_stopping: false",
            )
        grace = self.count("early_stopping", early, "grace_tasks", 1, low=1)
        shortest = min(c.n_tasks for c in cells)
        if grace >= shortest:
            self.fail(
                "early_stopping.grace_tasks",
                f"{grace} >= the smallest task count {shortest}, so nothing can stop early",
                f"use a value below {shortest}",
            )
        factor = self.number(
            "early_stopping.reduction_factor",
            early.get("reduction_factor", 2),
            low=1,
            low_open=True,
            high=1000,
        )
        return {"scheduler": scheduler, "grace_tasks": grace, "reduction_factor": float(factor)}

    def resources(self, resources: dict[str, Any]) -> tuple[float, float, int | None, int, int]:
        cpus = self.number(
            "resources.cpus",
            resources.get("cpus", 1),
            low=MIN_CPUS,
            fix=f"give each trial at least {MIN_CPUS} CPU (Ray's resolution)",
        )
        gpus = self.number("resources.gpus", resources.get("gpus", 0), low=0)
        if 0 < gpus < MIN_CPUS:
            self.fail("resources.gpus", f"{gpus!r} is below Ray's resolution", "use 0 or >= 0.01")
        if gpus > 1 and gpus != int(gpus):
            self.fail(
                "resources.gpus",
                f"{gpus!r}: more than one GPU per trial must be a whole number",
                "use a fraction below 1 or a whole number of GPUs",
            )
        concurrent = resources.get("max_concurrent")
        if concurrent is not None:
            self.number("resources.max_concurrent", concurrent, integer=True, low=1)
        fix = f"write a whole number from 1 (one configuration per trial) to {MAX_POPULATION}"
        population = self.count(
            "resources", resources, "population", 1, low=1, high=MAX_POPULATION, fix=fix
        )
        failures = self.count(
            "resources",
            resources,
            "max_failures",
            DEFAULT_MAX_FAILURES,
            low=0,
            high=MAX_FAILURES,
            fix="write how many times a trial may restart after its worker or node went away",
        )
        return float(cpus), float(gpus), concurrent, population, failures

    def final(self, final: dict[str, Any], trials: int) -> tuple[int, int, int]:
        why = f", the search budget (budget.trials: {trials})"
        top_k = self.count("final", final, "top_k", 0, low=0, high=trials, why=why)
        seeds = self.count("final", final, "seeds", 3, low=1, high=MAX_FINAL_SEEDS)
        base = self.count("final", final, "seed_base", 1000, low=0, high=MAX_INT - seeds)
        return top_k, seeds, base

    def total(self, units: int, trials: int, final: tuple[int, int, int]) -> None:
        total = units * (trials + final[0] * final[1])
        if total > MAX_TRIALS_TOTAL:
            self.fail(
                "budget.trials",
                f"{units} cells x {trials + final[0] * final[1]} trials = {total} trials, more "
                f"than {MAX_TRIALS_TOTAL} in one sweep",
                "split the grid into several sweeps (--name) or lower the budget",
            )

    def loggers(self, loggers: Any) -> tuple[LoggerSpec, ...]:
        """``loggers: [tensorboard, csv, {wandb: {project: p}}]``; [] or false for none."""
        if loggers is None or loggers is False:
            return ()
        entries = loggers if isinstance(loggers, list) else [loggers]
        out: list[LoggerSpec] = []
        for entry in entries:
            settings: dict[str, Any] = {}
            if isinstance(entry, dict):
                if len(entry) != 1:
                    self.fail(
                        "loggers",
                        f"{shown(entry)} names {len(entry)} loggers in one entry",
                        "write one `- name: {settings}` per logger",
                    )
                ((entry, settings),) = entry.items()
                if settings is None:
                    settings = {}
                if not isinstance(settings, dict):
                    self.fail(
                        f"loggers.{entry}",
                        f"expected settings as a mapping, got {shown(settings)}",
                        "write e.g. `- wandb: {project: my-project}`",
                    )
            if isinstance(entry, list):
                self.fail("loggers", f"{shown(entry)} is a list in a list", "list logger names")
            name = self.name_list("loggers", entry, LOGGERS, "logger")[0]
            package, keys = LOGGERS[name]
            self.keys(f"loggers.{name}", settings, keys)
            for key, value in settings.items():
                if not isinstance(value, str):
                    self.fail(
                        f"loggers.{name}.{key}",
                        f"expected text, got {shown(value)}",
                        "write the value as text",
                    )
            if package and importlib.util.find_spec(package) is None:
                self.fail(
                    "loggers",
                    f"{name} needs the '{package}' package, which is not installed",
                    f"pip install {package}, or remove {name} from loggers",
                )
            if any(o.name == name for o in out):
                self.fail("loggers", f"{name} is listed twice", "list each logger once")
            out.append(LoggerSpec(name, tuple(sorted(settings.items()))))
        return tuple(out)
