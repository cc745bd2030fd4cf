"""MLflow tracking and the model registry's names: where runs go, the one place a model's
registered name (`reelflow-<model>`) is made, and its `@champion`."""

from __future__ import annotations

import os
from typing import Any

from reelflow.paths import Paths

CHAMPION = "champion"


def registered_name(model: str) -> str:
    """The registered model of `model` (a name of models/registry.py MODELS)."""
    return f"reelflow-{model}"


def setup_tracking(paths: Paths | None = None) -> str:
    """`MLFLOW_TRACKING_URI` when set (a server), else SQLite under the home."""
    import mlflow

    paths = paths or Paths.from_env()
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{paths.mlflow_db}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def experiment(name: str, paths: Paths) -> str:
    import mlflow

    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None if os.environ.get("MLFLOW_TRACKING_URI") else paths.mlflow_artifacts.as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def champion_version(name: str) -> Any | None:
    """The `@champion` version of the registered model `name`, None when there is none."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient().get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
