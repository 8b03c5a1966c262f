"""The run's optimizer: Adam, AdamW or SGD with momentum, with the run's lr and weight decay."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from cl_core.config import RunConfig


def make_optimizer(cfg: RunConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """adam / adamw / sgd with momentum, as ``cfg`` says."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
