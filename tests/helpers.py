"""Small real setups (scikit-learn digits) for unit tests."""

import torch

from cl_core.config import RunConfig
from cl_core.context import TrainContext
from cl_core.data import build_tasks, load_dataset
from cl_core.models import MLP, ModelFactory


def digits_setup(**overrides) -> tuple[RunConfig, TrainContext, MLP]:
    """A validated digits config, its context on CPU and a seeded model."""
    values = dict(benchmark="permuted-digits", scenario="domain", n_tasks=3, hidden=(16,), epochs=1)
    values.update(overrides)
    cfg = RunConfig(**values).validated()
    ctx = TrainContext(cfg, build_tasks(cfg, load_dataset(cfg)), torch.device("cpu"))
    torch.manual_seed(0)
    return cfg, ctx, ModelFactory(cfg, ctx.input_shape, ctx.scenario.out_units, ctx.device)()
