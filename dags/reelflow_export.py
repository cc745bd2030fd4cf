"""reelflow_export: FAISS index + candidate table from the champion ranker, published online.

Runs nightly at 03:00 UTC for the day that ended three hours earlier (a day-wide data
interval), and whenever a reelflow_train task emits the `reelflow_champion` asset; an
asset-triggered run exports the day the training ran for, and skips when none of the
triggering training runs promoted a champion.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronDataIntervalTimetable, dag, task

from reelflow.dag_defaults import CANDIDATES, CHAMPION, DEFAULT_ARGS, EXPORTS, ONLINE_FEATURES


@dag(
    dag_id="reelflow_export",
    schedule=AssetOrTimeSchedule(
        timetable=CronDataIntervalTimetable("0 3 * * *", timezone="UTC"), assets=[CHAMPION]
    ),
    start_date=pendulum.parse(os.environ.get("REELFLOW_START_DATE", "2020-01-01"), tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["reelflow", "export"],
    doc_md=__doc__,
)
def reelflow_export():
    @task(outlets=[EXPORTS, CANDIDATES, ONLINE_FEATURES])
    def export(**context):
        """Index of every video, candidates per user (watched removed, ranker-scored), the
        `user_candidates` view materialized to Feast online."""
        from airflow.sdk.exceptions import AirflowSkipException

        from reelflow import tasks
        from reelflow.dag_defaults import champion_unchanged, run_day, stamp

        if champion_unchanged(context):
            raise AirflowSkipException("no triggering training run promoted a new champion")
        return stamp(context, tasks.export(run_day(context)))

    export()


reelflow_export()
