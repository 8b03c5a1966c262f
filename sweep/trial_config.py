"""What a trial runs: its plan (the Optuna side) and its one RunConfig (the cl_core side).

A :class:`TrialPlan` says which trial it is: the study unit (a method in a scenario cell), its
phase, its trial id (the Parquet ``trial_id``), the searched values and, in the final phase, its
fresh seed. When the driver launches the trial it builds a :class:`TrialRun` once
(:func:`launch_run`): the unit's base RunConfig with the plan's values, validated, and the
method's hyperparameters resolved (defaults filled in, values checked). The run's RunConfig
travels to the worker in the Tune config (:meth:`TrialRun.to_config`, read back by
:func:`launched`); the driver keeps the same object for the trial's Parquet row, so the row states
exactly what the worker trained.

A population (``resources.population`` > 1) runs several plans of one unit in one Tune trial: its
config holds their runs as ``members`` (:func:`population_config`); every plan is still its own
Optuna trial and Parquet row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any

from cl_core.config import RunConfig
from cl_core.errors import ClsweepError
from cl_core.methods import get_method
from cl_core.params import resolve
from cl_core.validation import validated

RUN_KEY = "run"
"""The Tune config's key for the trial's RunConfig (its ``to_dict()``)."""
PROBLEM_KEY = "problem"
"""The Tune config's key for why the driver found the RunConfig invalid (None if valid)."""


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


@dataclass(frozen=True)
class TrialRun:
    """One launched trial: its plan, the validated RunConfig it trains with, and the method's
    hyperparameters resolved (every declared one: the ``hp_*`` columns of its row).

    ``problem`` is set, and ``config`` left as built, when the RunConfig is invalid (a searched
    setting can clash with another one inside their ranges): the trial then fails on its
    worker with that message, as the trainer would have failed it.
    """

    plan: TrialPlan
    config: RunConfig
    method_params: Mapping[str, Any]
    problem: str | None = None

    def to_config(self) -> dict[str, Any]:
        """The Tune config: the plan's fields, the RunConfig as a dict, the problem."""
        return {**self.plan.to_config(), RUN_KEY: self.config.to_dict(), PROBLEM_KEY: self.problem}


def launch_run(base: RunConfig, plan: TrialPlan) -> TrialRun:
    """The run of ``plan`` on its unit's ``base``: searched values applied (a method's
    hyperparameter to its parameters, anything else to the settings), final-phase seeds set,
    validated and resolved once."""
    declared = get_method(base.method).hyperparams
    settings = base.to_dict()
    params = dict(base.method_params)
    for name, value in plan.values.items():
        if name in declared:
            params[name] = value
        else:
            settings[name] = value
    settings["method_params"] = params
    if plan.seed is not None:
        settings["data_seed"] = settings["train_seed"] = int(plan.seed)
    config = RunConfig.from_dict(settings)
    problem = None
    try:
        config = validated(config)
    except ClsweepError as exc:
        problem = str(exc)
    resolved = resolve(declared, config.method_params, f"method {config.method!r}")
    return TrialRun(plan, config, MappingProxyType(resolved), problem)


def launched(config: dict[str, Any]) -> tuple[RunConfig, str | None]:
    """The worker's side of :meth:`TrialRun.to_config`: the RunConfig and the problem."""
    return RunConfig.from_dict(config[RUN_KEY]), config.get(PROBLEM_KEY)


def population_config(population: str, runs: list[TrialRun]) -> dict[str, Any]:
    """The Tune config of a population: its id (the Ray trial's) and its members' runs."""
    return {
        "trial_id": population,
        "population": population,
        "unit": runs[0].plan.unit,
        "phase": runs[0].plan.phase,
        "members": [run.to_config() for run in runs],
    }


def population_members(config: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The members' Tune configs of a population's config; None for a config of one trial."""
    return config.get("members")


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
