"""The description of one searched parameter, as sweep.json's ``searched`` list records it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DISTRIBUTIONS = ("uniform", "loguniform", "int", "categorical")
HYPERPARAM_PREFIX = "hp_"


@dataclass(frozen=True)
class SearchParam:
    """A searched parameter: a method hyperparameter (column ``hp_<name>``) or a train setting
    (column ``<name>``), and the distribution it is drawn from.

    ``log`` is true for a logarithmic scale (always for ``loguniform``); ``step`` is the grid of a
    discretised range; ``choices`` lists the values of a categorical parameter. ``methods`` lists
    the sweep's methods it is searched for: all of them for a train setting, those that declare it
    for a hyperparameter (with ``method: [er, derpp]``, ``alpha`` is searched for DER++ only);
    empty means all (sweeps written before it was recorded). Rows of the other methods hold null
    in its column.
    """

    name: str
    column: str
    distribution: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    methods: tuple[str, ...] = ()

    def applies_to(self, method: str) -> bool:
        """Whether ``method``'s study searches this parameter."""
        return not self.methods or method in self.methods

    @property
    def is_hyperparam(self) -> bool:
        return self.column.startswith(HYPERPARAM_PREFIX)

    @property
    def categorical(self) -> bool:
        return self.distribution == "categorical"

    @property
    def integer(self) -> bool:
        return self.distribution == "int"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "column": self.column,
            "distribution": self.distribution,
        }
        if self.methods:
            out["methods"] = list(self.methods)
        if self.categorical:
            out["choices"] = list(self.choices)
            return out
        out.update(low=self.low, high=self.high, log=self.log)
        if self.step is not None:
            out["step"] = self.step
        return out

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SearchParam:
        """Read an entry of sweep.json's ``searched`` list (schema 1 and 2)."""
        name = str(doc["name"])
        choices = tuple(doc.get("choices") or doc.get("values") or ())
        distribution = str(doc.get("distribution") or ("categorical" if choices else "uniform"))
        if distribution in ("choice", "grid"):  # names used by early schema-1 writers
            distribution = "categorical"
        return cls(
            name=name,
            column=str(doc.get("column") or f"{HYPERPARAM_PREFIX}{name}"),
            distribution=distribution,
            low=doc.get("low"),
            high=doc.get("high"),
            step=doc.get("step"),
            log=bool(doc.get("log", False)) or distribution == "loguniform",
            choices=choices,
            methods=tuple(str(m) for m in doc.get("methods") or ()),
        )
