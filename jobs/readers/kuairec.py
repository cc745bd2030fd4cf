"""KuaiRec 2.0 native files into the unified schema. Every KuaiRec quirk is handled here.

Files (see shared/data/README.md): big_matrix.csv and small_matrix.csv
(`user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio`, durations
in ms, `timestamp` float epoch seconds, `time`/`date` in UTC+8), item_categories.csv
(`feat` a list literal), kuairec_caption_category.csv (`-124`/`UNKNOWN` sentinels, bare \\r
inside captions), user_features.csv.
"""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.readers import Release, data_folder
from jobs.readers.arrow_csv import BAD_LINE, CORRUPT
from jobs.readers.native import (
    DUPLICATE_COPY,
    KUAISHOU_USER_COLUMNS,
    InputFileError,
    check_file,
    find_release_file,
    finite_number,
    first_failure,
    integer_id,
    landing_now_ms,
    long_column,
    malformed_rules,
    missing_integer,
    missing_number,
    null_sentinel,
    number_column,
    number_rules,
    parse_kuaishou_users,
    read_csv_as_strings,
    read_log_as_strings,
    time_bounds,
    time_rules,
    utc_day,
    with_duplicate_flag,
    with_numbers,
)
from lake.schema import QUARANTINE_REASON
from reelflow.config import QualityConfig

DATASET = "kuairec"
MATRIX_COLUMNS = (
    "user_id",
    "video_id",
    "play_duration",
    "video_duration",
    "time",
    "date",
    "timestamp",
    "watch_ratio",
)
CATEGORY_COLUMNS = ("video_id", "feat")
CAPTION_COLUMNS = (
    "video_id",
    "manual_cover_text",
    "caption",
    "topic_tag",
    "first_level_category_id",
    "first_level_category_name",
    "second_level_category_id",
    "second_level_category_name",
    "third_level_category_id",
    "third_level_category_name",
)
REQUIRED_FILES = (
    "big_matrix.csv",
    "item_categories.csv",
    "kuairec_caption_category.csv",
    "user_features.csv",
)
OPTIONAL_FILES = ("small_matrix.csv", "social_network.csv", "item_daily_features.csv")


def detect(raw_dir: Path) -> Release:
    """`KuaiRec 2.0/` or its `data/`; every required file must be there."""
    root = data_folder(Path(raw_dir), REQUIRED_FILES)
    missing = [name for name in REQUIRED_FILES if not (root / name).is_file()]
    if missing:
        raise InputFileError(
            root,
            f"not a KuaiRec 2.0 release: missing {missing}; expected {list(REQUIRED_FILES)} "
            f"(optional: {list(OPTIONAL_FILES)})",
        )
    files = {
        name: root / name for name in REQUIRED_FILES + OPTIONAL_FILES if (root / name).is_file()
    }
    return Release(DATASET, "2.0", root, files)


# The columns each file must have: checked by `check` before any Spark session starts.
FILE_COLUMNS = {
    "big_matrix.csv": MATRIX_COLUMNS,
    "small_matrix.csv": MATRIX_COLUMNS,
    "item_categories.csv": CATEGORY_COLUMNS,
    "kuairec_caption_category.csv": CAPTION_COLUMNS,
    "user_features.csv": KUAISHOU_USER_COLUMNS,
    "social_network.csv": ("user_id", "friend_list"),
    "item_daily_features.csv": ("video_id", "date"),
}


def check(release: Release) -> None:
    """Every file `read_tables` will read exists, holds its columns and at least one row:
    fails with InputFileError naming the file, before Spark starts."""
    for name, path in release.files.items():
        check_file(path, FILE_COLUMNS[name])


def read_tables(
    spark: SparkSession, release: Release, quality: QualityConfig
) -> dict[str, DataFrame]:
    now_ms = landing_now_ms()
    tables = {
        "interactions": read_interactions(spark, release.root, quality, now_ms=now_ms),
        "videos": read_videos(spark, release.root),
        "users": read_users(spark, release.root),
    }
    if "small_matrix.csv" in release.files:
        # The fully observed block: an unbiased evaluation slice, not training data.
        tables["small_matrix"] = read_interactions(
            spark, release.root, quality, "small_matrix.csv", require_time=False, now_ms=now_ms
        )
    if "social_network.csv" in release.files:
        tables["user_friends"] = read_social_network(spark, release.files["social_network.csv"])
    if "item_daily_features.csv" in release.files:
        tables["video_daily_stats"] = read_item_daily_features(
            spark, release.files["item_daily_features.csv"]
        )
    return tables


def read_interactions(
    spark: SparkSession,
    raw_dir: Path,
    quality: QualityConfig,
    matrix: str = "big_matrix.csv",
    require_time: bool = True,
    now_ms: int | None = None,
) -> DataFrame:
    """Every row of the log, parsed, with `ds` (UTC day) and a quarantine reason (null = ok).

    Rules, first broken wins: invalid UTF-8; wrong number of fields; user_id, video_id
    integers; `timestamp` a number (epoch seconds) whose ms fit a long and lie in the
    plausible window (quality.min_event_time .. landing clock + quality.max_future_days);
    play_duration, video_duration non-negative numbers whose rounded ms fit a long;
    watch_ratio a number within [watch_ratio_min, watch_ratio_max]; then exact duplicates.
    small_matrix (`require_time` false): a missing or implausible time is no fault there,
    its event_ts is null.
    """
    now_ms = landing_now_ms() if now_ms is None else now_ms
    path = find_release_file(raw_dir, matrix)
    log_columns = (*MATRIX_COLUMNS, CORRUPT, BAD_LINE)
    raw = with_duplicate_flag(read_log_as_strings(spark, path, MATRIX_COLUMNS), list(log_columns))
    earliest, latest = time_bounds(quality, now_ms)
    parsed = with_numbers(
        raw.select(
            *[F.col(c).alias(f"raw_{c}") for c in (*MATRIX_COLUMNS, CORRUPT)],
            BAD_LINE,
            DUPLICATE_COPY,
            integer_id("user_id").alias("user_id"),
            integer_id("video_id").alias("video_id"),
        ),
        # Scales: `timestamp` is float epoch seconds, parsed to ms.
        {
            "raw_play_duration": 1,
            "raw_video_duration": 1,
            "raw_watch_ratio": 1,
            "raw_timestamp": 1000,
        },
    )
    # `timestamp` is the UTC instant; `time`/`date` are UTC+8 wall clock and redundant.
    ts_ms = F.col(long_column("raw_timestamp", 1000))
    watch_ratio = F.col(number_column("raw_watch_ratio"))
    time_checks = (
        [
            *number_rules("timestamp", "raw_timestamp", scale=1000),
            *time_rules(ts_ms, "timestamp", quality, now_ms),
        ]
        if require_time
        else []
    )
    rules = [
        *malformed_rules("raw__corrupt_record", BAD_LINE),
        (F.col("user_id").isNull(), missing_integer("user_id")),
        (F.col("video_id").isNull(), missing_integer("video_id")),
        *time_checks,
        *number_rules("play_duration", "raw_play_duration", non_negative=True),
        *number_rules("video_duration", "raw_video_duration", non_negative=True),
        (watch_ratio.isNull(), missing_number("watch_ratio")),
        (
            (watch_ratio < quality.watch_ratio_min) | (watch_ratio > quality.watch_ratio_max),
            f"watch_ratio outside [{quality.watch_ratio_min}, {quality.watch_ratio_max}]",
        ),
    ]
    raw_columns = [f"raw_{c}" for c in (*MATRIX_COLUMNS, CORRUPT)]
    checked = parsed.withColumn(
        QUARANTINE_REASON, first_failure([*rules, (F.col(DUPLICATE_COPY), "exact duplicate row")])
    )
    # Only a time inside the plausible window becomes event_ts and ds (timestamp_millis of an
    # absurd value would overflow); a row outside it is quarantined, or undated in small_matrix.
    plausible = ts_ms.between(earliest, latest)
    return checked.select(
        *raw_columns,
        "user_id",
        "video_id",
        F.when(plausible, F.timestamp_millis(ts_ms)).alias("event_ts"),
        F.col(long_column("raw_play_duration")).alias("watch_ms"),
        F.col(long_column("raw_video_duration")).alias("duration_ms"),
        watch_ratio.alias("watch_ratio"),
        F.lit(DATASET).alias("source"),
        F.when(plausible, utc_day(ts_ms)).alias("ds"),
        QUARANTINE_REASON,
    )


def read_videos(spark: SparkSession, raw_dir: Path) -> DataFrame:
    """The catalog: categories from item_categories.csv, caption and names from the caption file."""
    categories = read_csv_as_strings(
        spark, find_release_file(raw_dir, "item_categories.csv"), CATEGORY_COLUMNS
    )
    captions = read_csv_as_strings(
        spark, find_release_file(raw_dir, "kuairec_caption_category.csv"), CAPTION_COLUMNS
    )
    # feat is "[27, 9]": a list literal; the first tag is the primary category.
    tags = F.expr(
        "filter(transform(split(regexp_replace(feat, '[\\\\[\\\\] ]', ''), ','), t -> try_cast(t as int)), t -> t is not null)"
    )
    videos = categories.select(
        F.col("video_id").alias("raw_video_id"),
        F.col("feat").alias("raw_feat"),
        integer_id("video_id").alias("video_id"),
        tags.alias("categories"),
    ).withColumn("primary_category", F.try_element_at("categories", F.lit(1)))
    caption_cols = captions.select(
        integer_id("video_id").alias("video_id"),
        F.col("caption"),
        null_sentinel("first_level_category_name").alias("category_name"),
    ).dropDuplicates(["video_id"])
    joined = videos.join(caption_cols, "video_id", "left")
    rules = [
        (F.col("video_id").isNull(), "video_id missing or not an integer"),
        (F.size("categories") < 1, "feat holds no category id"),
    ]
    return joined.withColumn(QUARANTINE_REASON, first_failure(rules))


def read_users(spark: SparkSession, raw_dir: Path) -> DataFrame:
    path = find_release_file(raw_dir, "user_features.csv")
    return parse_kuaishou_users(read_csv_as_strings(spark, path, KUAISHOU_USER_COLUMNS))


def read_social_network(spark: SparkSession, path: Path) -> DataFrame:
    """`user_id,friend_list` with friend_list a list literal like "[5, 7]"."""
    raw = read_csv_as_strings(spark, path, ("user_id", "friend_list"))
    friends = F.expr(
        "filter(transform(split(regexp_replace(friend_list, '[\\\\[\\\\] ]', ''), ','), "
        "t -> try_cast(t as long)), t -> t is not null)"
    )
    parsed = raw.select(
        F.col("user_id").alias("raw_user_id"),
        F.col("friend_list").alias("raw_friend_list"),
        integer_id("user_id").alias("user_id"),
        friends.alias("friend_ids"),
    )
    rules = [(F.col("user_id").isNull(), "user_id missing or not an integer")]
    return parsed.withColumn(QUARANTINE_REASON, first_failure(rules))


def read_item_daily_features(spark: SparkSession, path: Path) -> DataFrame:
    """Daily per-video statistics; `date` is YYYYMMDD. Counters (`*_cnt`, `*_num`) become doubles."""
    from jobs.readers.native import check_header

    header = check_header(path, ("video_id", "date"))
    raw = read_csv_as_strings(spark, path, tuple(header))
    counters = [c for c in header if c.endswith(("_cnt", "_num", "_duration"))]
    parsed = raw.select(
        *[F.col(c).alias(f"raw_{c}") for c in ("video_id", "date")],
        integer_id("video_id").alias("video_id"),
        F.to_date(F.col("date"), "yyyyMMdd").alias("stat_date"),
        *([integer_id("author_id").alias("author_id")] if "author_id" in header else []),
        *(
            [F.to_date(F.col("upload_dt"), "yyyy-MM-dd").alias("upload_date")]
            if "upload_dt" in header
            else []
        ),
        *[finite_number(c).alias(c) for c in counters],
    ).withColumn("ds", F.date_format("stat_date", "yyyy-MM-dd"))
    rules = [
        (F.col("video_id").isNull(), "video_id missing or not an integer"),
        (F.col("stat_date").isNull(), "date missing or not YYYYMMDD"),
    ]
    return parsed.withColumn(QUARANTINE_REASON, first_failure(rules))
