"""reelflow_daily: one UTC day through land -> normalize -> validate -> features -> materialize."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import Asset, Param, dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

FEATURES = Asset(name="reelflow_features", uri="file:///reelflow/lake/features")
NORMALIZED = Asset(name="reelflow_normalized", uri="file:///reelflow/lake/normalized")


@dag(
    dag_id="reelflow_daily",
    # A data interval spanning the whole UTC day (Airflow 3's "@daily" has zero width).
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.parse(os.environ.get("REELFLOW_START_DATE", "2020-01-01"), tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["reelflow", "daily"],
    params={
        "dataset": Param(
            "", type="string", description="dataset of the raw folder (default: the home's)"
        ),
        "raw": Param("", type="string", description="raw release folder (default: the home's)"),
    },
    doc_md=__doc__,
)
def reelflow_daily():
    @task
    def apply_feature_repo(ds=None):
        """`feast apply` when feature_repo/ changed (locked, so parallel runs don't race)."""
        from reelflow import tasks

        return tasks.apply_feature_repo(ds)

    @task
    def land(params=None, ds=None):
        """Parse the release's native files once into lake/raw by UTC day (skipped if unchanged)."""
        from reelflow import tasks

        return tasks.land(ds, params)

    @task(outlets=[NORMALIZED])
    def normalize(ds=None, params=None):
        """Spark: the day's native rows into the unified schema; rejects to quarantine."""
        from reelflow import tasks

        return tasks.normalize(ds, params)

    @task
    def validate(ds=None):
        """Great Expectations gate: a failed expectation stops the run here."""
        from reelflow import tasks

        return tasks.validate(ds)

    @task(outlets=[FEATURES])
    def features(ds=None):
        """Spark: user/video features and ranker labels, stamped ds+1 00:00 UTC."""
        from reelflow import tasks

        return tasks.features(ds)

    @task
    def materialize(ds=None):
        """Feast: materialize exactly this day's feature stamps into the online store."""
        from reelflow import tasks

        return tasks.materialize(ds)

    apply_feature_repo() >> land() >> normalize() >> validate() >> features() >> materialize()


reelflow_daily()
