"""Which configurations can be trained as one population, and why not.

Members of a population run one batched computation, so everything that fixes a shape, the data
or the number of steps must be equal: the ``RunConfig`` fields whose population role is "shared"
(``cl_core.config.SHARED_FIELDS``) and the method's hyperparameters that are not floats
(``Method.shared_settings``). Members may differ in the learning rate, weight decay, momentum,
``train_seed`` and every float hyperparameter of the method. A method that declares
``population_form = False`` runs each configuration alone (``population_problem`` names why).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cl_core.config import SHARED_FIELDS, RunConfig
from cl_core.methods import get_method
from cl_core.params import resolve


def method_params(cfg: RunConfig) -> dict[str, Any]:
    """``cfg``'s method hyperparameters with defaults filled in and values checked."""
    method = get_method(cfg.method)
    return resolve(method.hyperparams, cfg.method_params, f"method {cfg.method!r}")


def population_problem(cfg: RunConfig) -> str | None:
    """Why ``cfg`` has no population form (it then runs alone), or None if it has one."""
    method = get_method(cfg.method)
    if not getattr(method, "population_form", True):
        return f"method {cfg.method!r} has no population form (docs/population.md says why)"
    return None


def sharing_key(cfg: RunConfig) -> tuple:
    """Configs with equal keys (and a population form) can share one population."""
    shared = tuple(getattr(cfg, name) for name in SHARED_FIELDS)
    settings = get_method(cfg.method).shared_settings(method_params(cfg))
    return (*shared, settings)


def sharing_problem(configs: Sequence[RunConfig]) -> str | None:
    """Why ``configs`` cannot be trained as one population (naming the first config and setting
    in the way), or None if they can."""
    for i, cfg in enumerate(configs):
        problem = population_problem(cfg)
        if problem is not None:
            return f"config {i}: {problem}"
    first = configs[0]
    for i, cfg in enumerate(configs[1:], start=1):
        for name in SHARED_FIELDS:
            left, right = getattr(first, name), getattr(cfg, name)
            if left != right:
                return f"config {i}: {name} differs ({right!r} vs {left!r}); members must share it"
        method = get_method(first.method)
        left = method.shared_settings(method_params(first))
        right = method.shared_settings(method_params(cfg))
        if left != right:
            differ = [
                f"{a[0]}={b[1]!r} vs {a[1]!r}" for a, b in zip(left, right, strict=True) if a != b
            ]
            return (
                f"config {i}: {first.method} {', '.join(differ)}; members must share every "
                "hyperparameter that is not a float"
            )
    return None


def group_configs(configs: Sequence[RunConfig]) -> list[tuple[list[int], str | None]]:
    """Split ``configs`` into populations: (member indices, None) for each group that trains
    together, ([i], reason) for each config that has no population form and runs alone.
    Groups keep the order of their first member."""
    groups: dict[tuple, list[int]] = {}
    out: list[tuple[list[int], str | None]] = []
    for i, cfg in enumerate(configs):
        problem = population_problem(cfg)
        if problem is not None:
            out.append(([i], problem))
            continue
        key = sharing_key(cfg)
        if key not in groups:
            groups[key] = []
            out.append((groups[key], None))
        groups[key].append(i)
    return out
