"""KuaiRand (Pure, 1K, 27K) native files into the unified schema. Every KuaiRand quirk is here.

Files, in the release folder (`KuaiRand-Pure/`, `KuaiRand-1K/`, `KuaiRand-27K/`) or its
`data/`, each named with the variant suffix `<v>` = `pure`, `1k` or `27k`:

    log_standard_4_08_to_4_21_<v>.csv    standard feed log, 19 columns (below)
    log_standard_4_22_to_5_08_<v>.csv    standard feed log
    log_random_4_22_to_5_08_<v>.csv      random-exposure log (`is_rand` = 1)
    user_features_<v>.csv
    video_features_basic_<v>.csv
    video_features_statistic_<v>.csv     optional (the 27K one is 20 GB)

27K splits big files into `<name>_27k_part1.csv`, `_part2.csv`, ...: all parts are read.
Log columns: user_id, video_id, date, hourmin, time_ms, is_click, is_like, is_follow,
is_comment, is_forward, is_hate, long_view, play_time_ms, duration_ms, profile_stay_time,
comment_stay_time, is_profile_enter, is_rand, tab.

Quirks handled here:
  * `time_ms` (epoch ms) is the instant of the view; `date`/`hourmin` are UTC+8 wall clock and
    `hourmin` is sometimes the next hour, so they are kept as raw columns only.
  * exact duplicate rows exist: every copy after the first is quarantined.
  * `duration_ms` can be 0: the row is kept, its watch_ratio is null (not infinity).
  * `is_forward` is the unified `is_share`; `is_rand` is kept, so the random-exposure log can
    serve as an unbiased evaluation set.
  * `-124` means missing in user features (`is_live_streamer`); `UNKNOWN` activity degree too.
  * `video_duration` is float ms with blanks; `tag` is a quoted list (`"20,43"`): the first tag
    is the primary category, a video with no tag has an empty list and no primary category.
  * `upload_dt` (a date) becomes upload_ts, UTC midnight of that date.
"""

from __future__ import annotations

import re
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.readers import Release, locate_release
from jobs.readers.arrow_csv import BAD_LINE, CORRUPT
from jobs.readers.native import (
    KUAISHOU_USER_COLUMNS,
    InputFileError,
    check_file,
    check_header,
    finite_number,
    has_rows,
    integer_id,
    landing_now_ms,
    long_column,
    malformed_rules,
    missing_integer,
    null_sentinel,
    number_column,
    number_rules,
    parse_kuaishou_users,
    read_csv_as_strings,
    read_log_as_strings,
    time_bounds,
    time_rules,
    utc_day,
    with_numbers,
    with_quarantine_reason,
)
from lake.schema import QUARANTINE_REASON
from reelflow.config import QualityConfig

DATASET = "kuairand"
VARIANTS = ("pure", "1k", "27k")
LOGS = (
    "log_standard_4_08_to_4_21",
    "log_standard_4_22_to_5_08",
    "log_random_4_22_to_5_08",
)
# The logs' file names and `date` column are Beijing dates: the release ends when Beijing's
# 2022-05-08 does, at 16:00 UTC. Its last UTC day holds 16 hours, and the quality gate judges
# that day's freshness against this end, not midnight (landing records it).
RELEASE_END = "2022-05-08T16:00:00Z"
USER_FILE = "user_features"
BASIC_FILE = "video_features_basic"
STATISTIC_FILE = "video_features_statistic"
REQUIRED = (*LOGS, USER_FILE, BASIC_FILE)
OPTIONAL = (STATISTIC_FILE,)
FILE_PATTERN = re.compile(
    r"^(?P<name>" + "|".join(REQUIRED + OPTIONAL) + r")_(?P<variant>pure|1k|27k)"
    r"(?:_part(?P<part>\d+))?\.csv$"
)

LOG_COLUMNS = (
    "user_id",
    "video_id",
    "date",
    "hourmin",
    "time_ms",
    "is_click",
    "is_like",
    "is_follow",
    "is_comment",
    "is_forward",
    "is_hate",
    "long_view",
    "play_time_ms",
    "duration_ms",
    "profile_stay_time",
    "comment_stay_time",
    "is_profile_enter",
    "is_rand",
    "tab",
)
# native flag -> unified flag, all 0/1
FLAGS = {
    "is_click": "is_click",
    "is_like": "is_like",
    "is_follow": "is_follow",
    "is_comment": "is_comment",
    "is_forward": "is_share",
    "is_hate": "is_hate",
    "long_view": "long_view",
    "is_profile_enter": "is_profile_enter",
    "is_rand": "is_rand",
}
STAYS = {"profile_stay_time": "profile_stay_ms", "comment_stay_time": "comment_stay_ms"}
BASIC_COLUMNS = ("video_id", "author_id", "video_type", "upload_dt", "video_duration", "tag")
STATISTIC_COLUMNS = ("video_id", "counts")


def expected_files() -> str:
    required = ", ".join(f"{name}_<v>.csv" for name in REQUIRED)
    optional = ", ".join(f"{name}_<v>.csv" for name in OPTIONAL)
    return (
        f"expected {required} (optional: {optional}) with <v> one of {', '.join(VARIANTS)}; "
        "27K splits files into <name>_27k_part1.csv, _part2.csv, ..."
    )


def _matches(folder: Path) -> list[tuple[Path, re.Match]]:
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        match = FILE_PATTERN.match(path.name)
        if match and path.is_file():
            found.append((path, match))
    return found


def detect(raw_dir: Path) -> Release:
    """`KuaiRand-<V>/` or its `data/`; the variant comes from the file names' suffix."""
    root, found = locate_release(raw_dir, _matches, "KuaiRand", expected_files())
    variants = sorted({m["variant"] for _, m in found}, key=VARIANTS.index)
    if len(variants) > 1:
        raise InputFileError(
            root, f"holds files of several KuaiRand variants {variants}: keep one per folder"
        )
    variant = variants[0]
    files: dict[str, Path] = {}
    parts: dict[str, list[tuple[int, Path]]] = {}
    for path, match in found:
        if match["part"] is None:
            files[match["name"]] = path
        else:
            parts.setdefault(match["name"], []).append((int(match["part"]), path))
    both = sorted(set(files) & set(parts))
    if both:
        raise InputFileError(
            root, f"{both} present both whole and split into _partN files: keep one form"
        )
    missing = [f"{name}_{variant}.csv" for name in REQUIRED if name not in files | parts]
    if missing:
        raise InputFileError(
            root, f"KuaiRand-{variant} release is missing {missing}; {expected_files()}"
        )
    return Release(
        DATASET,
        variant,
        root,
        files,
        {name: [p for _, p in sorted(ps)] for name, ps in parts.items()},
    )


def release_paths(release: Release, name: str) -> list[Path]:
    """The file, or every part of a split file, holding logical file `name`."""
    if name in release.files:
        return [release.files[name]]
    return list(release.parts.get(name, []))


def check(release: Release) -> None:
    """Every file `read_tables` will read exists, holds its columns and at least one row:
    fails with InputFileError naming the file, before Spark starts."""
    logs = [p for name in LOGS for p in release_paths(release, name)]
    for path in logs:  # one log (or part) may hold a header only; all of them may not
        check_file(path, LOG_COLUMNS, require_rows=False)
    if logs and not any(has_rows(path) for path in logs):
        raise InputFileError(
            release.root, f"every log holds a header but no rows: {[p.name for p in logs]}"
        )
    wanted = {
        USER_FILE: KUAISHOU_USER_COLUMNS,
        BASIC_FILE: BASIC_COLUMNS,
        STATISTIC_FILE: STATISTIC_COLUMNS,
    }
    for name, columns in wanted.items():
        for path in release_paths(release, name):
            check_file(path, columns)


def read_tables(
    spark: SparkSession, release: Release, quality: QualityConfig
) -> dict[str, DataFrame]:
    logs = [p for name in LOGS for p in release_paths(release, name)]
    return {
        "interactions": read_interactions(spark, logs, quality, landing_now_ms()),
        "videos": read_videos(
            spark, release_paths(release, BASIC_FILE), release_paths(release, STATISTIC_FILE)
        ),
        "users": read_users(spark, release_paths(release, USER_FILE)),
    }


def _read_all(spark: SparkSession, paths: list[Path], columns: tuple[str, ...]) -> DataFrame:
    """Every file (or part) read as strings, each header checked, stacked by column name."""
    if not paths:
        raise InputFileError("(no file)", f"no file to read for columns {list(columns)}")
    for path in paths:
        if not Path(path).is_file():
            raise InputFileError(path, "file not found")
    frames = [read_csv_as_strings(spark, Path(path), columns) for path in paths]
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


def _read_logs(spark: SparkSession, paths: list[Path]) -> DataFrame:
    """Every log (or part) with the Arrow engine: a row with the wrong number of fields keeps
    its text in `_corrupt_record`, a line of invalid UTF-8 its reason in `_bad_line`."""
    if not paths:
        raise InputFileError("(no file)", f"no file to read for columns {list(LOG_COLUMNS)}")
    frames = []
    for path in paths:
        if not Path(path).is_file():
            raise InputFileError(path, "file not found")
        frames.append(read_log_as_strings(spark, Path(path), LOG_COLUMNS))
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


def read_interactions(
    spark: SparkSession, paths: list[Path], quality: QualityConfig, now_ms: int | None = None
) -> DataFrame:
    """All logs together (standard and random; `is_rand` tells them apart), one row per view.

    Rules, first broken wins: invalid UTF-8; wrong number of fields; user_id, video_id
    integers; time_ms a number whose rounded value fits a long and lies in the plausible
    window; play_time_ms, duration_ms non-negative numbers fitting a long; each flag 0 or 1;
    each stay time a non-negative number fitting a long; tab an integer; watch_ratio (when the
    duration is positive) within [watch_ratio_min, watch_ratio_max]; then exact duplicates.
    """
    now_ms = landing_now_ms() if now_ms is None else now_ms
    earliest, latest = time_bounds(quality, now_ms)
    raw = _read_logs(spark, paths)
    numbers = ["raw_time_ms", "raw_play_time_ms", "raw_duration_ms", *[f"raw_{c}" for c in STAYS]]
    parsed = with_numbers(
        raw.select(
            *[F.col(c).alias(f"raw_{c}") for c in (*LOG_COLUMNS, CORRUPT)],
            BAD_LINE,
            integer_id("user_id").alias("user_id"),
            integer_id("video_id").alias("video_id"),
            *[integer_id(c, "int").alias(c) for c in FLAGS],
            integer_id("tab", "int").alias("tab"),
        ),
        dict.fromkeys(numbers, 1),
    )
    time_ms = F.col(long_column("raw_time_ms"))
    play_ms = F.col(number_column("raw_play_time_ms"))
    video_ms = F.col(number_column("raw_duration_ms"))
    parsed = parsed.withColumn(
        "watch_ratio",
        # duration 0 (KuaiRand has some): the ratio is undefined, not infinite.
        F.when(video_ms > 0, play_ms / video_ms),
    )
    ratio_min, ratio_max = quality.watch_ratio_min, quality.watch_ratio_max
    rules = [
        *malformed_rules("raw__corrupt_record", BAD_LINE),
        (F.col("user_id").isNull(), missing_integer("user_id")),
        (F.col("video_id").isNull(), missing_integer("video_id")),
        *number_rules("time_ms", "raw_time_ms"),
        *time_rules(time_ms, "time_ms", quality, now_ms),
        *number_rules("play_time_ms", "raw_play_time_ms", non_negative=True),
        *number_rules("duration_ms", "raw_duration_ms", non_negative=True),
        *[(~F.coalesce(F.col(c).isin(0, 1), F.lit(False)), f"{c} not 0 or 1") for c in FLAGS],
        *[rule for c in STAYS for rule in number_rules(c, f"raw_{c}", non_negative=True)],
        (F.col("tab").isNull(), missing_integer("tab")),
        (
            (F.col("watch_ratio") < ratio_min) | (F.col("watch_ratio") > ratio_max),
            f"watch_ratio outside [{ratio_min}, {ratio_max}]",
        ),
    ]
    # Exact duplicates by the window over the raw columns, not KuaiRec's hash aggregate
    # (with_duplicate_flag): over these 19 columns the aggregate was slower (39 s against 33 s
    # on Pure's 2.62M log rows, the same output).
    checked = with_quarantine_reason(parsed, rules)
    plausible = time_ms.between(earliest, latest)
    return checked.select(
        *[f"raw_{c}" for c in (*LOG_COLUMNS, CORRUPT)],
        "user_id",
        "video_id",
        # time_ms is the truth; date/hourmin (UTC+8, hourmin sometimes off by one) stay raw.
        F.when(plausible, F.timestamp_millis(time_ms)).alias("event_ts"),
        F.col(long_column("raw_play_time_ms")).alias("watch_ms"),
        F.col(long_column("raw_duration_ms")).alias("duration_ms"),
        "watch_ratio",
        *[F.col(native).alias(unified) for native, unified in FLAGS.items()],
        *[F.col(long_column(f"raw_{native}")).alias(unified) for native, unified in STAYS.items()],
        "tab",
        F.lit(DATASET).alias("source"),
        F.when(plausible, utc_day(time_ms)).alias("ds"),
        QUARANTINE_REASON,
    )


def read_users(spark: SparkSession, paths: list[Path]) -> DataFrame:
    return parse_kuaishou_users(_read_all(spark, paths, KUAISHOU_USER_COLUMNS))


def _statistics(spark: SparkSession, paths: list[Path]) -> DataFrame:
    """video_id plus every counter of the statistic file as a double named `stat_<counter>`."""
    if not Path(paths[0]).is_file():
        raise InputFileError(paths[0], "file not found")
    header = check_header(paths[0], STATISTIC_COLUMNS)
    counters = [c for c in header if c and c != "video_id"]
    raw = _read_all(spark, paths, ("video_id", *counters))
    return (
        raw.select(
            integer_id("video_id").alias("video_id"),
            *[finite_number(c).alias(f"stat_{c}") for c in counters],
        )
        .where(F.col("video_id").isNotNull())
        .dropDuplicates(["video_id"])
    )


def read_videos(
    spark: SparkSession, basic_paths: list[Path], statistic_paths: list[Path] | None = None
) -> DataFrame:
    """The catalog from the basic file, joined with the statistic file's counters when present."""
    raw = _read_all(spark, basic_paths, BASIC_COLUMNS)
    # tag is "20,43" (quoted in the file): the first tag is the primary category.
    tags = F.expr(
        "filter(transform(split(coalesce(tag, ''), ','), t -> try_cast(trim(t) as int)), "
        "t -> t is not null)"
    )
    upload_day = F.expr("try_to_date(trim(upload_dt), 'yyyy-MM-dd')")
    parsed = raw.select(
        *[F.col(c).alias(f"raw_{c}") for c in BASIC_COLUMNS],
        integer_id("video_id").alias("video_id"),
        tags.alias("categories"),
        # UTC midnight of the upload date, whatever the session time zone.
        F.timestamp_seconds(F.unix_date(upload_day).cast("long") * 86_400).alias("upload_ts"),
        integer_id("author_id").alias("author_id"),
        null_sentinel("video_type").alias("video_type"),
    )
    parsed = with_numbers(parsed, {"raw_video_duration": 1})
    rules = [
        (F.col("video_id").isNull(), missing_integer("video_id")),
        *number_rules("video_duration", "raw_video_duration", optional=True, non_negative=True),
        (
            F.col("raw_upload_dt").isNotNull() & F.col("upload_ts").isNull(),
            "upload_dt not a yyyy-MM-dd date",
        ),
    ]
    videos = with_quarantine_reason(parsed, rules).select(
        *[f"raw_{c}" for c in BASIC_COLUMNS],
        "video_id",
        "categories",
        F.try_element_at("categories", F.lit(1)).alias("primary_category"),
        F.col(long_column("raw_video_duration")).alias("duration_ms"),
        "upload_ts",
        "author_id",
        "video_type",
        QUARANTINE_REASON,
    )
    if statistic_paths:
        stats = _statistics(spark, statistic_paths)
        videos = videos.join(stats, "video_id", "left")
        ordered = [c for c in videos.columns if c != QUARANTINE_REASON] + [QUARANTINE_REASON]
        videos = videos.select(*ordered)
    return videos
