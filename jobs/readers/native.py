"""Shared pieces of the native-format readers: file checks and typed parsing of strings.

Readers load every column as a string first and parse it themselves, so that a bad value
becomes a quarantined row with a reason instead of a silent null or a crashed job.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from lake.schema import QUARANTINE_REASON
from reelflow.config import QualityConfig


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
        # Bytes first: a text-mode read decodes ahead, into rows that may not be UTF-8.
        with open(path, "rb") as fh:
            first = fh.readline()
        # utf-8-sig: a byte-order mark before the header is not part of the first name.
        header = first.decode("utf-8-sig").rstrip("\r\n")
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


# The shared row rules for numbers (README "Row rules"). A field is trimmed of ASCII spaces
# only (Spark's trim); an empty or absent field is missing. The grammar is enforced with a
# regex BEFORE try_cast: Spark/Java also read "1d", "NaN", "Infinity", "0x1p3" as doubles.
# \\z (not $): Java's $ also matches before a final line break.
INTEGER_TEXT = r"^[+-]?[0-9]+\z"
NUMBER_TEXT = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\z"
LONG_MIN = -(2**63)
LONG_LIMIT = 2**63  # exclusive upper bound of a signed 64-bit integer (a double exactly)


def _field(column: str | Column) -> Column:
    return F.trim(F.col(column) if isinstance(column, str) else column)


def integer_id(column: str | Column, typ: str = "long") -> Column:
    """The field as a signed 64-bit integer (or `typ`), null unless it fully matches
    `[+-]?[0-9]+` after trimming and fits. "1.0", "1e3", "0x10", "1_000" are not integers."""
    text = _field(column)
    return F.when(text.rlike(INTEGER_TEXT), text.try_cast(typ))


def finite_number(column: str | Column) -> Column:
    """The field as a finite double, null unless it fully matches the number grammar
    `[+-]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][+-]?[0-9]+)?` and is finite ("1e400" is null)."""
    return _finite(F.when(is_number_text(column), _field(column).try_cast("double")))


def _finite(value: Column) -> Column:
    return F.when(~F.isnan(value) & (F.abs(value) != float("inf")), value)


def is_number_text(column: str | Column) -> Column:
    """True where the trimmed field matches the number grammar (false when missing)."""
    return F.coalesce(_field(column).rlike(NUMBER_TEXT), F.lit(False))


def rounded_long(value: Column) -> Column:
    """`value` rounded HALF_UP to a long; null when null, not finite or outside the signed
    64-bit range. Never raises, ANSI mode or not."""
    rounded = F.round(value)
    in_range = (
        ~F.isnan(rounded)
        & (rounded >= F.lit(float(LONG_MIN)))
        & (rounded < F.lit(float(LONG_LIMIT)))
    )
    return F.when(in_range, rounded.try_cast("long"))


def scaled_long(value: Column, scale: int) -> Column:
    """HALF_UP (half away from zero) of the double's exact value times `scale` (1000: seconds
    to ms) as a long; null when null, not finite or outside the signed 64-bit range. Never
    raises.

    `value * scale` in doubles can round across a .5 boundary (1.0005 s is 1000.4999.. ms
    exactly, 1000.5 as a double): the product's rounding error is recovered exactly with
    Dekker's split (exact for an integer scale < 2**26), and the half-way test compares
    doubles without rounding."""
    if scale == 1:
        return rounded_long(value)
    sign = F.signum(value)
    a = F.abs(value)
    p = a * F.lit(float(scale))
    c = a * F.lit(134_217_729.0)  # 2**27 + 1: Veltkamp's split of a into hi + lo
    hi = c - (c - a)
    lo = a - hi
    err = (hi * F.lit(float(scale)) - p) + lo * F.lit(float(scale))  # exact: a*scale = p + err
    floor = F.floor(p).cast("double")
    up = ((p - floor) - F.lit(0.5)) >= -err
    small = sign * (floor + F.when(up, 1.0).otherwise(0.0))
    limit = F.lit(float(LONG_LIMIT))
    fits = (p < limit) | ((p == limit) & (err < 0) & (sign < 0))
    # |p| >= 2**51: p's fraction is a multiple of 1/2, the error's one of 1/256 or coarser;
    # the sum is done in longs and decimals, offset by 4096 so that p = 2**63 still fits.
    whole = F.floor(p).cast("double")
    big = (whole - F.lit(4096.0)).try_cast("long").cast("decimal(20,0)") + F.floor(
        (p - whole) + err + F.lit(0.5 + 4096)
    ).cast("decimal(20,0)")
    exact_range = F.when(p < F.lit(float(2**51)), small.try_cast("long")).otherwise(
        (big * sign.cast("decimal(1,0)")).try_cast("long")
    )
    finite = ~F.isnan(a) & (a != float("inf"))
    return F.when(finite & fits, exact_range)


def missing_integer(column: str) -> str:
    return f"{column} missing or not an integer"


def missing_number(column: str) -> str:
    return f"{column} missing or not a number"


def out_of_range(column: str) -> str:
    return f"{column} out of range"


def number_column(raw: str) -> str:
    """The finite double `with_numbers` parsed from raw field `raw`."""
    return f"_number__{raw}"


def number_text_column(raw: str) -> str:
    """True where `raw`'s trimmed text matches the number grammar (`with_numbers`)."""
    return f"_number_text__{raw}"


def present_column(raw: str) -> str:
    """True where `raw`'s trimmed text is not empty (`with_numbers`)."""
    return f"_present__{raw}"


def long_column(raw: str, scale: int = 1) -> str:
    """`raw`'s number times `scale`, rounded HALF_UP to a long (`with_numbers`)."""
    return f"_long{scale}__{raw}"


def with_numbers(frame: DataFrame, fields: dict[str, int] | list[tuple[str, int]]) -> DataFrame:
    """`frame` plus, for each raw number field `raw: scale` (or (raw, scale) pairs, where one
    field is read at two scales), its parse computed once per row: `number_text_column(raw)`
    (the text matches the number grammar), `number_column(raw)` (finite_number),
    `long_column(raw, scale)` (scaled_long of that number) and `present_column(raw)` (the
    trimmed field is not empty). `number_rules` reads these columns.

    Why stages: written inline, every rule repeats finite_number's regex and scaled_long's
    exact rounding (scaled_long names its input a dozen times), dozens of regex matches a
    row; the generated method then grows past the JIT's 8,000-byte limit and the JVM
    interprets it. Each stage's columns are read more than once by the next, so Spark does
    not inline them back (CollapseProject keeps a projection whose costly output is
    referenced twice).
    """
    pairs = list(fields.items()) if isinstance(fields, dict) else list(fields)
    raws = list(dict.fromkeys(raw for raw, _ in pairs))
    staged = frame.select(
        "*",
        *[
            column
            for raw in raws
            for column in (
                is_number_text(raw).alias(number_text_column(raw)),
                F.coalesce(_field(raw) != "", F.lit(False)).alias(present_column(raw)),
            )
        ],
    )
    staged = staged.select(
        "*",
        *[
            F.when(F.col(number_text_column(raw)), _field(raw).try_cast("double")).alias(
                f"_double__{raw}"
            )
            for raw in raws
        ],
    )
    staged = staged.select(
        *[c for c in staged.columns if not c.startswith("_double__")],
        *[_finite(F.col(f"_double__{raw}")).alias(number_column(raw)) for raw in raws],
    )
    return staged.select(
        "*",
        *[
            scaled_long(F.col(number_column(raw)), scale).alias(long_column(raw, scale))
            for raw, scale in dict.fromkeys(pairs)
        ],
    )


def number_rules(
    column: str,
    raw: str,
    optional: bool = False,
    non_negative: bool = False,
    scale: int = 1,
) -> list[tuple[Column, str]]:
    """The rules of a numeric field that becomes a long (ms durations, epoch times), in order:
    not a number -> "<col> missing or not a number" (optional: a missing field passes, a
    present bad one is "<col> not a number"); with `non_negative`, below 0 -> "negative <col>";
    then outside the signed 64-bit range after HALF_UP rounding (of value * scale) ->
    "<col> out of range". `raw` is the raw field's column, parsed by `with_numbers(frame,
    {raw: scale})` first; `column` names the field in the reasons."""
    text_ok = F.col(number_text_column(raw))
    number = F.col(number_column(raw))
    present = F.col(present_column(raw))
    value = F.col(long_column(raw, scale))
    negative = [(number < 0, f"negative {column}")] if non_negative else []
    if optional:
        return [
            (present & ~text_ok, f"{column} not a number"),
            *negative,
            (present & value.isNull(), out_of_range(column)),
        ]
    return [(~text_ok, missing_number(column)), *negative, (value.isNull(), out_of_range(column))]


# ---- the landing clock and the plausible-time rule

NOW_ENV = "REELFLOW_NOW"
_pinned_now: list[int] = []


def parse_instant(text: str) -> int:
    """Epoch ms of an ISO date or time; a time without a zone is UTC."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def landing_now_ms() -> int:
    """The landing clock in epoch ms: the instant pinned by `pinned_now` (land() pins one per
    landing), else $REELFLOW_NOW (an ISO time, UTC when it has no zone), else the wall clock."""
    if _pinned_now:
        return _pinned_now[-1]
    if text := os.environ.get(NOW_ENV):
        return parse_instant(text)
    return int(time.time() * 1000)


@contextlib.contextmanager
def pinned_now(now_ms: int) -> Iterator[int]:
    """Every `landing_now_ms()` inside returns `now_ms`: one clock for a whole landing."""
    _pinned_now.append(int(now_ms))
    try:
        yield int(now_ms)
    finally:
        _pinned_now.pop()


def iso_ms(ms: int) -> str:
    """`2026-12-05T14:12:10.123Z` for epoch ms."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def time_bounds(quality: QualityConfig, now_ms: int) -> tuple[int, int]:
    """(earliest, latest) plausible event time in epoch ms, both inclusive."""
    earliest = parse_instant(str(quality.min_event_time)[:10])
    latest = int(now_ms) + round(float(quality.max_future_days) * 86_400_000)
    return earliest, latest


def time_rules(
    ts_ms: Column, column: str, quality: QualityConfig, now_ms: int
) -> list[tuple[Column, str]]:
    """The plausible-time rule on epoch ms `ts_ms`: before `quality.min_event_time` 00:00 UTC
    -> "<col> before <day> (quality.min_event_time)"; later than the landing clock plus
    `quality.max_future_days` -> "<col> after <cutoff ISO> (quality.max_future_days)"."""
    earliest, latest = time_bounds(quality, now_ms)
    return [
        (
            ts_ms < F.lit(earliest),
            f"{column} before {str(quality.min_event_time)[:10]} (quality.min_event_time)",
        ),
        (ts_ms > F.lit(latest), f"{column} after {iso_ms(latest)} (quality.max_future_days)"),
    ]


def first_failure(rules: list[tuple[Column, str | Column]]) -> Column:
    """The reason of the first rule a row breaks, or null for a clean row. A reason is a
    string or a string Column (e.g. "invalid UTF-8 on line 812")."""
    reason = F.lit(None).cast("string")
    for broken, why in reversed(rules):
        why_col = why if isinstance(why, Column) else F.lit(why)
        reason = F.when(F.coalesce(broken, F.lit(False)), why_col).otherwise(reason)
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
    from jobs.readers.arrow_csv import BAD_LINE, CORRUPT, read_arrow_csv
    from reelflow.config import load_config

    engine = engine or load_config().spark.csv_engine
    header = check_header(path, columns, sep)
    if engine == "arrow":
        return read_arrow_csv(spark, [path], tuple(header), sep).select(*columns, CORRUPT, BAD_LINE)
    if engine != "spark":
        raise ValueError(f"unknown CSV engine {engine!r}: use 'arrow' or 'spark'")
    return (
        read_csv_as_strings(spark, path, columns, sep)
        .withColumn(CORRUPT, F.lit(None).cast("string"))
        .withColumn(BAD_LINE, F.lit(None).cast("string"))
    )


def malformed_rules(corrupt: str, bad_line: str) -> list[tuple[Column, str | Column]]:
    """The first two rules of a log row: a line that is not valid UTF-8 ("invalid UTF-8 on
    line N"), then a row with the wrong number of fields."""
    return [
        (F.col(bad_line).isNotNull(), F.col(bad_line)),
        (F.col(corrupt).isNotNull(), "malformed row: wrong number of fields"),
    ]


def check_file(
    path: Path, expected: tuple[str, ...], sep: str = ",", require_rows: bool = True
) -> list[str]:
    """`check_header` plus: the file exists, is not empty and (with `require_rows`) holds a
    row after its header. Cheap (reads the first lines only): run before Spark starts."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file not found")
    if path.stat().st_size == 0:
        raise InputFileError(path, "is empty (expected a header and rows)")
    header = check_header(path, expected, sep)
    if require_rows and not has_rows(path):
        raise InputFileError(path, "holds a header but no rows")
    return header


def has_rows(path: Path) -> bool:
    """Whether a non-blank line follows the header (reads up to the first one)."""
    with open(path, "rb") as fh:
        fh.readline()
        return any(line.strip() for line in fh)


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
        integer_id("user_id").alias("user_id"),
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
