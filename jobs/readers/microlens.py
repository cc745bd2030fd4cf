"""MicroLens (100k, 50k) native files into the unified schema. Every MicroLens quirk is here.

Files, in the release folder or its `data/`, all named with the release prefix
`MicroLens-<size>_` (`MicroLens-100k_`, `MicroLens-50k_`; the size is matched without regard
to case, so `MicroLens-100K_` works too):

    <prefix>pairs.csv              the log: header `user,item,timestamp`, epoch milliseconds
    <prefix>pairs.tsv              optional, the same log as `user<TAB>item item item` in time
                                   order, no header; checked against pairs.csv, never loaded
    <prefix>title_en.csv           optional: NO header, CRLF line endings, `id, title` with a
                                   space after the comma; titles may hold commas (the line is
                                   split on the first comma) and may be empty (caption null)
    <prefix>likes_and_views.txt    optional: `item<TAB>likes<TAB>views`, no header

Every file is checked by `check(release)` before the Spark session starts: a file that is
empty ("is empty") or holds only its header ("holds a header but no rows"), a pairs.csv
header without user/item/timestamp or with another separator, a likes file with another
separator or field count on its first line fail with the file named. A UTF-8 byte-order mark
and CRLF line endings are accepted everywhere.

Row rules of the log (the first broken one is the row's quarantine reason): "invalid UTF-8
on line N", "malformed row: wrong number of fields" (both keep the line's text in
`raw__corrupt_record`), "user missing or not an
integer", "item missing or not an integer" (text fully matching `[+-]?[0-9]+`, signed
64-bit), "timestamp missing or not a number" (the number grammar of README "Row rules"),
"timestamp out of range" (not finite, or beyond a long after HALF_UP rounding to ms),
"timestamp before <quality.min_event_time> (quality.min_event_time)", "timestamp after
<landing time + quality.max_future_days> (quality.max_future_days)", then "exact duplicate
row". event_ts and ds are null where the timestamp breaks a rule.

Tables: `interactions` (user_id, video_id, event_ts, source, ds) and, when the title or the
likes file is there, `videos` (video_id, caption, likes, views). MicroLens has no watch time,
no engagement flags, no categories and no user file: those columns and the `users` table are
absent (never invented). pairs.tsv alone is refused: it has no timestamps, and interactions
are partitioned by UTC day.
"""

from __future__ import annotations

import re
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.readers import Release, locate_release
from jobs.readers.arrow_csv import BAD_LINE, CORRUPT
from jobs.readers.native import (
    InputFileError,
    check_file,
    integer_id,
    landing_now_ms,
    long_column,
    malformed_rules,
    number_rules,
    read_log_as_strings,
    time_rules,
    utc_day,
    with_numbers,
    with_quarantine_reason,
)
from lake.schema import QUARANTINE_REASON
from reelflow.config import QualityConfig

DATASET = "microlens"
PAIRS_CSV = "pairs.csv"
PAIRS_TSV = "pairs.tsv"
TITLES = "title_en.csv"
LIKES = "likes_and_views.txt"
SUFFIXES = (PAIRS_CSV, PAIRS_TSV, TITLES, LIKES)
PREFIX_PATTERN = re.compile(
    r"^(?P<prefix>MicroLens-(?P<size>\d+[kKmM])_)(?P<suffix>"
    + "|".join(re.escape(s) for s in SUFFIXES)
    + r")$"
)
PAIRS_COLUMNS = ("user", "item", "timestamp")
MALFORMED = "malformed row: wrong number of fields"


def expected_files() -> str:
    return (
        "expected MicroLens-<size>_pairs.csv (header user,item,timestamp) with optional "
        "MicroLens-<size>_pairs.tsv, MicroLens-<size>_title_en.csv and "
        "MicroLens-<size>_likes_and_views.txt, <size> being 100k or 50k"
    )


def _matches(folder: Path) -> list[tuple[Path, re.Match]]:
    if not folder.is_dir():
        return []
    return [
        (p, m)
        for p in sorted(folder.iterdir())
        if (m := PREFIX_PATTERN.match(p.name)) and p.is_file()
    ]


def detect(raw_dir: Path) -> Release:
    """`MicroLens-<size>/` or its `data/`; the size (variant) comes from the file prefix."""
    root, found = locate_release(raw_dir, _matches, "MicroLens", expected_files())
    sizes = sorted({m["size"].lower() for _, m in found})
    if len(sizes) > 1:
        raise InputFileError(
            root, f"holds files of several MicroLens releases {sizes}: keep one per folder"
        )
    files = {m["suffix"]: p for p, m in found}
    prefix = found[0][1]["prefix"]
    if PAIRS_CSV not in files:
        if PAIRS_TSV in files:
            raise InputFileError(
                files[PAIRS_TSV],
                f"has no timestamps: {prefix}{PAIRS_CSV} (user,item,timestamp) is required, "
                "interactions are partitioned by UTC day",
            )
        raise InputFileError(root / f"{prefix}{PAIRS_CSV}", f"file not found; {expected_files()}")
    return Release(DATASET, sizes[0], root, files)


def check(release: Release) -> None:
    """Every file-level check, without Spark (landing runs it before the session starts)."""
    _check_pairs(release.files[PAIRS_CSV])
    for name in (PAIRS_TSV, TITLES):
        if name in release.files:
            _check_not_empty(release.files[name])
    if LIKES in release.files:
        _check_likes(release.files[LIKES])


def _shape(path: Path, header: bool) -> str | None:
    """ "is empty" without a non-blank line, "holds a header but no rows" when `header` and
    only the first line holds anything, else None."""
    if not Path(path).is_file():
        raise InputFileError(path, "file not found")
    try:
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
            first = fh.readline(1 << 20)
            rest_blank = not any(line.strip() for line in _until_nonblank(fh))
    except OSError as exc:
        raise InputFileError(path, f"unreadable: {exc}") from exc
    if not first.strip() and rest_blank:
        return "is empty"
    if header and rest_blank:
        return "holds a header but no rows"
    return None


def _until_nonblank(fh):
    """The lines of `fh` up to and including the first non-blank one."""
    for line in fh:
        yield line
        if line.strip():
            return


def _check_not_empty(path: Path) -> None:
    if _shape(path, header=False):
        raise InputFileError(path, "is empty")


def _check_pairs(path: Path) -> None:
    """pairs.csv: not empty, the header names user,item,timestamp with commas, rows follow."""
    if _shape(path, header=False) == "is empty":  # blank lines only: no header to name
        raise InputFileError(path, "is empty (expected a header and rows)")
    check_file(Path(path), PAIRS_COLUMNS)


def read_tables(
    spark: SparkSession, release: Release, quality: QualityConfig
) -> dict[str, DataFrame]:
    check(release)
    now_ms = landing_now_ms()
    interactions = read_interactions(spark, release.files[PAIRS_CSV], quality, now_ms)
    if PAIRS_TSV in release.files:
        check_sequences_agree(
            spark, release.files[PAIRS_CSV], release.files[PAIRS_TSV], quality, now_ms
        )
    tables = {"interactions": interactions}
    if TITLES in release.files or LIKES in release.files:
        tables["videos"] = read_videos(spark, release.files.get(TITLES), release.files.get(LIKES))
    return tables


def read_interactions(
    spark: SparkSession,
    path: Path,
    quality: QualityConfig | None = None,
    now_ms: int | None = None,
) -> DataFrame:
    """Every row of pairs.csv, parsed, with `ds` and a quarantine reason (null = ok).
    `now_ms` (default `landing_now_ms()`) is the landing clock of the plausible-time rule."""
    quality = quality or QualityConfig()
    now_ms = landing_now_ms() if now_ms is None else now_ms
    _check_pairs(Path(path))
    raw = read_log_as_strings(spark, Path(path), PAIRS_COLUMNS)
    fields = raw.select(
        *[F.col(c).alias(f"raw_{c}") for c in (*PAIRS_COLUMNS, CORRUPT)],
        BAD_LINE,
        integer_id("user").alias("user_id"),
        integer_id("item").alias("video_id"),
    )
    # The timestamp parsed once (with_numbers): epoch ms, rounded HALF_UP to a long.
    parsed = with_numbers(fields, {"raw_timestamp": 1}).withColumn(
        "time_ms", F.col(long_column("raw_timestamp"))
    )
    plausible = time_rules(F.col("time_ms"), "timestamp", quality, now_ms)
    time_ok = F.col("time_ms").isNotNull()
    for broken, _ in plausible:
        time_ok = time_ok & ~F.coalesce(broken, F.lit(False))
    rules = [
        *malformed_rules(f"raw_{CORRUPT}", BAD_LINE),
        (F.col("user_id").isNull(), "user missing or not an integer"),
        (F.col("video_id").isNull(), "item missing or not an integer"),
        *number_rules("timestamp", "raw_timestamp"),
        *plausible,
    ]
    return with_quarantine_reason(parsed, rules).select(
        *[f"raw_{c}" for c in (*PAIRS_COLUMNS, CORRUPT)],
        "user_id",
        "video_id",
        F.when(time_ok, F.timestamp_millis("time_ms")).alias("event_ts"),
        F.lit(DATASET).alias("source"),
        F.when(time_ok, utc_day(F.col("time_ms"))).alias("ds"),
        QUARANTINE_REASON,
    )


def check_sequences_agree(
    spark: SparkSession,
    csv_path: Path,
    tsv_path: Path,
    quality: QualityConfig | None = None,
    now_ms: int | None = None,
) -> None:
    """pairs.tsv must hold the same user -> items multiset as the valid rows of pairs.csv,
    else InputFileError."""

    def key(column: Column) -> Column:
        text = F.trim(column)
        return F.coalesce(text.try_cast("bigint").cast("string"), text)

    # What a reader keeps of pairs.csv: the rows that pass the row rules (the rest go to
    # quarantine, and the tsv, derived from the kept log, never lists them), each exact
    # duplicate once.
    from_csv = (
        read_interactions(spark, csv_path, quality, now_ms)
        .where(F.col(QUARANTINE_REASON).isNull())
        .dropDuplicates(["user_id", "video_id", "event_ts"])
        .select(
            F.col("user_id").cast("string").alias("user"),
            F.col("video_id").cast("string").alias("item"),
        )
        .groupBy("user", "item")
        .agg(F.count(F.lit(1)).alias("in_csv"))
    )
    lines = (
        spark.read.option("lineSep", _line_separator(tsv_path))
        .text(str(tsv_path))
        .select(F.regexp_replace("value", "^\ufeff|\r$", "").alias("value"))
        .where(F.trim("value") != "")
    )
    from_tsv = (
        lines.select(
            F.split("value", "\t", 2).alias("fields"),
        )
        .select(
            key(F.get("fields", 0)).alias("user"),
            F.explode(F.split(F.trim(F.coalesce(F.get("fields", 1), F.lit(""))), r"\s+")).alias(
                "item"
            ),
        )
        .where(F.col("item") != "")
        .select("user", key(F.col("item")).alias("item"))
        .groupBy("user", "item")
        .agg(F.count(F.lit(1)).alias("in_tsv"))
    )
    differ = (
        from_csv.join(from_tsv, ["user", "item"], "full_outer")
        .select(
            "user",
            "item",
            F.coalesce("in_csv", F.lit(0)).alias("in_csv"),
            F.coalesce("in_tsv", F.lit(0)).alias("in_tsv"),
        )
        .where(F.col("in_csv") != F.col("in_tsv"))
    )
    examples = differ.orderBy("user", "item").limit(3).collect()
    if examples:
        total = differ.count()
        shown = "; ".join(
            f"user {r['user']} item {r['item']}: {r['in_csv']} in {csv_path.name}, "
            f"{r['in_tsv']} in {tsv_path.name}"
            for r in examples
        )
        raise InputFileError(
            tsv_path,
            f"does not agree with {csv_path}: {total} (user, item) pair(s) occur a different "
            f"number of times, e.g. {shown}",
        )


def _line_separator(path: Path) -> str:
    """CRLF when the file's first lines end so, else LF (a bare CR stays inside a field)."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    return "\r\n" if b"\r\n" in head else "\n"


def _read_titles(spark: SparkSession, path: Path) -> DataFrame:
    """`id, title` lines, no header: split on the first comma only; an empty title is null."""
    _check_not_empty(path)
    lines = (
        spark.read.option("lineSep", _line_separator(path))
        .text(str(path))
        .select(F.regexp_replace("value", "^\ufeff|\r$", "").alias("line"))
        # A blank line is no row (e.g. a trailing empty line), not an invented empty video.
        .where(F.trim("line") != "")
    )
    has_comma = F.col("line").contains(",")
    parsed = lines.select(
        F.when(has_comma, F.regexp_extract("line", r"^([^,]*),", 1))
        .otherwise(F.col("line"))
        .alias("raw_video_id"),
        F.when(has_comma, F.regexp_extract("line", r"(?s)^[^,]*,(.*)$", 1)).alias("raw_title"),
    ).select(
        "raw_video_id",
        "raw_title",
        integer_id("raw_video_id").alias("title_video_id"),
        F.when(F.trim("raw_title") != "", F.trim("raw_title")).alias("caption"),
        F.col("raw_title").isNotNull().alias("_has_comma"),
    )
    rules = [
        (~F.col("_has_comma"), "no comma between id and title"),
        (F.col("title_video_id").isNull(), "video_id missing or not an integer"),
    ]
    return with_quarantine_reason(parsed, rules).withColumnRenamed(
        QUARANTINE_REASON, "_title_reason"
    )


def _check_likes(path: Path) -> None:
    """Not empty; the first line holds 3 tab-separated fields."""
    _check_not_empty(path)
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        first = fh.readline(1 << 20).rstrip("\r\n")
    if first and "\t" not in first:
        for other in (",", ";", "|", " "):
            if other in first.strip():
                raise InputFileError(
                    path, f"wrong separator: expected '\\t', the first line uses {other!r}"
                )
    if first and len(first.split("\t")) != 3:
        raise InputFileError(
            path,
            f"expected 3 tab-separated fields (item, likes, views), the first line has "
            f"{len(first.split(chr(9)))}",
        )


def _read_likes(spark: SparkSession, path: Path) -> DataFrame:
    """`item<TAB>likes<TAB>views`, no header."""
    _check_likes(path)
    lines = (
        spark.read.option("lineSep", _line_separator(path))
        .text(str(path))
        .select(F.regexp_replace("value", "^\ufeff|\r$", "").alias("line"))
        .where(F.trim("line") != "")
        .select(F.split("line", "\t").alias("f"))
    )
    parsed = lines.select(
        F.get("f", 0).alias("raw_item"),
        F.get("f", 1).alias("raw_likes"),
        F.get("f", 2).alias("raw_views"),
        F.size("f").alias("_fields"),
    ).select(
        "*",
        integer_id("raw_item").alias("likes_video_id"),
        integer_id("raw_likes").alias("likes"),
        integer_id("raw_views").alias("views"),
    )
    rules = [
        (F.col("_fields") != 3, MALFORMED),
        (F.col("likes_video_id").isNull(), "item missing or not an integer"),
        (F.col("likes").isNull(), "likes missing or not an integer"),
        (F.col("likes") < 0, "negative likes"),
        (F.col("views").isNull(), "views missing or not an integer"),
        (F.col("views") < 0, "negative views"),
    ]
    return with_quarantine_reason(parsed, rules).withColumnRenamed(
        QUARANTINE_REASON, "_likes_reason"
    )


def read_videos(
    spark: SparkSession, titles_path: Path | None = None, likes_path: Path | None = None
) -> DataFrame:
    """The catalog: captions from title_en.csv, likes and views from likes_and_views.txt.

    Both files are joined on the item id (full outer: an item in one file only is kept);
    a row that breaks a rule in either file is quarantined with that file's reason.
    """
    titles = _read_titles(spark, titles_path) if titles_path else None
    likes = _read_likes(spark, likes_path) if likes_path else None
    if titles is not None and likes is not None:
        joined = titles.join(
            likes, titles["title_video_id"] == likes["likes_video_id"], "full_outer"
        )
        return joined.select(
            "raw_video_id",
            "raw_title",
            "raw_item",
            "raw_likes",
            "raw_views",
            F.coalesce("title_video_id", "likes_video_id").alias("video_id"),
            "caption",
            "likes",
            "views",
            F.coalesce("_title_reason", "_likes_reason").alias(QUARANTINE_REASON),
        )
    if titles is not None:
        return titles.select(
            "raw_video_id",
            "raw_title",
            F.col("title_video_id").alias("video_id"),
            "caption",
            F.col("_title_reason").alias(QUARANTINE_REASON),
        )
    if likes is not None:
        return likes.select(
            "raw_item",
            "raw_likes",
            "raw_views",
            F.col("likes_video_id").alias("video_id"),
            "likes",
            "views",
            F.col("_likes_reason").alias(QUARANTINE_REASON),
        )
    raise ValueError("read_videos needs the title file, the likes file or both")
