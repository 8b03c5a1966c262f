"""The ``search:`` section: each searched parameter, its distribution, and its range checked.

A method hyperparameter's distribution must suit its declared kind and stay inside its valid
values; a searched train setting must give a run the trainer accepts with the fixed settings and
every cell, whatever the other searched settings are. Optuna would adjust a bad range silently
(a warning) or fail after Ray started, so each distribution is built once here, warnings as
errors.
"""

from __future__ import annotations

import dataclasses
import itertools
import typing
import warnings
from typing import Any

import optuna

from cl_core.config import RunConfig
from cl_core.errors import ClsweepError
from cl_core.methods import METHODS
from cl_core.params import HyperParam
from cl_core.validation import validated
from contract import SearchParam
from sweep.errors import shown
from sweep.space.checks import Checks, field_type, suggest
from sweep.space.keys import DIST_KEYS, DISTRIBUTIONS, MAX_SETTING_COMBINATIONS, TRAIN_KEYS


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
    """A searched parameter; a method hyperparameter's column is ``hp_<name>``."""
    column = f"hp_{name}" if is_hyperparam else name
    log = bool(values.pop("log", False)) or distribution == "loguniform"
    return SearchParam(name, column, distribution, log=log, **values)


def candidates(param: SearchParam) -> tuple[Any, ...]:
    """The values a searched parameter's check tries: its listed values, else its range ends."""
    return tuple(param.choices) if param.choices else (param.low, param.high)


class SearchChecks(Checks):
    """Checks of the searched parameters (the section validators build on them)."""

    def search(
        self,
        methods: tuple[str, ...],
        search: dict[str, Any],
        train: dict[str, Any],
        hyperparams: dict[str, Any],
        cell_settings: list[dict[str, Any]],
    ) -> tuple[SearchParam, ...]:
        """Searched parameters: a train setting applies to every listed method, a hyperparameter
        to the listed methods that declare it (each method's study searches only its own).
        ``cell_settings``: each cell's benchmark, scenario and task count (settings such as pad32
        depend on the benchmark)."""
        hints = typing.get_type_hints(RunConfig)
        params = []
        settings: list[
            tuple[str, SearchParam, Any]
        ] = []  # searched train settings, checked together
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
            self.check_setting_range(key, param, train, hint, others, cell_settings)
        for method in methods if params else ():  # (an empty search is refused later)
            if not any(p.applies_to(method) for p in params):
                self.fail(
                    "search",
                    f"nothing is searched for method {method}",
                    "search one of its hyperparameters or a train setting such as lr",
                )
        return tuple(params)

    def distribution(self, key: str, name: str, dist: Any, is_hp: bool) -> SearchParam:
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

    def categorical(self, key: str, name: str, choices: Any, is_hp: bool) -> SearchParam:
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

    def optuna_accepts(self, key: str, param: SearchParam) -> None:
        """Optuna would adjust a range silently (a warning) or raise later, after Ray started."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                optuna_distribution(param)
        except (ValueError, TypeError, OverflowError, UserWarning) as exc:
            self.fail(key, f"not a valid distribution ({exc})", "adjust the bounds or the step")

    def check_hyperparam_range(
        self, key: str, param: SearchParam, hp: HyperParam, method: str
    ) -> None:
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
            self.numeric_choices(key, param, hp.kind)
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

    def numeric_choices(self, key: str, param: SearchParam, kind: str) -> None:
        """Refuse a listed value of an ``int`` or ``float`` parameter that is not one (a string
        such as ``"100 0"``, a boolean)."""
        expected = "an integer" if kind == "int" else "a number"
        for choice in param.choices:
            if (
                isinstance(choice, bool)
                or not isinstance(choice, (int, float))
                or (kind == "int" and not isinstance(choice, int))
            ):
                self.fail(
                    f"{key}.choices",
                    f"{choice!r} is not {expected}",
                    f"list {expected.split()[-1]}s for {param.name}",
                )

    def check_setting_range(
        self,
        key: str,
        param: SearchParam,
        train: dict[str, Any],
        hint: Any,
        others: list[SearchParam],
        cell_settings: list[dict[str, Any]],
    ) -> None:
        """Refuse a searched setting's value that no run could take: invalid with the fixed and
        the cell's settings whatever the other searched settings are (their defaults, each of
        their listed values or range ends). Settings may depend on each other: a fuzzy stream's
        transition must fit in its iterations, and both may be searched."""
        base, _ = field_type(hint)
        expected = {int: ("int",), float: ("uniform", "loguniform")}.get(base, ())
        expected = (*expected, "categorical")  # listed values suit every type (e.g. the grid)
        if param.distribution not in expected:
            self.fail(
                f"{key}.type",
                f"train setting {param.name!r} takes a {base.__name__}, not a {param.distribution}",
                f"use type: {' or '.join(expected)}",
            )
        if base in (int, float) and param.distribution == "categorical":
            self.numeric_choices(key, param, "int" if base is int else "float")
        combinations: list[dict[str, Any]] = [{}]  # the other searched settings at defaults
        if others:
            names = [other.name for other in others]
            product = itertools.product(*(candidates(other) for other in others))
            combinations += [
                dict(zip(names, values, strict=True))
                for values in itertools.islice(product, MAX_SETTING_COMBINATIONS)
            ]
        for value in candidates(param):
            for cell in cell_settings:
                first_error = None
                for combination in combinations:
                    settings = {**train, **cell, **combination, param.name: value}
                    if param.name == "iterations":
                        settings["epochs"] = None
                    try:
                        validated(RunConfig.from_dict(settings))
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
