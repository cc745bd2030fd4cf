"""Shared pieces of the native-format readers: file checks and typed parsing of strings.

Readers load every column as a string first and parse it themselves, so that a bad value
becomes a quarantined row with a reason instead of a silent null or a crashed job.
"""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from features.schema import QUARANTINE_REASON


class InputFileError(RuntimeError):
    """A raw file that cannot be read at all: names the file and the problem."""

    def __init__(self, path: Path | str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


def find_release_file(raw_dir: Path, name: str) -> Path:
    """`raw_dir/name` or `raw_dir/data/name`: users pass the release folder or its data/."""
    for candidate in (raw_dir / name, raw_dir / "data" / name):
        if candidate.is_file():
            return candidate
    raise InputFileError(raw_dir / name, "file not found (looked in the folder and in its data/)")


def check_header(path: Path, expected: tuple[str, ...], sep: str = ",") -> list[str]:
    """The header's columns; fails on a missing column or a wrong separator before Spark reads."""
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            header = fh.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"unreadable: {exc}") from exc
    columns = [c.strip() for c in header.split(sep)]
    if len(columns) == 1 and len(expected) > 1:
        for other in (",", "\t", ";", "|"):
            if other != sep and other in header:
                raise InputFileError(
                    path, f"wrong separator: expected {sep!r}, the header uses {other!r}"
                )
    missing = [c for c in expected if c not in columns]
    if missing:
        raise InputFileError(path, f"missing column(s) {missing}; header is {columns}")
    return columns


def read_csv_as_strings(
    spark: SparkSession, path: Path, columns: tuple[str, ...], sep: str = ","
) -> DataFrame:
    header = check_header(path, columns, sep)
    # Spark maps a schema onto CSV columns by position: declare them all, then pick ours.
    schema = StructType([StructField(c, StringType()) for c in header])
    return (
        spark.read.option("header", True)
        .option("sep", sep)
        # A bare \r inside a quoted field (KuaiRec captions) must not end the row.
        .option("lineSep", "\n")
        .option("quote", '"')
        .option("escape", '"')
        .option("enforceSchema", False)
        .option("mode", "PERMISSIVE")
        .schema(schema)
        .csv(str(path))
        .select(*columns)
    )


def try_number(column: str, typ: str) -> Column:
    """The column parsed as `typ` (long, double, int), null where it does not parse."""
    return F.expr(f"try_cast(trim(`{column}`) as {typ})")


def first_failure(rules: list[tuple[Column, str]]) -> Column:
    """The reason of the first rule a row breaks, or null for a clean row."""
    reason = F.lit(None).cast("string")
    for broken, why in reversed(rules):
        reason = F.when(broken, F.lit(why)).otherwise(reason)
    return reason


DUPLICATE_COPY = "_duplicate_copy"


def with_duplicate_flag(raw: DataFrame, columns: list[str]) -> DataFrame:
    """Every row of `raw` (same count), with `_duplicate_copy` true on each copy of a fully
    identical row after the first.

    A hash aggregate over the raw values, then one output row per copy: on a 12.5M-row log
    this is several times cheaper than a window that sorts every row by every column.
    Repeat views of the same video at another time differ in their timestamp and are kept.
    """
    counted = raw.groupBy(*columns).agg(F.count(F.lit(1)).alias("_copies"))
    copies = F.explode(F.sequence(F.lit(1), F.col("_copies"))).alias("_copy")
    return counted.select(*columns, copies).select(
        *columns, (F.col("_copy") > 1).alias(DUPLICATE_COPY)
    )


def exact_duplicates(df: DataFrame, columns: list[str]) -> Column:
    """True on every copy of a fully identical raw row after the first.

    Repeat views of the same video at another time differ in their timestamp and are kept.
    """
    from pyspark.sql.window import Window

    window = Window.partitionBy(*[F.col(c) for c in columns]).orderBy(F.lit(1))
    return F.row_number().over(window) > 1


def read_log_as_strings(
    spark: SparkSession,
    path: Path,
    columns: tuple[str, ...],
    sep: str = ",",
    engine: str | None = None,
) -> DataFrame:
    """A large interaction log as string columns plus `_corrupt_record` (a row's text when it
    has the wrong number of fields, else null).

    engine "arrow" (default) parses with Arrow in the Python workers (jobs/readers/arrow_csv.py);
    "spark" uses Spark's built-in CSV reader. Set with REELFLOW_SPARK__CSV_ENGINE.
    """
    from jobs.readers.arrow_csv import CORRUPT, read_arrow_csv
    from reelflow.config import load_config

    engine = engine or load_config().spark.csv_engine
    header = check_header(path, columns, sep)
    if engine == "arrow":
        return read_arrow_csv(spark, [path], tuple(header), sep).select(*columns, CORRUPT)
    if engine != "spark":
        raise ValueError(f"unknown CSV engine {engine!r}: use 'arrow' or 'spark'")
    return read_csv_as_strings(spark, path, columns, sep).withColumn(
        CORRUPT, F.lit(None).cast("string")
    )


def utc_day(ms: Column) -> Column:
    """`yyyy-MM-dd` UTC day of epoch milliseconds, whatever the session time zone."""
    return F.date_add(F.lit("1970-01-01").cast("date"), F.floor(ms / 86_400_000).cast("int")).cast(
        "string"
    )


def with_quarantine_reason(parsed: DataFrame, rules: list[tuple[Column, str]]) -> DataFrame:
    """`quarantine_reason`: the first row rule broken, else "exact duplicate row" for every
    copy of a fully identical raw row after the first, else null."""
    raw_columns = [c for c in parsed.columns if c.startswith("raw_")]
    return parsed.withColumn(QUARANTINE_REASON, first_failure(rules)).withColumn(
        QUARANTINE_REASON,
        F.when(
            F.col(QUARANTINE_REASON).isNull() & exact_duplicates(parsed, raw_columns),
            F.lit("exact duplicate row"),
        ).otherwise(F.col(QUARANTINE_REASON)),
    )


# Kuaishou's releases (KuaiRec, KuaiRand) share the user-feature file format and its codes.
MISSING_SENTINELS = ("-124", "UNKNOWN", "")  # Kuaishou's "missing" codes
KUAISHOU_USER_COLUMNS = (
    "user_id",
    "user_active_degree",
    "is_live_streamer",
    "is_video_author",
    "follow_user_num",
    "fans_user_num",
    "friend_user_num",
    "register_days",
)


def null_sentinel(column: str) -> Column:
    value = F.trim(F.col(column))
    return F.when(value.isin(*MISSING_SENTINELS), None).otherwise(value)


def parse_kuaishou_users(raw: DataFrame) -> DataFrame:
    """`user_features*.csv` of KuaiRec and KuaiRand (string columns) into the `users` table."""
    parsed = raw.select(
        *[F.col(c).alias(f"raw_{c}") for c in KUAISHOU_USER_COLUMNS],
        try_number("user_id", "long").alias("user_id"),
        null_sentinel("user_active_degree").alias("user_active_degree"),
        try_number("register_days", "int").alias("register_days"),
        try_number("follow_user_num", "int").alias("follow_user_num"),
        try_number("fans_user_num", "int").alias("fans_user_num"),
        try_number("friend_user_num", "int").alias("friend_user_num"),
        # -124 is the "missing" code, not a flag value.
        F.expr("try_cast(nullif(trim(is_live_streamer), '-124') as int)").alias("is_live_streamer"),
        try_number("is_video_author", "int").alias("is_video_author"),
    )
    return with_quarantine_reason(
        parsed, [(F.col("user_id").isNull(), "user_id missing or not an integer")]
    )
