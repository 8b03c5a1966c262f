"""A run configuration checked against everything that decides it: its own fields
(``RunConfig.checked``), then each registry entry it names, each checking its own part:
the benchmark (task count, padding), the model (the benchmark's input for the conv net), the
method (scenario, stream, hyperparameters: names, types, ranges).

It sits above the registries (which import the configuration, never this module), so that
``cl_core.config`` stays the bottom layer. Everything is checked before any data is loaded.
"""

from __future__ import annotations

from cl_core.config import RunConfig
from cl_core.data.registry import get_benchmark
from cl_core.methods import get_method
from cl_core.models import get_model_builder
from cl_core.models.conv import check_conv_input
from cl_core.params import resolve


def validated(cfg: RunConfig) -> RunConfig:
    """``cfg`` with types normalised; raise ClsweepError naming the field and the fix."""
    cfg = cfg.checked()
    benchmark = get_benchmark(cfg.benchmark)
    benchmark.check(cfg.n_tasks, cfg.pad32)
    get_model_builder(cfg.model)
    if cfg.model == "conv":
        check_conv_input(benchmark.input_shape(cfg.pad32), f"{cfg.benchmark}'s images")
    method = get_method(cfg.method)
    method.check_scenario(cfg.scenario)
    method.check_stream(cfg.stream)
    resolve(method.hyperparams, cfg.method_params, f"method {cfg.method!r}")
    return cfg
