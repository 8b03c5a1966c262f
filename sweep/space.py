"""YAML search space -> a validated, immutable sweep spec.

Every mistake a user can make in a space file is caught here, before Ray starts, and reported as
one line naming the file, the key and the fix (``SpaceError``). Nothing in this module imports Ray,
so validating a space (and ``--dry-run``) costs a fraction of a second.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml

from cl_core.config import RunConfig
from cl_core.data import BENCHMARKS, SCENARIOS
from cl_core.errors import ClsweepError
from cl_core.methods import METHODS
from cl_core.params import HyperParam
from sweep.errors import SpaceError

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
# Only these metrics are defined from validation data; searches never select on test.
OBJECTIVE_METRICS = {
    "val_avg_acc": "max",
    "val_bwt": "max",
    "val_fwt": "max",
    "val_forgetting": "min",
    "val_plasticity": "max",
}
SAMPLERS = ("tpe", "random", "cmaes", "nsga2", "grid")
SCHEDULERS = ("asha",)
SECTION_KEYS = {
    "objective": ("metric", "mode"),
    "sampler": ("name", "seed"),
    "budget": ("trials", "time_limit_s"),
    "early_stopping": ("scheduler", "grace_tasks", "reduction_factor"),
    "resources": ("cpus", "gpus", "max_concurrent"),
    "final": ("top_k", "seeds", "seed_base"),
    "grid": ("benchmark", "scenario", "n_tasks"),
}


@dataclass(frozen=True)
class Param:
    """One searched parameter: a method hyperparameter (column ``hp_<name>``) or a train setting.

    ``methods`` lists the space's methods it applies to: all of them for a train setting, those
    that declare it for a hyperparameter (with ``method: [er, derpp]``, ``alpha`` is searched for
    DER++ only). Empty means all (a Param built by hand).
    """

    name: str
    is_hyperparam: bool
    distribution: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    methods: tuple[str, ...] = ()

    def applies_to(self, method: str) -> bool:
        return not self.methods or method in self.methods

    @property
    def column(self) -> str:
        return f"hp_{self.name}" if self.is_hyperparam else self.name

    def optuna_distribution(self) -> optuna.distributions.BaseDistribution:
        """The Optuna distribution this parameter is sampled from."""
        if self.distribution == "categorical":
            return optuna.distributions.CategoricalDistribution(list(self.choices))
        if self.distribution == "int":
            return optuna.distributions.IntDistribution(
                int(self.low), int(self.high), log=self.log, step=int(self.step or 1)
            )
        return optuna.distributions.FloatDistribution(
            self.low, self.high, log=self.distribution == "loguniform", step=self.step
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "column": self.column,
            "distribution": self.distribution,
        }
        if self.methods:
            out["methods"] = list(self.methods)
        if self.distribution == "categorical":
            out["choices"] = list(self.choices)
        else:
            out.update(
                low=self.low, high=self.high, log=self.log or self.distribution == "loguniform"
            )
            if self.step is not None:
                out["step"] = self.step
        return out


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


def find_space_file(path: str | Path) -> Path:
    """``path`` as given, else the file of that name shipped in ``search_spaces/``."""
    given = Path(path)
    if given.is_file():
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


def load_space(
    path: str | Path, overrides: dict[str, Any] | None = None, sets: list[str] | tuple = ()
) -> SweepSpec:
    """Read, override (``--set key=value`` and CLI flags as dotted keys), validate."""
    file = find_space_file(path)
    label = file.name
    try:
        raw = parse_yaml(file.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}" if mark else "YAML"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpaceError(
            label,
            line,
            f"cannot parse YAML ({problem})",
            "fix the syntax (indentation, colons, brackets)",
        ) from None
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
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise SpaceError(
                label, "--set", f"{text!r} is not key=value", "write it like --set budget.trials=10"
            )
        _set_dotted(raw, key.strip(), parse_yaml(value), label)
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(raw, key, value, label)
    return _Validator(label, given).validate(raw, default_name=file.stem, path=str(file))


def _set_dotted(raw: dict[str, Any], key: str, value: Any, label: str) -> None:
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise SpaceError(
                label,
                key,
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
    return f"valid keys: {', '.join(valid)}"


class _Validator:
    """Checks one raw space dict section by section; the first problem raises."""

    def __init__(self, label: str, given: dict[str, Any]) -> None:
        self.label = label
        self.given = given

    def fail(self, key: str, problem: str, fix: str) -> typing.NoReturn:
        raise SpaceError(self.label, key, problem, fix)

    def validate(self, raw: dict[str, Any], default_name: str, path: str) -> SweepSpec:
        self.keys("", raw, TOP_KEYS)
        name = raw.get("name", default_name)
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            self.fail(
                "name",
                f"{name!r} is not a usable folder name",
                "use letters, digits, '-', '_' or '.'",
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
        final = self.final(self.section(raw, "final"))
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
            final_top_k=final[0],
            final_seeds=final[1],
            final_seed_base=final[2],
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
                f"expected a mapping, got {type(value).__name__} {value!r}",
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
        fix: str = "",
    ) -> Any:
        kind = "an integer" if integer else "a number"
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok or (not integer and math.isnan(value)):
            self.fail(
                key,
                f"expected {kind}, got {type(value).__name__} {value!r}",
                fix or f"write {kind}",
            )
        if low is not None and (value < low or (low_open and value == low)):
            bound = f"> {low:g}" if low_open else f">= {low:g}"
            self.fail(key, f"must be {bound}, got {value!r}", fix or f"use a value {bound}")
        return value

    def name_list(self, key: str, value: Any, valid: typing.Iterable[str]) -> list[str]:
        values = value if isinstance(value, list) else [value]
        if not values:
            self.fail(key, "empty list", f"list at least one of: {', '.join(valid)}")
        for item in values:
            if item not in valid:
                self.fail(key, f"unknown value {item!r}", suggest(str(item), valid))
        return values

    # -- sections --------------------------------------------------------------------------------

    def methods(self, method: Any) -> tuple[str, ...]:
        """One method, or a list (e.g. the finetune and joint bounds), each searched on its own."""
        if method is None:
            self.fail("method", "missing", f"add `method: <one of {', '.join(METHODS)}>`")
        methods = method if isinstance(method, list) else [method]
        if not methods or len(set(map(str, methods))) != len(methods):
            self.fail(
                "method", f"{method!r} is empty or lists a method twice", "name each method once"
            )
        for name in methods:
            if name not in METHODS:
                self.fail("method", f"unknown method {name!r}", suggest(str(name), METHODS))
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
        """Refuse a value whose YAML type cannot be the RunConfig field's type."""
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
                f"expected {origin.__name__}, got {type(value).__name__} {value!r}",
                f"write a {origin.__name__} value for {name}",
            )

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
                try:
                    METHODS[method].hyperparams[key].check(value, method)
                except ClsweepError as exc:
                    self.fail(f"hyperparams.{key}", str(exc), "use a value in the valid range")
        return dict(given)

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
            self.number("grid.n_tasks", n, integer=True, low=1)
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
                self.check_setting_range(key, param, train, hints[name])
            params.append(param)
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
                f"expected a mapping, got {dist!r}",
                "write e.g. `{type: loguniform, low: 1, high: 1e7}`",
            )
        kind = dist.get("type")
        if kind not in DISTRIBUTIONS:
            fix = (
                suggest(str(kind), DISTRIBUTIONS)
                if kind
                else "add `type: " + "|".join(DISTRIBUTIONS) + "`"
            )
            self.fail(f"{key}.type", f"unknown distribution {kind!r}", fix)
        self.keys(key, dist, DIST_KEYS[kind])
        if kind == "categorical":
            choices = dist.get("choices")
            if not isinstance(choices, list) or not choices:
                self.fail(f"{key}.choices", "missing or empty", "list at least one value")
            for choice in choices:
                if not (choice is None or isinstance(choice, (bool, int, float, str))):
                    self.fail(
                        f"{key}.choices",
                        f"{choice!r} is not a plain value",
                        "use numbers, strings or booleans (hidden sizes as '400,400')",
                    )
            if len(set(map(repr, choices))) != len(choices):
                self.fail(f"{key}.choices", "a value appears twice", "list each value once")
            return Param(name, is_hp, kind, choices=tuple(choices))
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
        log = kind == "loguniform" or bool(dist.get("log", False))
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
        return Param(name, is_hp, kind, low=low, high=high, step=step, log=log)

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

    def check_setting_range(self, key: str, param: Param, train: dict[str, Any], hint: Any) -> None:
        base, _ = _field_type(hint)
        expected = {int: ("int",), float: ("uniform", "loguniform")}.get(base, ())
        expected = (*expected, "categorical")  # listed values suit every type (e.g. the grid)
        if param.distribution not in expected:
            self.fail(
                f"{key}.type",
                f"train setting {param.name!r} takes a {base.__name__}, not a {param.distribution}",
                f"use type: {' or '.join(expected)}",
            )
        for value in param.choices or (param.low, param.high):
            try:
                for cell in self.cell_settings:
                    settings = {**train, **cell, param.name: value}
                    if param.name == "iterations":
                        settings["epochs"] = None
                    RunConfig.from_dict(settings).validated()
            except ClsweepError as exc:
                self.fail(
                    key, f"{value!r} is not valid: {exc}", "keep the range inside valid values"
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
                    f"{m!r} selects on test data",
                    f"select on validation: use {m.replace('test_', 'val_', 1)!r}",
                )
            if m not in OBJECTIVE_METRICS:
                self.fail(
                    "objective.metric", f"unknown metric {m!r}", suggest(str(m), OBJECTIVE_METRICS)
                )
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
            if m not in ("max", "min"):
                self.fail("objective.mode", f"unknown mode {m!r}", "use max or min")
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
                f"expected a name or a mapping, got {sampler!r}",
                f"write e.g. `sampler: tpe` (one of {', '.join(SAMPLERS)})",
            )
        self.keys("sampler", sampler, SECTION_KEYS["sampler"])
        name = sampler.get("name", "tpe")
        if name not in SAMPLERS:
            self.fail("sampler", f"unknown sampler {name!r}", suggest(str(name), SAMPLERS))
        seed = sampler.get("seed", 0)
        if seed is not None:
            self.number("sampler.seed", seed, integer=True, low=0)
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
        trials = self.number("budget.trials", budget.get("trials", default), integer=True, low=1)
        limit = budget.get("time_limit_s")
        if limit is not None:
            limit = float(self.number("budget.time_limit_s", limit, low=0, low_open=True))
        return trials, limit

    def early_stopping(self, early: Any, metrics: tuple, cells: tuple[Cell, ...]) -> dict | None:
        if early is None or early is False:
            return None
        if not isinstance(early, dict):
            self.fail(
                "early_stopping",
                f"expected a mapping or false, got {early!r}",
                "write `early_stopping: {scheduler: asha, grace_tasks: 1}` or false",
            )
        self.keys("early_stopping", early, SECTION_KEYS["early_stopping"])
        scheduler = early.get("scheduler", "asha")
        if scheduler not in SCHEDULERS:
            self.fail(
                "early_stopping.scheduler",
                f"unknown scheduler {scheduler!r}",
                suggest(str(scheduler), SCHEDULERS),
            )
        if metrics[0] != "val_avg_acc":
            self.fail(
                "objective.metric",
                f"early stopping compares {metrics[0]} after each task, "
                "but only val_avg_acc is defined before the last task",
                "put val_avg_acc first or set early_stopping: false",
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
        )
        return {"scheduler": scheduler, "grace_tasks": grace, "reduction_factor": float(factor)}

    def resources(self, resources: dict[str, Any]) -> tuple[float, float, int | None]:
        cpus = self.number("resources.cpus", resources.get("cpus", 1), low=0, low_open=True)
        gpus = self.number("resources.gpus", resources.get("gpus", 0), low=0)
        concurrent = resources.get("max_concurrent")
        if concurrent is not None:
            self.number("resources.max_concurrent", concurrent, integer=True, low=1)
        return float(cpus), float(gpus), concurrent

    def final(self, final: dict[str, Any]) -> tuple[int, int, int]:
        top_k = self.number("final.top_k", final.get("top_k", 0), integer=True, low=0)
        seeds = self.number("final.seeds", final.get("seeds", 3), integer=True, low=1)
        base = self.number("final.seed_base", final.get("seed_base", 1000), integer=True, low=0)
        return top_k, seeds, base


def _field_type(hint: Any) -> tuple[type, bool]:
    """(base type, may be None) of a RunConfig annotation: ``int | None`` -> (int, True)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = typing.get_args(hint)
        base = next(a for a in args if a is not type(None))
        return typing.get_origin(base) or base, type(None) in args
    return typing.get_origin(hint) or hint, False


class _Loader(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, which reads `1e7` and `1e-3` as strings; read them as floats."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[0-9][0-9_]*[eE][-+]?[0-9]+|\.inf|\.Inf|\.INF|\.nan|\.NaN|\.NAN)$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """Parse YAML with scientific notation as numbers (space files and --set values)."""
    return yaml.load(text, Loader=_Loader)
