"""Presets for the published protocols (REFERENCE R1, R4). Explicit settings override a preset.

Deliberate differences from the sources are stated per preset. ``method_params`` holds a
method's hyperparameters for every scenario; ``scenario_params`` (scenario -> method -> values)
those the source sets per scenario (three-scenario code base, params/param_values.py), applied
over ``method_params``.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # R1: the classic Permuted MNIST baseline-vs-EWC script. It trains on all 60,000 training
    # images, so the preset carves no validation set (val accuracies are NaN).
    "classic-permuted": {
        "run": {
            "benchmark": "permuted-mnist",
            "scenario": "domain",
            "n_tasks": 3,
            "hidden": (400, 400, 400),
            "optimizer": "adamw",
            "lr": 1e-3,
            "weight_decay": 1e-4,
            "reset_optimizer": True,
            "epochs": 2,
            "iterations": None,
            "batch_size": 256,
            "data_seed": 2024,
            "train_seed": 2024,
            "val_fraction": 0.0,
            "first_task_unpermuted": False,
            "pad32": False,
        },
        "method_params": {
            "ewc": {
                "lambda": 1e4,
                "fisher": "batch",
                "fisher_samples": 0,
                "fisher_batch_size": 256,
                "merge": "sum",
                "half": False,
            },
        },
    },
    # R4, Permuted MNIST column. We keep a 10% validation split (searches select on it);
    # the source trains on all training images.
    "vdv-permuted": {
        "run": {
            "benchmark": "permuted-mnist",
            "scenario": "domain",
            "n_tasks": 10,
            "hidden": (1000, 1000),
            "optimizer": "adam",
            "lr": 1e-4,
            "reset_optimizer": False,
            "epochs": None,
            "iterations": 5000,
            "batch_size": 128,
            "pad32": True,
            "first_task_unpermuted": True,
        },
        "method_params": {"si": {"epsilon": 0.1}, "lwf": {"temperature": 2.0, "scaling": "tasks"}},
        "scenario_params": {
            "task": {"fromp": {"tau": 1.0}, "bir": {"gate_prop": 0.0}},
            "domain": {"fromp": {"tau": 1.0}, "bir": {"gate_prop": 0.5}},
            "class": {"fromp": {"tau": 1.0}, "bir": {"gate_prop": 0.7}},
        },
    },
    # R4, Split MNIST column (same validation difference).
    "vdv-split": {
        "run": {
            "benchmark": "split-mnist",
            "scenario": "task",
            "n_tasks": 5,
            "hidden": (400, 400),
            "optimizer": "adam",
            "lr": 1e-3,
            "reset_optimizer": False,
            "epochs": None,
            "iterations": 2000,
            "batch_size": 128,
        },
        "method_params": {"si": {"epsilon": 0.1}, "lwf": {"temperature": 2.0, "scaling": "tasks"}},
        "scenario_params": {
            "task": {"fromp": {"tau": 0.01}, "bir": {"gate_prop": 0.0}},
            "domain": {"fromp": {"tau": 10.0}, "bir": {"gate_prop": 0.1}},
            "class": {"fromp": {"tau": 1000.0}, "bir": {"gate_prop": 0.1}},
        },
    },
}
