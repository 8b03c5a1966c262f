"""The resolved protocol of a sweep, for sweep.json: what a reader needs to re-run or cite it.

``space`` in sweep.json is the YAML as given, before ``--set`` overrides and without defaults; a
report built from it alone could not say which optimizer, validation fraction or seeds a sweep
used unless the space named them. This record holds every fixed setting as the trials ran with it
(defaults filled in, overrides applied), where each came from, the sampler with each study's seed,
the budget, early stopping and the final phase.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cl_core.config import RunConfig, sweep_role
from cl_core.methods import get_method
from cl_core.params import resolve
from sweep.seeds import SEED_DERIVATION, cell_sampler_seed
from sweep.space import SweepSpec

CELL_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(RunConfig)
    if sweep_role(f.name) in ("cell", "method") or f.name == "data_root"
)
"""RunConfig fields that are not fixed settings of a sweep: the grid and the method decide them,
and the data root is a property of the machine (each field's sweep role, cl_core.config)."""


def protocol_record(spec: SweepSpec) -> dict[str, Any]:
    """The ``protocol`` entry of sweep.json (docs/results-schema.md)."""
    return {
        "fixed": {method: fixed_settings(spec, method) for method in spec.methods},
        "sampler": sampler_record(spec),
        "budget": {"trials_per_cell": spec.trials, "time_limit_s": spec.time_limit_s},
        "early_stopping": spec.early_stopping,
        "final": {
            "top_k": spec.final_top_k,
            "seeds": spec.final_seeds,
            "seed_base": spec.final_seed_base,
        },
        "resources": {
            "cpus": spec.cpus,
            "gpus": spec.gpus,
            "max_concurrent": spec.max_concurrent,
            "population": spec.population,
        },
    }


def fixed_settings(spec: SweepSpec, method: str) -> dict[str, Any]:
    """Every setting ``method``'s trials share: train settings and method hyperparameters, each
    ``{"value": ..., "set_by": "space" | "--set" | "default"}``; searched names are left out."""
    searched = {p.name for p in spec.params}
    config = spec.base_config(method, spec.cells[0])
    given_train = spec.raw.get("train") or {}
    given_hps = spec.raw.get("hyperparams") or {}
    train = {
        name: _entry(value, _set_by(name, given_train, spec.train))
        for name, value in config.items()
        if name not in CELL_FIELDS and name not in searched
    }
    declared = get_method(method).hyperparams
    values = resolve(declared, config["method_params"], method)
    hyperparams = {
        name: _entry(value, _set_by(name, given_hps, spec.hyperparams))
        for name, value in values.items()
        if name not in searched
    }
    return {"train": train, "hyperparams": hyperparams}


def _set_by(name: str, given: dict[str, Any], resolved: dict[str, Any]) -> str:
    """Where a setting came from: the space file, a --set override, or the default."""
    overridden = name in given and given[name] != resolved.get(name, given[name])
    added = name not in given and resolved.get(name) is not None
    if overridden or added:
        return "--set"
    return "space" if name in given else "default"


def _entry(value: Any, set_by: str) -> dict[str, Any]:
    return {"value": value, "set_by": set_by}


def sampler_record(spec: SweepSpec) -> dict[str, Any]:
    """The sampler, the sweep's seed and the seed each study (``<method> on <cell>``) drew from."""
    return {
        "name": spec.sampler,
        "seed": spec.sampler_seed,
        "study_seeds": {
            f"{method} on {cell.key}": cell_sampler_seed(spec.sampler_seed, method, cell.key)
            for method in spec.methods
            for cell in spec.cells
        },
        "study_seed_derivation": SEED_DERIVATION,
    }
