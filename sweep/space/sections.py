"""The sections of a space file, each checked on its own, and the :class:`SweepSpec` they build.

Sections are validated in dependency order (the methods before their hyperparameters, the grid
before the settings that depend on the benchmark, the searched parameters before the sampler and
the budget that depend on them); the first problem raises (:mod:`sweep.space.checks`).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from cl_core.config import RunConfig
from cl_core.data import BENCHMARKS, SCENARIOS
from cl_core.errors import ClsweepError
from cl_core.methods import METHODS
from cl_core.params import HyperParam
from cl_core.per_task import PerTaskSettings
from sweep.errors import shown
from sweep.space.checks import field_type
from sweep.space.conduct import ConductChecks
from sweep.space.keys import (
    DEFAULT_LOGGERS,
    MAX_EPOCHS,
    MAX_ITERATIONS,
    MAX_NAME,
    MAX_TASKS,
    NAME_PATTERN,
    NOT_TRAIN_KEYS,
    SECTION_KEYS,
    TOP_KEYS,
    TRAIN_KEYS,
)
from sweep.space.spec import (
    END_OF_SEQUENCE,
    FIRST_TASKS,
    PER_TASK,
    PER_TASK_KEYS,
    PROTOCOLS,
    TRANSFER,
    Cell,
    Selection,
    SweepSpec,
)


class Validator(ConductChecks):
    """Checks one raw space dict section by section; ``given`` is the file as written (before
    ``--set`` overrides), kept in the spec for sweep.json."""

    def __init__(self, label: str, given: dict[str, Any]) -> None:
        super().__init__(label)
        self.given = given

    def validate(self, raw: dict[str, Any], default_name: str, path: str) -> SweepSpec:
        """The spec of ``raw`` (``path``: the file; ``default_name``: the sweep's name unless
        the space names it)."""
        self.keys("", raw, TOP_KEYS)
        name = self.name(raw.get("name", default_name))
        description = raw.get("description")
        if description is not None and not isinstance(description, str):
            self.fail(
                "description",
                f"expected text, got {type(description).__name__}",
                "write free text (or remove the key)",
            )
        methods = self.methods(raw.get("method"))
        train = self.train(self.section(raw, "train"))
        hyperparams = self.hyperparams(methods, self.section(raw, "hyperparams"))
        cells = self.grid(self.section(raw, "grid"), methods)
        # settings that depend on the benchmark (pad32, the conv net's input) are checked per cell
        cell_settings = [
            {"benchmark": c.benchmark, "scenario": c.scenario, "n_tasks": c.n_tasks} for c in cells
        ]
        for settings in cell_settings:
            self.run_config({**train, **settings}, "train")
        searched = self.section(raw, "search")
        params = self.search(methods, searched, train, hyperparams, cell_settings)
        if any(p.name == "iterations" for p in params) and "epochs" not in train:
            train = {**train, "epochs": None}  # searched iterations replace the default epochs
        metrics, modes = self.objective(self.section(raw, "objective"), train)
        selection = self.selection(self.section(raw, "selection"), methods, cells, train, params)
        per_task = selection.protocol == PER_TASK  # it may search nothing else
        sampler, seed = self.sampler(raw.get("sampler", "tpe"), metrics, params, per_task)
        resources = self.resources(self.section(raw, "resources"))
        if per_task and resources[3] > 1:
            self.fail(
                "resources.population",
                f"{resources[3]}, but per-task selection trains one configuration per trial (each "
                "task's attempts restart from one model's state)",
                "set resources.population: 1",
            )
        trials, time_limit = self.budget(self.section(raw, "budget"), sampler, params)
        searched_cells = tuple(
            Cell(c.benchmark, c.scenario, selection.search_tasks(c)) for c in cells
        )
        early = self.early_stopping(raw.get("early_stopping"), metrics, searched_cells)
        final = self.final(self.section(raw, "final"), trials)
        if selection.protocol != END_OF_SEQUENCE and final[0] < 1:
            self.fail(
                "final.top_k",
                f"0, but the {selection.protocol} protocol reports only its final phase",
                "set final.top_k: 1 (or more)",
            )
        self.total(len(methods) * len(cells), trials, final)
        loggers = self.loggers(raw.get("loggers", list(DEFAULT_LOGGERS)))
        return SweepSpec(
            name=name,
            file=path,
            raw=self.given,
            methods=methods,
            train=train,
            hyperparams=hyperparams,
            params=params,
            cells=cells,
            metrics=metrics,
            modes=modes,
            sampler=sampler,
            sampler_seed=seed,
            trials=trials,
            time_limit_s=time_limit,
            early_stopping=early,
            cpus=resources[0],
            gpus=resources[1],
            max_concurrent=resources[2],
            population=resources[3],
            max_failures=resources[4],
            final_top_k=final[0],
            final_seeds=final[1],
            final_seed_base=final[2],
            loggers=loggers,
            selection=selection,
        )

    def name(self, name: Any) -> str:
        """The sweep's folder name: a plain name, never '.', '..' or a path."""
        fix = f"use up to {MAX_NAME} letters, digits, '-', '_' or '.', starting with a letter/digit"
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or len(name) > MAX_NAME:
            self.fail("name", f"{shown(name)} is not a usable folder name", fix)
        return name

    def methods(self, method: Any) -> tuple[str, ...]:
        """One method, or a list (e.g. the finetune and joint bounds), each searched on its own."""
        if method is None:
            self.fail("method", "missing", f"add `method: <one of {', '.join(METHODS)}>`")
        methods = self.name_list("method", method, METHODS, "method")
        if len(set(methods)) != len(methods):
            self.fail("method", f"{shown(method)} lists a method twice", "name each method once")
        return tuple(methods)

    def train(self, train: dict[str, Any]) -> dict[str, Any]:
        for key in train:
            if key in NOT_TRAIN_KEYS:
                self.fail(
                    f"train.{key}",
                    "is not a train setting",
                    f"set it through {NOT_TRAIN_KEYS[key]}",
                )
        self.keys("train", train, TRAIN_KEYS)
        if "epochs" not in train and train.get("iterations") is not None:
            train = {**train, "epochs": None}
        hints = typing.get_type_hints(RunConfig)
        for key, value in train.items():
            self.setting_type(f"train.{key}", key, value, hints[key])
        return dict(train)

    def setting_type(self, key: str, name: str, value: Any, hint: Any) -> None:
        """Refuse a value whose YAML type cannot be the RunConfig field's type, a non-finite
        number, and a training length beyond MAX_EPOCHS / MAX_ITERATIONS."""
        base, optional = field_type(hint)
        if value is None:
            if not optional:
                self.fail(key, "must not be empty", "give a value or remove the key")
            return
        origin = base
        wrong = (
            (origin is bool and not isinstance(value, bool))
            or (origin is int and (isinstance(value, bool) or not isinstance(value, int)))
            or (
                origin is float and (isinstance(value, bool) or not isinstance(value, (int, float)))
            )
            or (origin is str and not isinstance(value, str))
        )
        if wrong:
            self.fail(
                key,
                f"expected {origin.__name__}, got {type(value).__name__} {shown(value)}",
                f"write {'an' if origin is int else 'a'} {origin.__name__} value for {name}",
            )
        if origin in (int, float):
            limits = {"epochs": MAX_EPOCHS, "iterations": MAX_ITERATIONS}
            self.number(key, value, integer=origin is int, high=limits.get(name))

    def hyperparams(self, methods: tuple[str, ...], given: dict[str, Any]) -> dict[str, Any]:
        """Fixed hyperparameters; each applies to the listed methods that declare it."""
        for key, value in given.items():
            owners = self.owners(methods, key)
            if not owners:
                self.no_owner(f"hyperparams.{key}", methods, key, settings=False)
            for method in owners:
                hp = METHODS[method].hyperparams[key]
                self.hyperparam_value(f"hyperparams.{key}", hp, value)
                try:
                    hp.check(value, method)
                except ClsweepError as exc:
                    self.fail(f"hyperparams.{key}", str(exc), "use a value in the valid range")
        return dict(given)

    def hyperparam_value(self, key: str, hp: HyperParam, value: Any) -> None:
        """The YAML type must be the declared kind's: true/false only for a bool, a finite
        number (not a boolean) for a float or an int, a name for a choice."""
        if hp.kind == "bool" and not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {shown(value)}", "write true or false")
        elif hp.kind in ("float", "int"):
            self.number(key, value, integer=hp.kind == "int")
        elif hp.kind == "choice" and not isinstance(value, str):
            self.fail(
                key,
                f"expected a name, got {type(value).__name__} {shown(value)}",
                f"use one of {list(hp.choices)}",
            )

    def grid(self, grid: dict[str, Any], methods: tuple[str, ...]) -> tuple[Cell, ...]:
        for key in SECTION_KEYS["grid"]:
            if key not in grid:
                self.fail(
                    f"grid.{key}",
                    "missing",
                    "the grid needs benchmark, scenario and n_tasks (a value or a list)",
                )
        benchmarks = self.name_list("grid.benchmark", grid["benchmark"], BENCHMARKS)
        scenarios = self.name_list("grid.scenario", grid["scenario"], SCENARIOS)
        counts = grid["n_tasks"] if isinstance(grid["n_tasks"], list) else [grid["n_tasks"]]
        if not counts:
            self.fail("grid.n_tasks", "empty list", "list at least one task count")
        for n in counts:
            self.number(
                "grid.n_tasks",
                n,
                integer=True,
                low=1,
                high=MAX_TASKS,
                why=" (an accuracy matrix grows with the square of the task count)",
            )
        cells = []
        for method in methods:
            for scenario in scenarios:
                if scenario not in METHODS[method].scenarios:
                    supported = ", ".join(METHODS[method].scenarios)
                    self.fail(
                        "grid.scenario",
                        f"method {method!r} does not support the {scenario}-IL scenario",
                        f"use a scenario it supports ({supported}) or another method",
                    )
        for benchmark in benchmarks:
            valid = BENCHMARKS[benchmark].valid_task_counts()
            for n in counts:
                if valid is not None and n not in valid:
                    self.fail(
                        "grid.n_tasks",
                        f"{benchmark} cannot be split into {n} tasks",
                        f"use one of {valid}",
                    )
            cells += [Cell(benchmark, s, int(n)) for s in scenarios for n in counts]
        if len(set(cells)) != len(cells):
            self.fail(
                "grid", "a cell appears twice", "list each benchmark, scenario and n_tasks once"
            )
        return tuple(cells)

    def selection(
        self,
        selection: dict[str, Any],
        methods: tuple[str, ...],
        cells: tuple[Cell, ...],
        train: dict[str, Any],
        params: tuple[Any, ...],
    ) -> Selection:
        """``selection: {protocol: first-tasks, tasks: 2}`` or ``{protocol: transfer,
        evaluate: {benchmark: permuted-mnist}}`` (docs/selection.md); absent: end-of-sequence."""
        self.keys("selection", selection, SECTION_KEYS["selection"])
        protocol = selection.get("protocol", END_OF_SEQUENCE)
        if protocol not in PROTOCOLS:
            self.fail(
                "selection.protocol",
                f"unknown protocol {shown(protocol)}",
                f"use one of: {', '.join(PROTOCOLS)}",
            )
        owners = [("tasks", FIRST_TASKS), ("evaluate", TRANSFER)]
        owners += [(key, PER_TASK) for key in PER_TASK_KEYS]
        for key, needs in owners:
            if key in selection and protocol != needs:
                self.fail(f"selection.{key}", f"applies to protocol {needs}, not {protocol}",
                          f"remove it or set selection.protocol: {needs}")  # fmt: skip
        if protocol == FIRST_TASKS:
            return self._first_tasks(selection, cells, params)
        if protocol == TRANSFER:
            return self._transfer(selection, methods, cells, train)
        if protocol == PER_TASK:
            return self._per_task(selection, methods, train, params)
        return Selection()

    def _per_task(
        self,
        selection: dict[str, Any],
        methods: tuple[str, ...],
        train: dict[str, Any],
        params: tuple[Any, ...],
    ) -> Selection:
        for method in methods:
            knobs = METHODS[method].stability
            if not knobs:
                have = ", ".join(m for m, cls in METHODS.items() if cls.stability)
                self.fail(
                    "selection.protocol",
                    f"per-task decays a method's stability knob, and {method} has none",
                    f"drop {method} from this space (methods with one: {have})",
                )
            for p in params:
                if p.name == "lr" or p.name in knobs:
                    self.fail(
                        f"search.{p.name}",
                        f"per-task selection chooses {p.name} itself, at every task",
                        f"remove {p.name} from search (its set value is where "
                        + ("the grid search starts" if p.name == "lr" else "the decay starts")
                        + ")",
                    )
        if train.get("stream", "none") != "none":
            self.fail("train.stream", "per-task selection needs task boundaries", "use stream none")
        given = {k: selection[k] for k in PER_TASK_KEYS if k in selection}
        if "lr_grid" in given:
            grid = given["lr_grid"]
            if not isinstance(grid, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in grid
            ):
                self.fail("selection.lr_grid", f"expected a list of numbers, got {shown(grid)}",
                          "write e.g. `lr_grid: [0.01, 0.001, 0.0001]`")  # fmt: skip
            given["lr_grid"] = tuple(float(v) for v in grid)
        try:
            PerTaskSettings(**given).check()
        except (ClsweepError, TypeError) as exc:
            key = next((k for k in given if k in str(exc)), "drop")
            self.fail(f"selection.{key}", str(exc), "see docs/selection.md for the valid ranges")
        return Selection(PER_TASK, per_task=tuple(sorted(given.items())))

    def _first_tasks(
        self, selection: dict[str, Any], cells: tuple[Cell, ...], params: tuple[Any, ...]
    ) -> Selection:
        if "tasks" not in selection:
            self.fail("selection.tasks", "missing", "say how many first tasks the search sees")
        k = self.count("selection", selection, "tasks", 1, low=1, high=MAX_TASKS)
        for cell in cells:
            if k >= cell.n_tasks:
                self.fail(
                    "selection.tasks",
                    f"{k}, but cell {cell.key} has {cell.n_tasks} tasks, so none would be "
                    "left to learn and report",
                    f"use a value below {min(c.n_tasks for c in cells)} or grid.n_tasks above {k}",
                )
        method_params = sorted(p.name for p in params if p.is_hyperparam)
        if k == 1 and method_params:
            self.fail(
                "selection.tasks",
                f"1, but the search sets method hyperparameters ({', '.join(method_params)}) "
                "that act only from the second task on and cannot be chosen from one task",
                "use tasks: 2 or more, or fix those hyperparameters under hyperparams",
            )
        return Selection(FIRST_TASKS, tasks=k)

    def _transfer(
        self,
        selection: dict[str, Any],
        methods: tuple[str, ...],
        cells: tuple[Cell, ...],
        train: dict[str, Any],
    ) -> Selection:
        evaluate = selection.get("evaluate")
        fix = "write e.g. `evaluate: {benchmark: permuted-mnist}` (benchmark, scenario, n_tasks)"
        if not isinstance(evaluate, dict) or not evaluate:
            self.fail("selection.evaluate", f"expected a mapping, got {shown(evaluate)}", fix)
        self.keys("selection.evaluate", evaluate, SECTION_KEYS["grid"])
        kinds = {
            "benchmark": (str, BENCHMARKS),
            "scenario": (str, SCENARIOS),
            "n_tasks": (int, None),
        }
        for key, value in evaluate.items():
            kind, valid = kinds[key]
            if not isinstance(value, kind) or isinstance(value, bool):
                self.fail(f"selection.evaluate.{key}", f"expected one {kind.__name__}, got "
                          f"{shown(value)}", fix)  # fmt: skip
            if valid is not None and value not in valid:
                self.fail(f"selection.evaluate.{key}", f"unknown {key} {shown(value)}",
                          f"use one of: {', '.join(valid)}")  # fmt: skip
        chosen = Selection(TRANSFER, evaluate=tuple(sorted(evaluate.items())))
        for cell in cells:
            target = chosen.final_cell(cell)
            if target == cell:
                self.fail(
                    "selection.evaluate",
                    f"cell {cell.key} would be evaluated on itself",
                    "name a benchmark, scenario or n_tasks that differs from the grid's",
                )
            for method in methods:
                self.run_config(
                    {**train, **dataclasses.asdict(target), "method": method},
                    "selection.evaluate",
                    f"{method} on the evaluation cell {target.key}: ",
                    "evaluate on a cell every method of the space can run",
                )
        return chosen
