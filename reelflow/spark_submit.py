"""The daily DAG's Spark tasks through `SparkSubmitOperator`, when a Spark connection is set.

`REELFLOW_SPARK_CONN_ID` names an Airflow connection (for instance one defined by the
environment variable `AIRFLOW_CONN_REELFLOW_SPARK='{"conn_type": "spark", "host": "local[2]"}'`,
or `spark://spark-master:7077` on a cluster). With it, `normalize` and `features` run
`spark-submit jobs/submit.py --job ...` against that master; without it they run in the
worker's own local session. Either way the same job functions do the work and record the same
summaries (`reelflow.runs`).

Imported only by the DAG file's connection branch: unset, parsing never imports the provider.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

from lake.partitions import partition
from reelflow.paths import REPO_ROOT, Paths

CONN_ENV = "REELFLOW_SPARK_CONN_ID"
APPLICATION = str(REPO_ROOT / "jobs" / "submit.py")


def spark_conn_id() -> str | None:
    """The configured Spark connection id, or None for the in-process sessions."""
    return os.environ.get(CONN_ENV) or None


class ReelflowSparkSubmitOperator(SparkSubmitOperator):
    """`spark-submit jobs/submit.py --job JOB --ds D`, then the task's summary and asset events
    exactly as the @task variant gives them (read back from `runs/ds=D/JOB.json`)."""

    def __init__(self, *, job: str, **kwargs: Any) -> None:
        args = ["--job", job, "--ds", "{{ ds }}"]
        if job == "normalize":
            args += ["--dataset", "{{ params.dataset }}", "--raw", "{{ params.raw }}"]
        kwargs.setdefault("task_id", job)
        super().__init__(
            application=APPLICATION,
            application_args=args,
            name=f"reelflow-{job}",
            **kwargs,
        )
        self.job = job

    def execute(self, context) -> dict[str, Any]:
        from reelflow.dag_defaults import run_day, run_through, stamp

        # Resolved on the worker, not at parse time: the driver runs the worker's interpreter
        # (it has the project installed), and `spark-submit` is found beside it.
        python = sys.executable
        bindir = str(Path(python).parent)
        self.conf = {
            "spark.pyspark.python": python,
            "spark.pyspark.driver.python": python,
            "spark.ui.enabled": "false",
            # The driver JVM starts before lake.spark configures the session: UTC from the start.
            "spark.sql.session.timeZone": "UTC",
            "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
            "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
            # On a cluster, a day's job starts once all its executors registered (at most 30 s,
            # Spark's default wait) rather than running its first stages on the first one.
            "spark.scheduler.minRegisteredResourcesRatio": "1.0",
            **(self.conf or {}),
        }
        self.env_vars = {
            "PATH": os.pathsep.join([bindir, os.environ.get("PATH", "")]),
            "PYSPARK_PYTHON": python,
            "PYSPARK_DRIVER_PYTHON": python,
            "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
            "SPARK_SUBMIT_MODE": "1",
            **(self.env_vars or {}),
        }
        # The range, resolved as the @task variant resolves it (`run_through`: a Jinja
        # template could read the param but not the interval's fallback).
        self.application_args = [*self.application_args, "--through", run_through(context) or ""]
        super().execute(context)
        ds = run_day(context)
        summary = json.loads(
            (partition(Paths.from_env().runs, ds) / f"{self.job}.json").read_text()
        )
        return stamp(context, summary)
