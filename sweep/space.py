"""YAML search space -> a validated, immutable sweep spec.

Every mistake a user can make in a space file is caught here, before Ray starts, and reported as
one line naming the file, the key and the fix (``SpaceError``): unreadable or binary files,
YAML that is malformed, repeats a key, nests too deep or expands through aliases
(:mod:`sweep.yaml_safe`), wrong types (a boolean is never a number), non-finite numbers, names
that are not names, values outside what the trainer accepts, and budgets, task counts or seeds
beyond what a sweep can run or record. ``--set`` values go through the same reader and checks.
Nothing in this module imports Ray, so validating a space (and ``--dry-run``) costs a fraction of
a second. What the machine or the cluster can give (CPUs, GPUs) is checked by
:mod:`sweep.resources`, also before Ray starts.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import importlib.util
import itertools
import json
import math
import re
import types
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from cl_core.config import RunConfig
from cl_core.data import BENCHMARKS, SCENARIOS
from cl_core.errors import ClsweepError
from cl_core.methods import METHODS
from cl_core.params import HyperParam
from contract import METRICS, SearchParam, objective_metrics
from sweep.errors import SpaceError, shown
from sweep.yaml_safe import YamlRefused, load_yaml

SPACES_DIR = Path(__file__).resolve().parent.parent / "search_spaces"

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
    "loggers",
)
# RunConfig fields a space may not set under `train:`: the grid, the method and the resources
# decide them, and the data root is a property of the machine (--data-root / CLSWEEP_DATA).
NOT_TRAIN_KEYS = {
    "benchmark": "grid.benchmark",
    "scenario": "grid.scenario",
    "n_tasks": "grid.n_tasks",
    "method": "method",
    "method_params": "hyperparams",
    "device": "resources.gpus",
    "data_root": "--data-root",
}
TRAIN_KEYS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.name not in NOT_TRAIN_KEYS)
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
    "resources": ("cpus", "gpus", "max_concurrent", "population"),
    "final": ("top_k", "seeds", "seed_base"),
    "grid": ("benchmark", "scenario", "n_tasks"),
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

# Limits of what one sweep can run and record. Beyond them a sweep would not end in any useful
# time (or its numbers would not fit the Parquet columns); the messages say how to split it.
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
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


Param = SearchParam
"""A searched parameter (the contract's description of it, also written to sweep.json)."""


def optuna_distribution(param: SearchParam) -> optuna.distributions.BaseDistribution:
    """The Optuna distribution ``param`` is sampled from."""
    if param.categorical:
        return optuna.distributions.CategoricalDistribution(list(param.choices))
    if param.integer:
        return optuna.distributions.IntDistribution(
            int(param.low), int(param.high), log=param.log, step=int(param.step or 1)
        )
    return optuna.distributions.FloatDistribution(
        param.low, param.high, log=param.distribution == "loguniform", step=param.step
    )


def make_param(name: str, is_hyperparam: bool, distribution: str, **values: Any) -> SearchParam:
    column = f"hp_{name}" if is_hyperparam else name
    log = bool(values.pop("log", False)) or distribution == "loguniform"
    return SearchParam(name, column, distribution, log=log, **values)


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
    params: tuple[Param, ...]
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
        """The RunConfig dict of ``method`` on ``cell`` before searched values are filled in."""
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

    def params_for(self, method: str) -> tuple[Param, ...]:
        """The parameters searched for ``method`` (its own study searches exactly these)."""
        return tuple(p for p in self.params if p.applies_to(method))

    def fixed_for(self, method: str) -> dict[str, Any]:
        """The fixed hyperparameters that ``method`` declares."""
        declared = METHODS[method].hyperparams
        return {k: v for k, v in self.hyperparams.items() if k in declared}

    def grid_size(self, method: str | None = None) -> int:
        """Combinations of the listed values (of ``method``'s parameters; default: the largest)."""
        if method is None:
            return max(self.grid_size(m) for m in self.methods)
        return math.prod(len(p.choices) for p in self.params_for(method))


def scale_notes(spec: SweepSpec) -> list[str]:
    """Hints for a method hyperparameter whose natural scale is logarithmic (``HyperParam.log``)
    that the space searches on a linear one over two decades or more: almost every trial then
    lands in the top decade, and the small values the method is often best at are never tried.
    Not an error: a linear search can be what the user wants."""
    notes = []
    for param in spec.params:
        if not param.is_hyperparam or param.distribution != "uniform" or param.log:
            continue
        declared = [
            METHODS[m].hyperparams[param.name]
            for m in spec.methods
            if param.applies_to(m) and param.name in METHODS[m].hyperparams
        ]
        low, high = float(param.low), float(param.high)
        if not any(hp.log for hp in declared) or low < 0 or (low > 0 and high / low < 100):
            continue
        top = (high - max(low, high / 10)) / (high - low)
        notes.append(
            f"note: search.{param.name} is uniform over [{low:g}, {high:g}], so {top:.0%} of its "
            f"trials fall in the top decade [{high / 10:g}, {high:g}]; {param.name} is a log-scale "
            "parameter (python -m cl_core --list-methods): `type: loguniform` with low > 0 gives "
            "every decade the same share"
        )
    return notes


def find_space_file(path: str | Path) -> Path:
    """``path`` as given, else the file of that name shipped in ``search_spaces/``."""
    given = Path(path)
    if given.exists():
        if given.is_dir():
            raise SpaceError(str(path), "", "is a folder, not a file", "give a YAML file")
        return given
    shipped = SPACES_DIR / given.name
    if given.parent == Path(".") and shipped.is_file():
        return shipped
    names = sorted(p.name for p in SPACES_DIR.glob("*.yaml"))
    raise SpaceError(
        str(path),
        "",
        "no such file (also looked in search_spaces/)",
        f"give a path to a YAML file or one of: {', '.join(names)}",
    )


def read_space_text(file: Path, label: str) -> str:
    """The file's text, refusing what is not a small UTF-8 text file."""
    try:
        with open(file, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SpaceError(
            label, "", f"cannot be read ({exc.strerror or exc})", "check the path and permissions"
        ) from None
    if len(data) > MAX_FILE_BYTES:
        raise SpaceError(
            label,
            "",
            f"larger than {MAX_FILE_BYTES // 1000} kB, too large for a space file",
            "give the YAML search space, not a data or log file",
        )
    if b"\x00" in data:
        raise SpaceError(label, "", "is a binary file", "give a YAML text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpaceError(
            label,
            f"byte {exc.start}",
            "is not UTF-8 text",
            "save the file as UTF-8 (most editors offer it under 'encoding')",
        ) from None


def parse_space_yaml(text: str, label: str, key: str = "") -> Any:
    """YAML through the bounded reader; errors name ``key`` (e.g. a --set) or the line."""
    try:
        return load_yaml(text)
    except YamlRefused as exc:
        where = f"{key} ({exc.where})" if key else exc.where
        raise SpaceError(label, where, exc.problem, exc.fix) from None


def load_space(
    path: str | Path, overrides: dict[str, Any] | None = None, sets: list[str] | tuple = ()
) -> SweepSpec:
    """Read, override (``--set key=value`` and CLI flags as dotted keys), validate."""
    file = find_space_file(path)
    label = file.name
    raw = parse_space_yaml(read_space_text(file, label), label)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpaceError(
            label,
            "(top level)",
            f"expected a mapping, got {type(raw).__name__}",
            "write `key: value` pairs such as `method: ewc`",
        )
    given = copy.deepcopy(raw)  # sweep.json keeps the file as given, before overrides
    for text in sets:
        key, sep, value = str(text).partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpaceError(
                label,
                "--set",
                f"{shown(text)} is not key=value",
                "write it like --set budget.trials=10",
            )
        _set_dotted(raw, key, parse_space_yaml(value, label, f"--set {key}"), label, "--set ")
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(raw, key, value, label)
    return _Validator(label, given).validate(raw, default_name=file.stem, path=str(file))


def _set_dotted(raw: dict[str, Any], key: str, value: Any, label: str, via: str = "") -> None:
    parts = key.split(".")
    if any(not part for part in parts):
        raise SpaceError(
            label,
            f"{via}{key}",
            "is not a dotted key",
            "name a key by its path, e.g. budget.trials=10",
        )
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise SpaceError(
                label,
                f"{via}{key}",
                f"{part!r} is not a section",
                "override a key inside a section, e.g. budget.trials=10",
            )
        node = child
    node[parts[-1]] = value


def suggest(name: str, valid: typing.Iterable[str]) -> str:
    """A "did you mean" fix for an unknown name."""
    valid = list(valid)
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"choose one of: {', '.join(valid)}"


class _Validator:
    """Checks one raw space dict section by section; the first problem raises."""

    def __init__(self, label: str, given: dict[str, Any]) -> None:
        self.label = label
        self.given = given

    def fail(self, key: str, problem: str, fix: str) -> typing.NoReturn:
        raise SpaceError(self.label, key, problem, fix)

    def validate(self, raw: dict[str, Any], default_name: str, path: str) -> SweepSpec:
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
        self.cell_settings = [
            {"benchmark": c.benchmark, "scenario": c.scenario, "n_tasks": c.n_tasks} for c in cells
        ]
        for settings in self.cell_settings:
            self.run_config({**train, **settings}, "train")
        params = self.search(methods, self.section(raw, "search"), train, hyperparams)
        if any(p.name == "iterations" for p in params) and "epochs" not in train:
            train = {**train, "epochs": None}  # searched iterations replace the default epochs
        metrics, modes = self.objective(self.section(raw, "objective"), train)
        sampler, seed = self.sampler(raw.get("sampler", "tpe"), metrics, params)
        resources = self.resources(self.section(raw, "resources"))
        trials, time_limit = self.budget(self.section(raw, "budget"), sampler, params)
        early = self.early_stopping(raw.get("early_stopping"), metrics, cells)
        final = self.final(self.section(raw, "final"), trials)
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
            final_top_k=final[0],
            final_seeds=final[1],
            final_seed_base=final[2],
            loggers=loggers,
        )

    # -- helpers ---------------------------------------------------------------------------------

    def keys(self, where: str, section: dict[str, Any], valid: typing.Iterable[str]) -> None:
        valid = tuple(valid)
        for key in section:
            if key not in valid:
                full = f"{where}.{key}" if where else str(key)
                self.fail(full, "unknown key", suggest(str(key), valid))

    def section(self, raw: dict[str, Any], name: str) -> dict[str, Any]:
        value = raw.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(
                name,
                f"expected a mapping, got {type(value).__name__} {shown(value)}",
                f"write `{name}:` followed by indented `key: value` lines",
            )
        if name in SECTION_KEYS:
            self.keys(name, value, SECTION_KEYS[name])
        return value

    def number(
        self,
        key: str,
        value: Any,
        *,
        integer: bool = False,
        low: float | None = None,
        low_open: bool = False,
        high: float | None = None,
        fix: str = "",
        why: str = "",
        high_fix: str = "",
    ) -> Any:
        """``value`` if it is a finite number (an integer if asked) within [low, high].

        Booleans are refused (YAML reads `true` as a boolean, Python would take it as 1), and so
        are NaN and infinities; integers must fit the int64 columns of trials.parquet.
        """
        kind = "an integer" if integer else "a number"
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            self.fail(
                key,
                f"expected {kind}, got {type(value).__name__} {shown(value)}",
                fix or f"write {kind}",
            )
        if not math.isfinite(value):
            self.fail(key, f"must be finite, got {value!r}", fix or f"write a finite {kind[2:]}")
        if integer and abs(value) > MAX_INT:
            self.fail(key, f"{shown(value)} does not fit a 64-bit integer", fix or "use less")
        if low is not None and (value < low or (low_open and value == low)):
            bound = f"> {low:g}" if low_open else f">= {low:g}"
            self.fail(key, f"must be {bound}, got {shown(value)}", fix or f"use a value {bound}")
        if high is not None and value > high:
            self.fail(
                key,
                f"{shown(value)} is more than {high:g}{why}",
                high_fix or fix or f"use a value <= {high:g}",
            )
        return value

    def text(self, key: str, value: Any, fix: str) -> str:
        if not isinstance(value, str):
            self.fail(key, f"expected a name, got {type(value).__name__} {shown(value)}", fix)
        return value

    def name(self, name: Any) -> str:
        """The sweep's folder name: a plain name, never '.', '..' or a path."""
        fix = f"use up to {MAX_NAME} letters, digits, '-', '_' or '.', starting with a letter/digit"
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or len(name) > MAX_NAME:
            self.fail("name", f"{shown(name)} is not a usable folder name", fix)
        return name

    def name_list(
        self, key: str, value: Any, valid: typing.Iterable[str], what: str = "value"
    ) -> list[str]:
        valid = tuple(valid)
        values = value if isinstance(value, list) else [value]
        if not values:
            self.fail(key, "empty list", f"list at least one of: {', '.join(valid)}")
        for item in values:
            if not isinstance(item, str):
                self.fail(
                    key,
                    f"expected a name, got {type(item).__name__} {shown(item)}",
                    f"write one of: {', '.join(valid)} (or a list of them)",
                )
            if item not in valid:
                self.fail(key, f"unknown {what} {shown(item)}", suggest(item, valid))
        return values

    # -- sections --------------------------------------------------------------------------------

    def methods(self, method: Any) -> tuple[str, ...]:
        """One method, or a list (e.g. the finetune and joint bounds), each searched on its own."""
        if method is None:
            self.fail("method", "missing", f"add `method: <one of {', '.join(METHODS)}>`")
        methods = self.name_list("method", method, METHODS, "method")
        if len(set(methods)) != len(methods):
            self.fail("method", f"{shown(method)} lists a method twice", "name each method once")
        return tuple(methods)

    def owners(self, methods: tuple[str, ...], name: str) -> tuple[str, ...]:
        """The listed methods that declare hyperparameter ``name`` (it applies to those only)."""
        return tuple(m for m in methods if name in METHODS[m].hyperparams)

    def no_owner(self, key: str, methods: tuple[str, ...], name: str, settings: bool) -> None:
        """Refuse a hyperparameter that no listed method declares (and, for ``settings``, that
        is no train setting either), suggesting a close name."""
        valid = list(dict.fromkeys(h for m in methods for h in METHODS[m].hyperparams))
        candidates = [*valid, *TRAIN_KEYS] if settings else valid
        close = difflib.get_close_matches(str(name), candidates, n=1, cutoff=0.6)
        if close:
            fix = f"did you mean '{close[0]}'?"
        else:
            whose = "its" if len(methods) == 1 else "their"
            fix = f"{whose} hyperparameters: {', '.join(valid) or '(none)'}"
            fix += "; or settings" if settings else ""
        if len(methods) == 1:
            problem = f"method {methods[0]} has no hyperparameter {name!r}"
        else:
            problem = f"none of the methods {', '.join(methods)} has a hyperparameter {name!r}"
        self.fail(key, problem, fix)

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
        base, optional = _field_type(hint)
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

    def run_config(self, settings: dict[str, Any], key: str) -> None:
        try:
            RunConfig.from_dict(settings).validated()
        except ClsweepError as exc:
            self.fail(key, str(exc), "change the value to one the trainer accepts")

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

    def search(
        self,
        methods: tuple[str, ...],
        search: dict[str, Any],
        train: dict[str, Any],
        hyperparams: dict[str, Any],
    ) -> tuple[Param, ...]:
        """Searched parameters: a train setting applies to every listed method, a hyperparameter
        to the listed methods that declare it (each method's study searches only its own)."""
        hints = typing.get_type_hints(RunConfig)
        params = []
        settings: list[tuple[str, Param, Any]] = []  # searched train settings, checked together
        for name, dist in search.items():
            key = f"search.{name}"
            if name in hyperparams or name in train:
                where = "hyperparams" if name in hyperparams else "train"
                self.fail(key, f"is also fixed under {where}", "search it or fix it, not both")
            owners = self.owners(methods, name)
            if not owners and name not in TRAIN_KEYS:
                self.no_owner(key, methods, name, settings=True)
            param = self.distribution(key, name, dist, bool(owners))
            param = dataclasses.replace(param, methods=owners or methods)
            for method in owners:
                self.check_hyperparam_range(key, param, METHODS[method].hyperparams[name], method)
            if not owners:
                settings.append((key, param, hints[name]))
            params.append(param)
        for key, param, hint in settings:
            others = [other for _, other, _ in settings if other is not param]
            self.check_setting_range(key, param, train, hint, others)
        for method in methods if params else ():  # (an empty search is refused later)
            if not any(p.applies_to(method) for p in params):
                self.fail(
                    "search",
                    f"nothing is searched for method {method}",
                    "search one of its hyperparameters or a train setting such as lr",
                )
        return tuple(params)

    def distribution(self, key: str, name: str, dist: Any, is_hp: bool) -> Param:
        if not isinstance(dist, dict):
            self.fail(
                key,
                f"expected a mapping, got {shown(dist)}",
                "write e.g. `{type: loguniform, low: 1, high: 1e7}`",
            )
        kind = dist.get("type")
        if not isinstance(kind, str) or kind not in DISTRIBUTIONS:
            fix = (
                suggest(str(kind), DISTRIBUTIONS)
                if kind is not None
                else "add `type: " + "|".join(DISTRIBUTIONS) + "`"
            )
            self.fail(f"{key}.type", f"unknown distribution {shown(kind)}", fix)
        self.keys(key, dist, DIST_KEYS[kind])
        if kind == "categorical":
            return self.categorical(key, name, dist.get("choices"), is_hp)
        for bound in ("low", "high"):
            if bound not in dist:
                self.fail(f"{key}.{bound}", "missing", f"give the {bound} end of the range")
        integer = kind == "int"
        low = self.number(f"{key}.low", dist["low"], integer=integer)
        high = self.number(f"{key}.high", dist["high"], integer=integer)
        if low > high:
            self.fail(key, f"inverted range: low {low:g} > high {high:g}", "swap low and high")
        if low == high:
            self.fail(
                key,
                f"empty range: low = high = {low:g}",
                f"widen it, or fix the value under {'hyperparams' if is_hp else 'train'}",
            )
        log = dist.get("log", False)
        if not isinstance(log, bool):
            self.fail(f"{key}.log", f"expected true or false, got {shown(log)}", "write true")
        log = log or kind == "loguniform"
        if log and low <= 0:
            self.fail(
                f"{key}.low",
                f"log-scale bounds must be > 0, got {low:g}",
                "use a positive low such as 1e-3 (or type: uniform)",
            )
        step = dist.get("step")
        if step is not None:
            step = self.number(f"{key}.step", step, integer=integer, low=0, low_open=True)
            if log:
                self.fail(
                    f"{key}.step",
                    "a step cannot be combined with a log scale",
                    "remove step or log",
                )
            if step > high - low:
                self.fail(
                    f"{key}.step",
                    f"step {step:g} is larger than the range {high - low:g}",
                    "use a smaller step or a categorical list",
                )
        param = make_param(name, is_hp, kind, low=low, high=high, step=step, log=log)
        self.optuna_accepts(key, param)
        return param

    def categorical(self, key: str, name: str, choices: Any, is_hp: bool) -> Param:
        if not isinstance(choices, list) or not choices:
            self.fail(f"{key}.choices", "missing or empty", "list at least one value")
        for choice in choices:
            plain = choice is None or isinstance(choice, (bool, int, float, str))
            if not plain:
                self.fail(
                    f"{key}.choices",
                    f"{shown(choice)} is not a plain value",
                    "use numbers, strings or booleans (hidden sizes as '400,400')",
                )
            if isinstance(choice, (int, float)) and not isinstance(choice, bool):
                self.number(f"{key}.choices", choice)
        if len(set(map(repr, choices))) != len(choices):
            self.fail(f"{key}.choices", "a value appears twice", "list each value once")
        param = make_param(name, is_hp, "categorical", choices=tuple(choices))
        self.optuna_accepts(key, param)
        return param

    def optuna_accepts(self, key: str, param: Param) -> None:
        """Optuna would adjust a range silently (a warning) or raise later, after Ray started."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                optuna_distribution(param)
        except (ValueError, TypeError, OverflowError, UserWarning) as exc:
            self.fail(key, f"not a valid distribution ({exc})", "adjust the bounds or the step")

    def check_hyperparam_range(self, key: str, param: Param, hp: HyperParam, method: str) -> None:
        expected = {
            "float": ("uniform", "loguniform", "categorical"),
            "int": ("int", "categorical"),
            "choice": ("categorical",),
            "bool": ("categorical",),
        }[hp.kind]
        if param.distribution not in expected:
            self.fail(
                f"{key}.type",
                f"{method} hyperparameter {hp.name!r} is a {hp.kind}, not a {param.distribution}",
                f"use type: {' or '.join(expected)}",
            )
        if hp.kind in ("float", "int") and param.distribution == "categorical":
            expected = "an integer" if hp.kind == "int" else "a number"
            for choice in param.choices:
                if (
                    isinstance(choice, bool)
                    or not isinstance(choice, (int, float))
                    or (hp.kind == "int" and not isinstance(choice, int))
                ):
                    self.fail(
                        f"{key}.choices",
                        f"{choice!r} is not {expected}",
                        f"list {expected.split()[-1]}s for {hp.name}",
                    )
        if hp.kind == "bool" and any(not isinstance(c, bool) for c in param.choices):
            self.fail(
                f"{key}.choices", f"{hp.name} takes true or false", "use choices: [true, false]"
            )
        for value in param.choices or (param.low, param.high):
            try:
                hp.check(value, method)
            except ClsweepError:
                self.fail(
                    key,
                    f"{value!r} is outside {method}'s valid values for {hp.name}",
                    f"keep the range inside the {hp.range_text()}",
                )

    def check_setting_range(
        self, key: str, param: Param, train: dict[str, Any], hint: Any, others: list[Param]
    ) -> None:
        """Refuse a searched setting's value that no run could take: invalid with the fixed and
        the cell's settings whatever the other searched settings are (their defaults, each of
        their listed values or range ends). Settings may depend on each other: a fuzzy stream's
        transition must fit in its iterations, and both may be searched."""
        base, _ = _field_type(hint)
        expected = {int: ("int",), float: ("uniform", "loguniform")}.get(base, ())
        expected = (*expected, "categorical")  # listed values suit every type (e.g. the grid)
        if param.distribution not in expected:
            self.fail(
                f"{key}.type",
                f"train setting {param.name!r} takes a {base.__name__}, not a {param.distribution}",
                f"use type: {' or '.join(expected)}",
            )
        combinations: list[dict[str, Any]] = [{}]  # the other searched settings at defaults
        if others:
            names = [other.name for other in others]
            product = itertools.product(*(_candidates(other) for other in others))
            combinations += [
                dict(zip(names, values, strict=True))
                for values in itertools.islice(product, MAX_SETTING_COMBINATIONS)
            ]
        for value in _candidates(param):
            for cell in self.cell_settings:
                first_error = None
                for combination in combinations:
                    settings = {**train, **cell, **combination, param.name: value}
                    if param.name == "iterations":
                        settings["epochs"] = None
                    try:
                        RunConfig.from_dict(settings).validated()
                    except ClsweepError as exc:
                        first_error = first_error or exc
                        continue
                    first_error = None
                    break
                if first_error is not None:
                    self.fail(
                        key,
                        f"{value!r} is not valid: {first_error}",
                        "keep the range inside valid values",
                    )

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

    def sampler(self, sampler: Any, metrics: tuple, params: tuple[Param, ...]) -> tuple[str, Any]:
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
        if not params:
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

    def budget(self, budget: dict[str, Any], sampler: str, params: tuple[Param, ...]) -> tuple:
        default = 20
        if sampler == "grid":  # every combination of the method with the most
            methods = {m for p in params for m in p.methods}
            default = max(
                math.prod(len(p.choices) for p in params if p.applies_to(m)) for m in methods
            )
        trials = self.number(
            "budget.trials",
            budget.get("trials", default),
            integer=True,
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
        grace = self.number(
            "early_stopping.grace_tasks", early.get("grace_tasks", 1), integer=True, low=1
        )
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

    def resources(self, resources: dict[str, Any]) -> tuple[float, float, int | None, int]:
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
        population = self.number(
            "resources.population",
            resources.get("population", 1),
            integer=True,
            low=1,
            high=MAX_POPULATION,
            fix=f"write a whole number from 1 (one configuration per trial) to {MAX_POPULATION}",
        )
        return float(cpus), float(gpus), concurrent, population

    def final(self, final: dict[str, Any], trials: int) -> tuple[int, int, int]:
        top_k = self.number(
            "final.top_k",
            final.get("top_k", 0),
            integer=True,
            low=0,
            high=trials,
            why=f", the search budget (budget.trials: {trials})",
        )
        seeds = self.number(
            "final.seeds", final.get("seeds", 3), integer=True, low=1, high=MAX_FINAL_SEEDS
        )
        base = self.number(
            "final.seed_base",
            final.get("seed_base", 1000),
            integer=True,
            low=0,
            high=MAX_INT - seeds,
        )
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


def _candidates(param: Param) -> tuple[Any, ...]:
    """The values a searched parameter's check tries: its listed values, else its range ends."""
    return tuple(param.choices) if param.choices else (param.low, param.high)


def _field_type(hint: Any) -> tuple[type, bool]:
    """(base type, may be None) of a RunConfig annotation: ``int | None`` -> (int, True)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = typing.get_args(hint)
        base = next(a for a in args if a is not type(None))
        return typing.get_origin(base) or base, type(None) in args
    return typing.get_origin(hint) or hint, False


def parse_yaml(text: str) -> Any:
    """Parse YAML the way space files are read (scientific notation as numbers, bounded)."""
    return load_yaml(text)
