"""reelflow_train: point-in-time training set -> ranker -> MLflow -> promotion gate (@champion)."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import Asset, dag, task

FEATURES = Asset(name="reelflow_features", uri="file:///reelflow/lake/features")
CHAMPION = Asset(name="reelflow_champion", uri="file:///reelflow/models/champion")


@dag(
    dag_id="reelflow_train",
    schedule=[FEATURES],  # retrain when new features land
    start_date=pendulum.parse(os.environ.get("REELFLOW_START_DATE", "2020-01-01"), tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["reelflow", "train"],
    doc_md=__doc__,
)
def reelflow_train():
    @task(outlets=[CHAMPION])
    def train_ranker(ds=None):
        """Trains on every labelled day before the last, holds out the last, gates promotion."""
        from models.ranker_data import available_days
        from reelflow import tasks
        from reelflow.paths import Paths

        days = available_days(Paths.from_env().features("labels"))
        holdout = max(d for d in days if d <= ds) if any(d <= ds for d in days) else ds
        return tasks.train_ranker(holdout)

    train_ranker()


reelflow_train()
