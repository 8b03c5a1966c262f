"""Ray Tune logger callbacks chosen in the space (``loggers:``), and where their files go.

- ``tensorboard`` (default): TensorBoard event files, one folder per trial:
  ``<out>/<name>/ray/<run>/<trial_id>/events.out.tfevents.*``
  (``tensorboard --logdir <out>/<name>/ray``).
- ``csv`` / ``json``: ``progress.csv`` / ``result.json`` in the same trial folders.
- ``wandb``: Weights & Biases runs (project, group, entity, mode from the space; files under
  ``./wandb`` or ``$WANDB_DIR``, uploaded unless ``mode: offline``).
- ``mlflow``: MLflow runs (``tracking_uri`` and ``experiment_name`` from the space). Without a
  ``tracking_uri`` they go to a SQLite store inside the sweep folder, ``<out>/<name>/mlflow.db``,
  with artifacts in ``<out>/<name>/mlartifacts/``
  (``mlflow ui --backend-store-uri sqlite:///<out>/<name>/mlflow.db``). Not a ``file://`` store:
  MLflow deprecated its file-system tracking backend (MLflow 3.7 made SQLite its own default,
  and releases since refuse a file store unless ``MLFLOW_ALLOW_FILE_STORE`` is set). Only the
  driver writes it (Tune's logger callbacks run there), so one SQLite writer at a time.

The sweep's own results (Parquet, study.db) never depend on these.
"""

from __future__ import annotations

from pathlib import Path

from ray import tune

from sweep.space import SweepSpec

MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "mlartifacts"


def mlflow_store(folder: Path) -> tuple[str, str]:
    """The default MLflow store of a sweep: (tracking URI of its SQLite file, artifact location),
    both inside the sweep folder so the folder holds everything the sweep wrote."""
    folder = Path(folder).resolve()
    return f"sqlite:///{folder / MLFLOW_DB}", (folder / MLFLOW_ARTIFACTS).as_uri()


def _default_mlflow_experiment(folder: Path, name: str) -> str:
    """Create ``name`` in the sweep's own SQLite store (if new) with its artifacts in the folder
    (Ray's callback cannot set an artifact location); return the store's tracking URI."""
    import mlflow

    tracking_uri, artifacts = mlflow_store(folder)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    if client.get_experiment_by_name(name) is None:
        client.create_experiment(name, artifact_location=artifacts)
    return tracking_uri


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

            experiment = settings.get("experiment_name", spec.name)
            tracking_uri = settings.get("tracking_uri") or _default_mlflow_experiment(
                folder, experiment
            )
            out.append(MLflowLoggerCallback(tracking_uri=tracking_uri, experiment_name=experiment))
    return out
