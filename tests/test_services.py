"""The distributed path against real servers on loopback: MLflow on a PostgreSQL backend.

Skips with the reason where the server is absent (a laptop); fails under
REELFLOW_REQUIRE_SERVICES=1 (CI).
"""

import uuid

import pytest

from tests.conftest import service_available

pytestmark = pytest.mark.services


def test_mlflow_registry_on_postgres_promotes_through_the_alias(tmp_path, monkeypatch):
    service_available("127.0.0.1", 5432, "PostgreSQL")
    import mlflow
    from mlflow import MlflowClient

    from models.tracking import CHAMPION

    uri = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    name = f"reelflow-test-{uuid.uuid4().hex[:8]}"
    exp = mlflow.create_experiment(name, artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_metric("ndcg_at_10", 0.25, step=1)
        (tmp_path / "weights.txt").write_text("not a model, an artifact")
        mlflow.log_artifact(str(tmp_path / "weights.txt"), artifact_path="ranker")
    client = MlflowClient()
    client.create_registered_model(name)
    version = client.create_model_version(
        name, f"runs:/{run.info.run_id}/ranker", run.info.run_id
    ).version
    client.set_registered_model_alias(name, CHAMPION, version)
    assert client.get_model_version_by_alias(name, CHAMPION).version == version
    assert client.get_run(run.info.run_id).data.metrics["ndcg_at_10"] == 0.25
    client.delete_registered_model(name)
