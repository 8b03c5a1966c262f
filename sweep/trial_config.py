"""What a Tune trial's config holds, and how it becomes a cl_core RunConfig.

A trial runs one :class:`TrialPlan`: the study unit it belongs to (a method in a scenario cell),
its phase, its trial id (the Parquet ``trial_id``), the searched values and, in the final phase,
its fresh seed. Tune sees the plan as a small JSON-safe dict (:meth:`TrialPlan.to_config`); the
unit's base RunConfig travels once to the workers (``tune.with_parameters``), not in every config,
so Tune's per-trial state stays small however many trials run. The trainable and the Parquet writer
both build the RunConfig through :func:`run_config`, so they agree on every value.

A population (``resources.population`` > 1) runs several plans of one unit in one Tune trial: its
config holds them as ``members`` (:func:`population_config`); every plan is still its own Optuna
trial and Parquet row.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from cl_core.config import RunConfig
from cl_core.methods import get_method


@dataclass(frozen=True)
class TrialPlan:
    """One trial: ``unit`` indexes ``SweepSpec.units``; ``number`` is its Optuna trial number
    (search phase); ``final_rank`` and ``seed`` say which search config it re-runs with which
    fresh data and training seed (final phase)."""

    trial_id: str
    unit: int
    phase: str
    values: dict[str, Any] = field(default_factory=dict)
    config_id: str = ""
    number: int | None = None
    final_rank: int | None = None
    seed: int | None = None

    def to_config(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TrialPlan:
        return cls(**{k: config[k] for k in cls.__dataclass_fields__ if k in config})


def population_config(population: str, plans: list[TrialPlan]) -> dict[str, Any]:
    """The Tune config of a population: its id (the Ray trial's) and its members' plans."""
    return {
        "trial_id": population,
        "population": population,
        "unit": plans[0].unit,
        "phase": plans[0].phase,
        "members": [plan.to_config() for plan in plans],
    }


def population_members(config: dict[str, Any]) -> list[TrialPlan] | None:
    """The plans of a population's Tune config; None for a config of one plan."""
    if "members" not in config:
        return None
    return [TrialPlan.from_config(member) for member in config["members"]]


def search_id(unit_slug: str, number: int) -> str:
    """The Parquet id of search trial ``number`` of a unit (``<method>-<cell slug>``)."""
    return f"{unit_slug}-s{number:04d}"


def final_id(unit_slug: str, cid: str, seed: int) -> str:
    """The Parquet id of a final-phase re-run of config ``cid`` with fresh ``seed``."""
    return f"{unit_slug}-final-{cid}-{seed}"


def config_id(values: dict[str, Any]) -> str:
    """12-hex hash of the searched values, equal for equal configs across phases."""
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def run_config(base: dict[str, Any], plan: TrialPlan) -> RunConfig:
    """The RunConfig of a trial: its unit's base with searched values and final seeds applied."""
    settings = dict(base)
    method_params = dict(settings.get("method_params", {}))
    names = get_method(settings["method"]).hyperparams
    for name, value in plan.values.items():
        if name in names:
            method_params[name] = value
        else:
            settings[name] = value
    settings["method_params"] = method_params
    if plan.seed is not None:
        settings["data_seed"] = settings["train_seed"] = int(plan.seed)
    return RunConfig.from_dict(settings)
