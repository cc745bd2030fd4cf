"""reelflow_train: every model of models/registry.py MODELS in a task `train_<model>`, each
trained, logged to MLflow, registered as `reelflow-<model>` and gated to `@champion`; a model
that distills a teacher runs after the teacher's task, on the version it registered:

    train_ranker                      (point-in-time training set, last-day holdout)
    train_gru, train_bert4rec         (leave-one-out over the lake's sequences)
    train_sasrec >> train_student     (the student distills this run's version of its
                                       teacher: sequence.teacher, SASRec by default)

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

from models.registry import MODELS
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
    def train(model: str, teacher: dict | None = None, **context):
        """Trains one model (each task's documentation is its MODELS description)."""
        from reelflow import tasks
        from reelflow.dag_defaults import run_day, stamp

        version = None if teacher is None else teacher["version"]
        return stamp(context, tasks.train(run_day(context), model, teacher_version=version))

    # MODELS lists a teacher before the models that distill it.
    trained = {}
    for name, spec in MODELS.items():
        teacher = None if spec.teacher is None else trained[spec.teacher]
        trained[name] = train.override(task_id=f"train_{name}", doc_md=spec.description)(
            name, teacher
        )


reelflow_train()
