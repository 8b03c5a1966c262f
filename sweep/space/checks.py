"""The checks every section of a space shares: the first problem raises one :class:`SpaceError`.

Each message names the file, the key, the problem and the fix. Numbers are refused when they are
booleans (YAML reads `true` as a boolean, Python would take it as 1), NaN, infinite, outside
their range or too large for the int64 columns of trials.parquet.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from collections.abc import Iterable
from typing import Any

from cl_core.config import RunConfig
from cl_core.errors import ClsweepError
from cl_core.methods import METHODS
from cl_core.validation import validated
from sweep.errors import SpaceError, shown
from sweep.space.keys import MAX_INT, SECTION_KEYS, TRAIN_KEYS


def suggest(name: str, valid: Iterable[str]) -> str:
    """A "did you mean" fix for an unknown name."""
    valid = list(valid)
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"choose one of: {', '.join(valid)}"


def field_type(hint: Any) -> tuple[type, bool]:
    """(base type, may be None) of a RunConfig annotation: ``int | None`` -> (int, True)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = typing.get_args(hint)
        base = next(a for a in args if a is not type(None))
        return typing.get_origin(base) or base, type(None) in args
    return typing.get_origin(hint) or hint, False


class Checks:
    """Checks of one space file (``label``); the section validators build on them."""

    def __init__(self, label: str) -> None:
        self.label = label

    def fail(self, key: str, problem: str, fix: str) -> typing.NoReturn:
        raise SpaceError(self.label, key, problem, fix)

    def keys(self, where: str, section: dict[str, Any], valid: Iterable[str]) -> None:
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
        """``value`` if it is a finite number (an integer if asked) within [low, high]."""
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

    def count(
        self, section: str, values: dict[str, Any], key: str, default: int, **limits: Any
    ) -> int:
        """``values[key]`` of ``section`` (``default`` if absent): a whole number that
        :meth:`number` accepts within ``limits``."""
        return self.number(f"{section}.{key}", values.get(key, default), integer=True, **limits)

    def name_list(
        self, key: str, value: Any, valid: Iterable[str], what: str = "value"
    ) -> list[str]:
        """One name or a list of names, each one of ``valid``."""
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

    def run_config(
        self,
        settings: dict[str, Any],
        key: str,
        where: str = "",
        fix: str = "change the value to one the trainer accepts",
    ) -> None:
        """Refuse settings the trainer would refuse (cl_core.validation.validated's message,
        after ``where``)."""
        try:
            validated(RunConfig.from_dict(settings))
        except ClsweepError as exc:
            self.fail(key, f"{where}{exc}", fix)

    # -- method hyperparameters: which listed method declares a name -----------------------------

    @staticmethod
    def owners(methods: tuple[str, ...], name: str) -> tuple[str, ...]:
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
