"""Which configurations can be trained as one population, and why not.

Members of a population run one batched computation, so everything that fixes a shape, the data
or the number of steps must be equal (``SHARED_FIELDS``); what may differ per member is the
learning rate, weight decay, momentum, ``train_seed`` and the method's hyperparameters that have a
population form. A config whose method or setting has no population form runs the ordinary
per-trial path (``population_problem`` names the reason).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cl_core.config import RunConfig
from cl_core.methods import get_method
from cl_core.params import resolve
from cl_core.population.methods import POPULATION_METHODS

# Settings every member of one population shares (they fix shapes, data, steps or evaluation).
SHARED_FIELDS = (
    "benchmark",
    "scenario",
    "n_tasks",
    "method",
    "model",
    "hidden",
    "optimizer",
    "reset_optimizer",
    "epochs",
    "iterations",
    "batch_size",
    "eval_batch_size",
    "device",
    "data_seed",
    "val_fraction",
    "data_root",
    "first_task_unpermuted",
    "pad32",
    "class_il_units",
)
POPULATION_MODELS = ("mlp",)  # architectures with a stacked (batched) form


def method_params(cfg: RunConfig) -> dict[str, Any]:
    """``cfg``'s method hyperparameters with defaults filled in and values checked."""
    method = get_method(cfg.method)
    return resolve(method.hyperparams, cfg.method_params, f"method {cfg.method!r}")


def population_problem(cfg: RunConfig) -> str | None:
    """Why ``cfg`` has no population form (it then runs per trial), or None if it has one."""
    if cfg.stream != "none":
        return f"a task-free stream ({cfg.stream!r}) has no population form"
    if cfg.model not in POPULATION_MODELS:
        return f"model {cfg.model!r} has no population form (only {', '.join(POPULATION_MODELS)})"
    form = POPULATION_METHODS.get(cfg.method)
    if form is None:
        return f"method {cfg.method!r} has no population form"
    return form.problem(method_params(cfg))


def sharing_key(cfg: RunConfig) -> tuple:
    """Configs with equal keys (and a population form) can share one population."""
    shared = tuple(getattr(cfg, name) for name in SHARED_FIELDS)
    form = POPULATION_METHODS.get(cfg.method)
    extra = form.shared_settings(method_params(cfg)) if form is not None else ()
    return (*shared, extra)


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
        form = POPULATION_METHODS[first.method]
        left = form.shared_settings(method_params(first))
        right = form.shared_settings(method_params(cfg))
        if left != right:
            return (
                f"config {i}: {first.method} settings {right} differ from {left}; members must "
                "share them"
            )
    return None


def group_configs(configs: Sequence[RunConfig]) -> list[tuple[list[int], str | None]]:
    """Split ``configs`` into populations: (member indices, None) for each group that trains
    together, ([i], reason) for each config that has no population form and runs per trial.
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
