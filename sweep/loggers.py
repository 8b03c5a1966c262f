"""Ray Tune logger callbacks chosen in the space (``loggers:``), and where their files go.

- ``tensorboard`` (default): TensorBoard event files, one folder per trial:
  ``<out>/<name>/ray/<run>/<trial_id>/events.out.tfevents.*``
  (``tensorboard --logdir <out>/<name>/ray``).
- ``csv`` / ``json``: ``progress.csv`` / ``result.json`` in the same trial folders.
- ``wandb``: Weights & Biases runs (project, group, entity, mode from the space; files under
  ``./wandb`` or ``$WANDB_DIR``, uploaded unless ``mode: offline``).
- ``mlflow``: MLflow runs, by default in ``<out>/<name>/mlruns`` (``tracking_uri`` and
  ``experiment_name`` from the space; ``mlflow ui --backend-store-uri <out>/<name>/mlruns``).

The sweep's own results (Parquet, study.db) never depend on these.
"""

from __future__ import annotations

from pathlib import Path

from ray import tune

from sweep.space import SweepSpec


def logger_callbacks(spec: SweepSpec, folder: Path) -> list[tune.Callback]:
    out: list[tune.Callback] = []
    for logger in spec.loggers:
        settings = dict(logger.settings)
        if logger.name == "tensorboard":
            from ray.tune.logger import TBXLoggerCallback

            out.append(TBXLoggerCallback())
        elif logger.name == "csv":
            from ray.tune.logger import CSVLoggerCallback

            out.append(CSVLoggerCallback())
        elif logger.name == "json":
            from ray.tune.logger import JsonLoggerCallback

            out.append(JsonLoggerCallback())
        elif logger.name == "wandb":
            from ray.air.integrations.wandb import WandbLoggerCallback

            settings.setdefault("project", spec.name)
            out.append(WandbLoggerCallback(**settings))
        elif logger.name == "mlflow":
            from ray.air.integrations.mlflow import MLflowLoggerCallback

            out.append(
                MLflowLoggerCallback(
                    tracking_uri=settings.get("tracking_uri", (folder / "mlruns").as_uri()),
                    experiment_name=settings.get("experiment_name", spec.name),
                )
            )
    return out
