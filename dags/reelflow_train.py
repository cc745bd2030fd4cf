"""reelflow_train: point-in-time training set -> ranker -> MLflow -> promotion gate (@champion).

Runs when reelflow_daily's features land (the `reelflow_features` asset) and, as a floor,
every Sunday 04:00 UTC. An asset-triggered run has no logical date: it trains on the newest
day its asset events name. Every task runs on the `gpu` queue and pool (a cluster routes
them to GPU workers; on the embedded default they run locally, one at a time) and emits the
`reelflow_champion` asset (extra: day, model, version, promoted), which triggers
reelflow_export.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from reelflow.dag_defaults import CHAMPION, FEATURES, TRAINING_ARGS


@dag(
    dag_id="reelflow_train",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 4 * * 0", timezone="UTC"), assets=[FEATURES]
    ),
    start_date=pendulum.parse(os.environ.get("REELFLOW_START_DATE", "2020-01-01"), tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=TRAINING_ARGS,
    tags=["reelflow", "train", "gpu"],
    doc_md=__doc__,
)
def reelflow_train():
    @task(outlets=[CHAMPION])
    def train_ranker(**context):
        """Trains on every labelled day before the last, holds out the last, gates promotion."""
        from models.ranker_data import available_days
        from reelflow import tasks
        from reelflow.dag_defaults import run_day, stamp
        from reelflow.paths import Paths

        ds = run_day(context)
        days = available_days(Paths.from_env().features("labels"))
        holdout = max(d for d in days if d <= ds) if any(d <= ds for d in days) else ds
        return stamp(context, tasks.train_ranker(holdout))

    train_ranker()


reelflow_train()
