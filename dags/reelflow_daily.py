"""reelflow_daily: one UTC day through land -> normalize -> validate -> features -> materialize.

With the `through` param (a first load of a long history), one run covers every landed day from
its own through that day, one Spark job per stage, and records each day as its own run would.

Each run covers the whole UTC day [D 00:00, D+1 00:00) (`CronDataIntervalTimetable`; Airflow 3's
`"@daily"` would give a zero-width interval) and reads and writes only day D's partitions, so a
backfill of any range is safe. A failed quality gate stops the run before features. Manual
runs may name the source in params (`dataset`, `raw`); empty means what the home was set up
with. Every task records its summary under `$REELFLOW_HOME/runs/ds=D/` and, on failure, what
failed and why under `runs/ds=D/failures/`.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import CronDataIntervalTimetable, dag, task

from reelflow.dag_defaults import (
    DEFAULT_ARGS,
    FEAST_REGISTRY,
    FEATURES,
    LANDED,
    NORMALIZED,
    ONLINE_FEATURES,
    SOURCE_PARAMS,
    VALIDATED,
    daily_end_date,
)

# A Spark connection id (e.g. `AIRFLOW_CONN_REELFLOW_SPARK` defines `reelflow_spark`) sends the
# Spark tasks through SparkSubmitOperator; unset, they run in the worker's local session.
SPARK_CONN_ID = os.environ.get("REELFLOW_SPARK_CONN_ID", "")


@dag(
    dag_id="reelflow_daily",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.parse(os.environ.get("REELFLOW_START_DATE", "2020-01-01"), tz="UTC"),
    end_date=daily_end_date(),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["reelflow", "daily"],
    params=SOURCE_PARAMS,
    doc_md=__doc__,
)
def reelflow_daily():
    @task(outlets=[FEAST_REGISTRY])
    def apply_feature_repo(**context):
        """`feast apply` when feature_repo/ or the store settings changed (locked, so parallel
        runs don't race)."""
        from reelflow import tasks
        from reelflow.dag_defaults import stamp

        return stamp(context, tasks.apply_feature_repo(context["ds"]))

    @task(outlets=[LANDED])
    def land(**context):
        """Parse the release's native files once into lake/raw by UTC day (skipped while the
        files and the rules are unchanged)."""
        from reelflow import tasks
        from reelflow.dag_defaults import run_params, stamp

        manual = context["dag_run"].run_type == "manual"
        return stamp(context, tasks.land(context["ds"], run_params(context), manual=manual))

    @task(outlets=[NORMALIZED])
    def normalize(**context):
        """Spark: the day's native rows into the unified schema; rejects to quarantine."""
        from reelflow import tasks
        from reelflow.dag_defaults import run_params, stamp

        return stamp(context, tasks.normalize(context["ds"], run_params(context)))

    @task(outlets=[VALIDATED])
    def validate(**context):
        """Great Expectations gate: a failed expectation fails this task (no retry) and stops
        the run before features."""
        from reelflow import tasks
        from reelflow.dag_defaults import run_params, stamp

        return stamp(context, tasks.validate(context["ds"], run_params(context)))

    @task(outlets=[FEATURES])
    def features(**context):
        """Spark: user/video features, sequences and ranker labels, stamped ds+1 00:00 UTC.
        Its asset event (extra `ds`) triggers reelflow_train."""
        from reelflow import tasks
        from reelflow.dag_defaults import run_params, stamp

        return stamp(context, tasks.features(context["ds"], run_params(context)))

    if SPARK_CONN_ID:
        # The same job code through `spark-submit` against the connection's master (same task
        # ids); only this branch imports the Spark provider.
        from reelflow.spark_submit import ReelflowSparkSubmitOperator

        normalize_day = ReelflowSparkSubmitOperator(
            job="normalize", conn_id=SPARK_CONN_ID, outlets=[NORMALIZED]
        )
        features_day = ReelflowSparkSubmitOperator(
            job="features", conn_id=SPARK_CONN_ID, outlets=[FEATURES]
        )
    else:
        normalize_day, features_day = normalize(), features()

    @task(outlets=[ONLINE_FEATURES])
    def materialize(**context):
        """Feast: materialize exactly this day's feature stamps into the online store."""
        from reelflow import tasks
        from reelflow.dag_defaults import run_params, stamp

        return stamp(context, tasks.materialize(context["ds"], run_params(context)))

    apply_feature_repo() >> land() >> normalize_day >> validate() >> features_day >> materialize()


reelflow_daily()
