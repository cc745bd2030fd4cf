"""The Spark session every job uses: local by default, UTC always."""

from __future__ import annotations

import os
import sys

from reelflow.config import SparkConfig


def spark_session(config: SparkConfig | None = None, app_name: str = "reelflow"):
    """Returns the process-wide SparkSession, creating it on first use.

    `getOrCreate` makes every task of one `airflow dags test` process (and the whole test
    suite) share one JVM. Under `spark-submit` the master comes from the submit command, so
    we only set it when nothing else has (`SPARK_MASTER` or a running context).
    """
    from pyspark.sql import SparkSession

    config = config or SparkConfig()
    # The embedded default never leaves this machine; binding loopback avoids DNS surprises.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Python workers (the Arrow CSV source, UDFs) must run this interpreter: it has the project.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.appName(app_name)
        # Day partitions are UTC days: any other session zone shifts rows across days.
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
        .config("spark.executor.extraJavaOptions", "-Duser.timezone=UTC")
        .config("spark.sql.shuffle.partitions", str(config.shuffle_partitions))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        # Micros with isAdjustedToUTC: pyarrow (Feast, pandas) reads them as UTC instants.
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        # Partition values like ds=2020-07-05 stay strings; inference would make them dates.
        .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
    )
    if "SPARK_MASTER" in os.environ or not os.environ.get("SPARK_SUBMIT_MODE"):
        builder = builder.master(os.environ.get("SPARK_MASTER", config.master)).config(
            "spark.driver.memory", config.driver_memory
        )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
