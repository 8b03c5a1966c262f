"""What a Tune trial's config holds, and how it becomes a cl_core RunConfig.

A trial config is ``{"base": <RunConfig dict of the cell>, "meta": {"cell", "phase"}, ...}`` plus,
in the search phase, the searched values at the top level (as Optuna suggests them) or, in the
final phase, a ``"final"`` entry naming the re-run config, its rank and its seeds. The trainable
and the Parquet writer both read configs through this module, so they agree on every value.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from cl_core.config import RunConfig
from cl_core.methods import get_method
from sweep.space import Cell, SweepSpec

RESERVED = ("base", "meta", "final")


def param_space(spec: SweepSpec, method: str, cell: Cell, phase: str) -> dict[str, Any]:
    """The constant part of every trial's config for one method, cell and phase."""
    return {"base": spec.base_config(method, cell), "meta": {"cell": cell.key, "phase": phase}}


def searched_values(config: dict[str, Any]) -> dict[str, Any]:
    """The searched values of a trial (for a final-phase trial: those of the config it re-runs)."""
    if "final" in config:
        return dict(config["final"]["values"])
    return {k: v for k, v in config.items() if k not in RESERVED}


def config_id(values: dict[str, Any]) -> str:
    """12-hex hash of the searched values, equal for equal configs across phases."""
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def final_point(values: dict[str, Any], cid: str, rank: int, seed: int) -> dict[str, Any]:
    """One final-phase run: search config ``cid`` re-run with a fresh data and training seed."""
    return {"values": values, "config_id": cid, "rank": rank, "seed": seed}


def trial_config_id(config: dict[str, Any]) -> str:
    """The config_id of a trial; a final-phase trial carries the one of the config it re-runs."""
    if "final" in config:
        return config["final"]["config_id"]
    return config_id(searched_values(config))


def run_config(config: dict[str, Any]) -> RunConfig:
    """The RunConfig of a trial: the cell's base with searched values and final seeds applied."""
    settings = dict(config["base"])
    method_params = dict(settings.get("method_params", {}))
    names = get_method(settings["method"]).hyperparams
    for name, value in searched_values(config).items():
        if name in names:
            method_params[name] = value
        else:
            settings[name] = value
    settings["method_params"] = method_params
    if "final" in config:
        settings["data_seed"] = settings["train_seed"] = int(config["final"]["seed"])
    return RunConfig.from_dict(settings)
