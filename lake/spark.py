"""The Spark session every job uses: local by default, UTC always, quiet on the console.

Spark's and the JVM's own console output (log4j lines, "Setting default log level", the
NativeCodeLoader warning, JVM start-up warnings) goes to `$REELFLOW_HOME/runs/logs/spark.log`,
not to the run's stderr: a log4j2 configuration written there sends Spark's logs to that file,
and the JVM that PySpark starts inherits that file as its stderr. Failures still reach the
caller as Python exceptions (with the log's path when the JVM itself did not start).
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

from reelflow.config import SparkConfig

LOG4J2 = """\
# Written by lake/spark.py: Spark's logs go to a file, never to the console.
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d{{yy/MM/dd HH:mm:ss}} %p %c{{1}}: %m%n%ex
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
"""


def spark_log() -> Path:
    """`$REELFLOW_HOME/runs/logs/spark.log` (the home's default `./var` when unset), without
    exporting the home as `Paths.from_env` does: a test session's JVM must not pin one."""
    home = Path(os.environ.get("REELFLOW_HOME", "var")).expanduser().resolve()
    return home / "runs" / "logs" / "spark.log"


def _log4j2_file(log: Path) -> Path:
    from reelflow.state import write_text

    conf = log.with_name("log4j2-spark.properties")
    text = LOG4J2.format(log=log)
    if not conf.exists() or conf.read_text() != text:
        write_text(conf, text)
    return conf


@contextmanager
def _stderr_to(log: Path):
    """Points this process's stderr (fd 2) at LOG while the JVM starts, so the JVM inherits
    it as its own stderr for good; ours is restored afterwards."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log, "a") as fh:
        os.dup2(fh.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def spark_session(config: SparkConfig | None = None, app_name: str = "reelflow"):
    """Returns the process-wide SparkSession, creating it on first use.

    `getOrCreate` makes every task of one `airflow dags test` process (and the whole test
    suite) share one JVM. Under `spark-submit` the master comes from the submit command, so
    we only set it when nothing else has (`SPARK_MASTER` or a running context).
    """
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    config = config or SparkConfig()
    # Our JVM: the one PySpark starts here (not spark-submit's, whose console it owns).
    ours = "PYSPARK_GATEWAY_PORT" not in os.environ and not os.environ.get("SPARK_SUBMIT_MODE")
    starts_jvm = ours and SparkContext._gateway is None
    driver_options = "-Duser.timezone=UTC"
    if starts_jvm:
        log = spark_log()
        log.parent.mkdir(parents=True, exist_ok=True)
        driver_options += f" -Dlog4j2.configurationFile={_log4j2_file(log).as_uri()}"
    # The embedded default never leaves this machine; binding loopback avoids DNS surprises.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Python workers (the Arrow CSV source, UDFs) must run this interpreter: it has the project.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.appName(app_name)
        # Day partitions are UTC days: any other session zone shifts rows across days.
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.extraJavaOptions", driver_options)
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
    if not starts_jvm:
        spark = builder.getOrCreate()
        if not ours:  # spark-submit's JVM logs to its console: errors only there
            spark.sparkContext.setLogLevel("ERROR")
        return spark
    try:
        with _stderr_to(log):
            return builder.getOrCreate()
    except Exception as exc:
        raise RuntimeError(f"Spark did not start: {exc} (its console output: {log})") from exc
