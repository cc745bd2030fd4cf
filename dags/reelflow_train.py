"""reelflow_train: the ranker and the sequence models, each trained, logged to MLflow,
registered as `reelflow-<model>` and gated to `@champion`.

    train_ranker                      (point-in-time training set, last-day holdout)
    train_gru                         (leave-one-out over the lake's sequences)
    train_bert4rec >> train_student   (the student distills this run's BERT4Rec)

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
        from lake.partitions import available_days
        from reelflow import tasks
        from reelflow.dag_defaults import run_day, stamp
        from reelflow.paths import Paths

        ds = run_day(context)
        days = available_days(Paths.from_env().features("labels"))
        holdout = max(d for d in days if d <= ds) if any(d <= ds for d in days) else ds
        return stamp(context, tasks.train_ranker(holdout))

    @task(outlets=[CHAMPION])
    def train_gru(**context):
        """GRU4Rec on every user's sequence through the day, leave-one-out, gated."""
        from reelflow import tasks
        from reelflow.dag_defaults import run_day, stamp

        return stamp(context, tasks.train_sequence(run_day(context), "gru"))

    @task(outlets=[CHAMPION])
    def train_bert4rec(**context):
        """BERT4Rec on every user's sequence through the day, leave-one-out, gated; the
        teacher of train_student."""
        from reelflow import tasks
        from reelflow.dag_defaults import run_day, stamp

        return stamp(context, tasks.train_sequence(run_day(context), "bert4rec"))

    @task(outlets=[CHAMPION])
    def train_student(teacher: dict, **context):
        """A small model distilled from this run's BERT4Rec version, gated like the others."""
        from reelflow import tasks
        from reelflow.dag_defaults import run_day, stamp

        summary = tasks.train_sequence(
            run_day(context), "student", teacher_version=teacher["version"]
        )
        return stamp(context, summary)

    train_ranker()
    train_gru()
    train_student(train_bert4rec())


reelflow_train()
