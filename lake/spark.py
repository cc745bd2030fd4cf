"""The Spark session every job uses: local by default, UTC always, quiet on the console.

Spark's and the JVM's own console output (log4j lines, "Setting default log level", the
NativeCodeLoader warning, JVM start-up warnings) goes to `$REELFLOW_HOME/runs/logs/spark.log`,
not to the run's stderr: a log4j2 configuration written there sends Spark's logs to that file,
and the JVM that PySpark starts inherits that file as its stderr. Failures still reach the
caller as Python exceptions (with the log's path when the JVM itself did not start).

Start-up: a driver JVM spends several seconds loading and verifying Spark's classes, and every
Airflow task starts one. `make install` (`python -m lake.spark`) dumps the classes a small
representative workload loads into a class-data-sharing archive (JDK AppCDS) under the
virtualenv; every driver JVM started here maps it (`-XX:SharedArchiveFile`) instead of loading
those classes again. The JVM checks that its version and classpath match the archive and
ignores it quietly otherwise, so a stale or foreign archive costs nothing but the speed-up.
`REELFLOW_SPARK_CLASS_ARCHIVE=0` turns it off; a path there names another archive.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from lake.partitions import partition
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


ARCHIVE_ENV = "REELFLOW_SPARK_CLASS_ARCHIVE"


def class_archive() -> Path:
    """This environment's class-data-sharing archive for the Spark driver: one per pyspark
    version and JDK (the file name says which), under the virtualenv (`sys.prefix`)."""
    import pyspark

    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    java = os.path.realpath(java or "java")
    stamp = os.stat(java).st_mtime_ns if os.path.exists(java) else 0
    key = hashlib.sha256(f"{pyspark.__version__}|{java}|{stamp}".encode()).hexdigest()[:12]
    return Path(sys.prefix) / "share" / "reelflow" / f"spark-{pyspark.__version__}-{key}.jsa"


def _java_option(flag: str, path: Path) -> str:
    # Spark splits extraJavaOptions on spaces, honouring double quotes.
    return f'"{flag}{path}"' if " " in str(path) else f"{flag}{path}"


def _class_archive_options() -> str:
    """The driver's options that map the archive: `$REELFLOW_SPARK_CLASS_ARCHIVE` names another
    one, "0" none; unset, `class_archive()` where it exists."""
    chosen = os.environ.get(ARCHIVE_ENV, "")
    if chosen == "0":
        return ""
    archive = Path(chosen) if chosen else class_archive()
    if not archive.exists():
        return ""
    # -Xshare:auto: a mismatched archive is skipped, never an error; -Xlog off: no warning
    # about it on the console either.
    return f" {_java_option('-XX:SharedArchiveFile=', archive)} -Xshare:auto -Xlog:cds=off"


def spark_session(
    config: SparkConfig | None = None, app_name: str = "reelflow", java_options: str = ""
):
    """Returns the process-wide SparkSession, creating it on first use.

    `getOrCreate` makes every task of one `airflow dags test` process (and the whole test
    suite) share one JVM. Under `spark-submit` the master comes from the submit command, so
    we only set it when nothing else has (`SPARK_MASTER` or a running context).
    `java_options` are added to the driver JVM's options when this call starts it (they
    replace the class archive's, which `build_class_archive` must not map while dumping).
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
        driver_options += f" {java_options}" if java_options else _class_archive_options()
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


# ---- the class-data-sharing archive (`make install` builds it) ---------------------------------


def _class_workload(folder: Path) -> None:
    """What a day's jobs do, in small: CSV in, Python workers (Arrow batches, as the Arrow
    CSV reader), the expressions of the readers' rules, aggregates, a join, a window, partitioned
    Parquet out and back, and rows to pandas. The classes they load are what the archive holds."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    spark = spark_session()
    csv = folder / "log.csv"
    csv.write_text(
        "user_id,video_id,timestamp,watch_ratio\n"
        + "".join(f"{i % 7},{i % 11},{1593561600 + 3600 * i}.5,{i / 10}\n" for i in range(200))
    )
    raw = spark.read.option("header", True).csv(str(csv))
    batches = raw.mapInArrow(lambda it: (b for b in it), raw.schema)
    ts = F.col("timestamp").try_cast("double")
    rows = batches.select(
        F.col("user_id").try_cast("long").alias("user_id"),
        F.when(F.col("video_id").rlike("^[0-9]+$"), F.col("video_id").try_cast("long")).alias(
            "video_id"
        ),
        F.timestamp_millis(F.round(ts * 1000).try_cast("long")).alias("event_ts"),
        F.col("watch_ratio").try_cast("double").alias("watch_ratio"),
    ).withColumn("ds", F.date_format("event_ts", "yyyy-MM-dd"))
    out = folder / "lake"
    rows.write.mode("overwrite").partitionBy("ds").parquet(str(out))
    back = spark.read.parquet(str(out))
    per_user = back.groupBy("user_id").agg(
        F.count("*").alias("views"), F.avg("watch_ratio").alias("ratio")
    )
    recent = Window.partitionBy("user_id").orderBy(F.col("event_ts").desc())
    last = back.withColumn("rank", F.row_number().over(recent)).where("rank <= 3")
    joined = last.join(per_user, "user_id", "left").dropDuplicates(["user_id", "video_id"])
    joined.toPandas()
    joined.collect()


def build_class_archive(force: bool = False) -> Path | None:
    """Writes `class_archive()` unless it exists (or `force`): a child process runs
    `_class_workload` on a driver JVM started with `-XX:ArchiveClassesAtExit`, and the JVM
    writes the archive when it exits. Returns the archive, or None (with the reason on stderr)
    where this JDK cannot make one: the archive only saves start-up time."""
    target = class_archive()
    if target.exists() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="reelflow-classes-") as tmp:
        dump = Path(tmp) / "spark.jsa"
        env = {**os.environ, "REELFLOW_HOME": str(Path(tmp) / "home")}
        child = subprocess.run(
            [sys.executable, "-m", "lake.spark", "--dump-classes", str(dump), tmp],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if child.returncode != 0 or not dump.exists():
            print(
                f"reelflow: no Spark class archive ({child.stderr.strip()[-500:]}); "
                "Spark starts without one",
                file=sys.stderr,
            )
            return None
        shutil.move(str(dump), target.with_suffix(".tmp"))
        os.replace(target.with_suffix(".tmp"), target)
    return target


def stop_jvm(timeout_s: float = 300) -> None:
    """Stops this process's Spark session and ends its driver JVM. `SparkSession.stop()`
    alone leaves the JVM running (py4j keeps the gateway for the next session), holding its
    ~1.5 GiB while, say, `reelflow run` waits for the DAG runs' own. The next
    `spark_session()` starts a new JVM."""
    from pyspark import SparkContext

    if SparkContext._active_spark_context is not None:
        SparkContext._active_spark_context.stop()
    gateway = SparkContext._gateway
    if gateway is None:
        return
    process = getattr(gateway, "proc", None)
    gateway.shutdown()
    SparkContext._gateway = SparkContext._jvm = None
    if process is not None:
        process.stdin.close()  # PySpark's signal for the JVM to exit
        process.wait(timeout=timeout_s)


def _dump_classes(dump: Path, folder: Path) -> None:
    spark_session(java_options=_java_option("-XX:ArchiveClassesAtExit=", dump))
    _class_workload(folder)
    stop_jvm()  # the JVM writes the archive as it exits


if __name__ == "__main__":
    if sys.argv[1:2] == ["--dump-classes"]:
        _dump_classes(Path(sys.argv[2]), Path(sys.argv[3]))
    elif "--force" in sys.argv or not class_archive().exists():  # quiet when already built
        if archive := build_class_archive(force=True):
            print(f"Spark class archive: {archive}")


def read_days(spark, table_dir: Path, days: list[str]):
    """The partitions of DAYS that exist, with their `ds` column (None: none exists)."""
    parts = [str(partition(table_dir, d)) for d in days if partition(table_dir, d).exists()]
    if not parts:
        return None
    from pyspark.sql import functions as F

    frame = spark.read.option("basePath", str(table_dir)).parquet(*parts)
    # Spark infers a date type from `ds=YYYY-MM-DD` folders: kept as the day's string.
    return frame.withColumn("ds", F.col("ds").cast("string"))
