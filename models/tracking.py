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


# The homes' SQLite URIs this process gave `mlflow.set_tracking_uri`, which also writes each
# into os.environ["MLFLOW_TRACKING_URI"] (for subprocesses): read back later, one would look
# like a server the user named, and pin every later home of the process (a test session, a
# long-lived worker) to that store. All of them, not only the last: whoever restores the
# environment as it was (a test's monkeypatch at teardown) puts back an earlier one (seen in
# CI: a home's status read another test's registry).
_HOME_URIS: set[str] = set()


def server_uri() -> str | None:
    """`MLFLOW_TRACKING_URI` when the user set it (a tracking server), else None."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    return uri if uri and uri not in _HOME_URIS else None


def tracking_uri(paths: Paths) -> str:
    """Where runs and the registry live: the user's server, else SQLite under the home."""
    return server_uri() or f"sqlite:///{paths.mlflow_db}"


def setup_tracking(paths: Paths | None = None) -> str:
    """`MLFLOW_TRACKING_URI` when set (a server), else SQLite under the home."""
    import mlflow

    paths = paths or Paths.from_env()
    uri = tracking_uri(paths)
    if server_uri() is None:
        _HOME_URIS.add(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def experiment(name: str, paths: Paths) -> str:
    import mlflow

    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None if server_uri() else paths.mlflow_artifacts.as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def champion_version(name: str) -> Any | None:
    """The `@champion` version of the registered model `name`, None when there is none."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient().get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
