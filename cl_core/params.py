"""Declared hyperparameters: one place that states each knob's type, default and valid range.

Methods declare theirs here so that the CLI, the trainer and the sweep layer validate values the
same way (the sweep checks a YAML range against ``low``/``high``/``choices`` before Ray starts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cl_core.errors import ClsweepError


@dataclass(frozen=True)
class HyperParam:
    """One hyperparameter: ``kind`` is "float", "int", "bool" or "choice".

    ``low``/``high`` bound numeric values (inclusive unless ``low_open``), ``choices`` lists the
    values of a "choice", ``log`` says the natural search scale is logarithmic.
    """

    name: str
    kind: str
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[Any, ...] = ()
    log: bool = False

    @property
    def per_member(self) -> bool:
        """Whether members of one population may differ in it: floats only (a choice, a flag or
        an integer changes a shape or the code path, so members share it)."""
        return self.kind == "float"

    def check(self, value: Any, owner: str) -> Any:
        """Return ``value`` converted to this parameter's type, or raise naming the valid range."""
        where = f"{owner} hyperparameter '{self.name}'"
        if self.kind == "choice":
            if value not in self.choices:
                raise ClsweepError(
                    f"{where} = {value!r} is not one of {list(self.choices)}; pick one of those"
                )
            return value
        if self.kind == "bool":
            return parse_bool(value, where)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ClsweepError(
                f"{where} = {value!r} is not a number; {self.range_text()}"
            ) from None
        if math.isnan(number):
            raise ClsweepError(f"{where} is NaN; {self.range_text()}")
        if self.kind == "int":
            if number != int(number):
                raise ClsweepError(f"{where} = {value!r} must be an integer; {self.range_text()}")
            number = int(number)
        if not self.contains(number):
            raise ClsweepError(f"{where} = {value!r} is out of range; {self.range_text()}")
        return number

    def contains(self, number: float) -> bool:
        """Whether a numeric value lies in the valid range."""
        if self.low is not None and (number < self.low or (self.low_open and number == self.low)):
            return False
        return self.high is None or number <= self.high

    def range_text(self) -> str:
        """Human-readable valid range, used in error messages."""
        if self.kind == "choice":
            return f"valid values: {list(self.choices)}"
        if self.kind == "bool":
            return "valid values: true or false"
        left = "(" if self.low_open else "["
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"valid range: {left}{low}, {high}]"


def parse_bool(value: Any, where: str) -> bool:
    """Accept real booleans and the usual spellings from command lines and YAML."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ClsweepError(f"{where} = {value!r} is not a boolean; use true or false")


def resolve(declared: dict[str, HyperParam], given: dict[str, Any], owner: str) -> dict[str, Any]:
    """Defaults overlaid with ``given``, each value checked; unknown names are refused."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        known = ", ".join(sorted(declared)) or "none"
        raise ClsweepError(
            f"{owner} has no hyperparameter {', '.join(map(repr, unknown))}; "
            f"its hyperparameters: {known}"
        )
    values = {name: p.default for name, p in declared.items()}
    for name, value in given.items():
        values[name] = declared[name].check(value, owner)
    return values
