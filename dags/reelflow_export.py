"""reelflow_export: FAISS index + candidate table from the champion ranker, published online."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import Asset, dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

CHAMPION = Asset(name="reelflow_champion", uri="file:///reelflow/models/champion")


@dag(
    dag_id="reelflow_export",
    schedule=CronDataIntervalTimetable("0 3 * * *", timezone="UTC"),
    start_date=pendulum.parse(os.environ.get("REELFLOW_START_DATE", "2020-01-01"), tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["reelflow", "export"],
    doc_md=__doc__,
)
def reelflow_export():
    @task
    def export(ds=None):
        """Index, candidates (watched removed, ranker-scored), materialized to Feast online."""
        from reelflow import tasks

        return tasks.export(ds)

    export()


reelflow_export()
