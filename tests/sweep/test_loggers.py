"""MLflow's default store is SQLite inside the sweep folder (MLflow deprecated its file store);
the sweep's runs land there, read back with MLflow's own client. The sweep test needs mlflow
(an optional logger, not in the dev install) and is skipped without it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from sweep_helpers import TINY_SPACE, write_space

from sweep.loggers import MLFLOW_ARTIFACTS, MLFLOW_DB, mlflow_store


def test_the_default_mlflow_store_is_a_sqlite_file_in_the_sweep_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tracking_uri, artifacts = mlflow_store(Path("out/sweep"))
    folder = tmp_path / "out" / "sweep"
    assert tracking_uri == f"sqlite:///{folder / MLFLOW_DB}"  # absolute: four slashes
    assert tracking_uri.startswith("sqlite:////")
    assert artifacts == f"file://{folder / MLFLOW_ARTIFACTS}"
    assert "mlruns" not in tracking_uri + artifacts


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow is not installed")
def test_a_sweep_logs_its_trials_to_the_sqlite_store(local_ray, tmp_path):
    import mlflow

    from sweep.runner import Options, run_sweep
    from sweep.space import load_space

    text = TINY_SPACE.replace("budget: {trials: 4}", "budget: {trials: 2}")
    spec = load_space(write_space(tmp_path, text + "loggers: [mlflow]\n", "logged.yaml"))
    folder = run_sweep(spec, Options(out=tmp_path / "out", quiet=True))
    assert (folder / MLFLOW_DB).is_file()
    assert not (folder / "mlruns").exists() and not (tmp_path / "mlruns").exists()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{folder / MLFLOW_DB}")
    experiment = client.get_experiment_by_name("logged")
    assert experiment.artifact_location == (folder / MLFLOW_ARTIFACTS).as_uri()
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    assert all("lambda" in "".join(r.data.params) for r in runs)
