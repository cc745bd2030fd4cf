"""Partial daily aggregates, so that a day's feature cost does not grow with the 28-day window
it summarizes.

Day D's features used to read every view of the long window (28 days) and sort them all by
user. Instead, `compute_features` writes three small tables from day D's own views:

  aggregates/user_daily/ds=D    per user with a view on D: views, the numerator and
                                denominator of every rate, views per category and per UTC
                                hour, the last view's time
  aggregates/video_daily/ds=D   per video viewed on D: exposures, the rates' numerators and
                                denominators, the longest duration seen, the first view's time
  aggregates/user_recent/ds=D   per user, the last K views through D within the long window
                                (K: the largest of short_term_views, fatigue_views and
                                sequence_length), carried over from the previous day's

and combines the window's daily rows (one per user and day, one per video and day) with
user_recent(D). The result equals the whole-window computation (features/compute.py, kept as
`features.incremental=false` and checked equal in tests/test_partials.py) up to float
rounding, with one documented difference: a view counts in the category its video had on the
day of the view, where the whole-window pass re-reads every view with day D's categories.

Rates are sums of numerators over sums of denominators (never a mean of daily means): a share
is flagged views over views, a mean watch ratio is the sum of ratios over the views that log
one, so a day with few views weighs what it holds. The thresholds (completion, skip) are
applied when a day's partials are written: a changed threshold needs a reprocess of the
window, as the stored features do.

A window day without partials (a home written before them, an older day normalized later) gets
them from its normalized views when a later day needs them; user_recent falls back to the
whole window's views when the previous day's is missing or older than a day with data.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from features.compute import (
    ENGAGEMENT,
    RATE_NAMES,
    RATE_SOURCE,
    USER_HORIZONS,
    VIDEO_RATE_NAMES,
    _rates,
    assemble_user_features,
    assemble_video_features,
    read_days,
    with_recency,
)
from lake.commit import staged_partition
from lake.partitions import days_back, partition, partition_name
from lake.schema import INTERACTIONS
from reelflow.config import FeatureConfig
from reelflow.paths import Paths

USER_DAILY, VIDEO_DAILY, USER_RECENT = "user_daily", "video_daily", "user_recent"
# What user_recent keeps of a view: everything the short-term rates, the fatigue shares and
# the sequences read (the category is joined from day D's catalog when it is used).
RECENT_COLUMNS = (
    "user_id",
    "video_id",
    "event_ts",
    "watch_ratio",
    *(f"is_{a}" for a in ENGAGEMENT),
)


def table(paths: Paths, name: str):
    return paths.lake / "aggregates" / name


def _parts(has: set[str], cfg: FeatureConfig, names) -> list[Column]:
    """Per rate, `<rate>__num` and `<rate>__den` over the grouped rows: the rate over any set of
    days is sum(num) / sum(den), as `compute._rates` computes it over their views (a share:
    flagged views over views, null where the flag is not logged; a mean: the sum of the ratios
    over the views that log one)."""
    ratio = F.col("watch_ratio")
    flags = {
        "completion_rate": lambda: ratio >= cfg.completion_threshold,
        "skip_rate": lambda: ratio < cfg.skip_max_watch_ratio,
        **{f"{a}_rate": lambda flag=f"is_{a}": F.col(flag) == 1 for a in ENGAGEMENT},
    }
    out = []
    for name in names:
        logged = RATE_SOURCE[name] in has
        if name == "mean_watch_ratio":
            num = F.sum(ratio) if logged else F.lit(None)
            den = F.count(ratio) if logged else F.lit(0)
        else:
            num = F.sum(flags[name]().cast("double")) if logged else F.lit(None)
            den = F.count(F.lit(1))
        out += [num.cast("double").alias(f"{name}__num"), den.cast("long").alias(f"{name}__den")]
    return out


def _combined(names, where: Column, suffix: str) -> list[Column]:
    return [
        F.try_divide(
            F.sum(F.when(where, F.col(f"{name}__num"))), F.sum(F.when(where, F.col(f"{name}__den")))
        ).alias(f"{name}_{suffix}")
        for name in names
    ]


def daily_partials(views: DataFrame, cfg: FeatureConfig) -> dict[str, DataFrame]:
    """One day's user_daily and video_daily rows; `views`: that day's views with
    `primary_category`."""
    has = set(views.columns)
    users = views.groupBy("user_id").agg(
        F.count(F.lit(1)).alias("views"),
        *_parts(has, cfg, RATE_NAMES),
        F.max("event_ts").alias("last_view_ts"),
    )
    by_category = (
        views.where(F.col("primary_category").isNotNull())
        .groupBy("user_id", F.col("primary_category").cast("long").alias("bucket"))
        .agg(F.count(F.lit(1)).alias("n"))
        .groupBy("user_id")
        .agg(F.map_from_entries(F.collect_list(F.struct("bucket", "n"))).alias("category_views"))
    )
    by_hour = (
        views.groupBy("user_id", F.hour("event_ts").cast("long").alias("bucket"))
        .agg(F.count(F.lit(1)).alias("n"))
        .groupBy("user_id")
        .agg(F.map_from_entries(F.collect_list(F.struct("bucket", "n"))).alias("hour_views"))
    )
    user_daily = users.join(by_category, "user_id", "left").join(by_hour, "user_id", "left")
    video_daily = views.groupBy("video_id").agg(
        F.count(F.lit(1)).alias("exposures"),
        *_parts(has, cfg, VIDEO_RATE_NAMES),
        (F.max("duration_ms") if "duration_ms" in has else F.lit(None))
        .cast("long")
        .alias("max_duration_ms"),
        F.min("event_ts").alias("first_view_ts"),
    )
    return {USER_DAILY: user_daily, VIDEO_DAILY: video_daily}


def write(frame: DataFrame, paths: Paths, name: str, ds: str) -> None:
    with staged_partition(table(paths, name), partition_name(ds)) as staging:
        frame.coalesce(1).write.parquet(str(staging))


def ensure_window(
    spark: SparkSession, paths: Paths, ds: str, cfg: FeatureConfig, categories_of
) -> list[str]:
    """The window's days that hold views (normalized partitions), giving any of them before
    D without partials its partials (from its own views and its own catalog's categories)."""
    interactions = paths.normalized(INTERACTIONS)
    days = [d for d in days_back(ds, cfg.long_window_days) if partition(interactions, d).exists()]
    for day in days[:-1] if days and days[-1] == ds else days:
        if all(partition(table(paths, n), day).exists() for n in (USER_DAILY, VIDEO_DAILY)):
            continue
        views = spark.read.parquet(str(partition(interactions, day)))
        views = views.join(categories_of(day), "video_id", "left")
        for name, frame in daily_partials(views, cfg).items():
            write(frame, paths, name, day)
    return days


def recent_views(
    spark: SparkSession,
    paths: Paths,
    today: DataFrame,
    ds: str,
    window_days: list[str],
    cfg: FeatureConfig,
) -> DataFrame:
    """user_recent(D): each user's last K views through D in the long window, from
    user_recent of the window's previous day with views plus day D's views; from the whole
    window's views when that day has none stored. Written, then returned with `_recency`."""
    keep = max(cfg.short_term_views, cfg.fatigue_views, cfg.sequence_length)
    # A view's own day is `view_ds`: `ds` is the partition's (the day the list is as of).
    columns = ["view_ds", *(c for c in RECENT_COLUMNS if c in today.columns)]
    earlier = [d for d in window_days if d < ds]
    stored = table(paths, USER_RECENT)
    if earlier and partition(stored, earlier[-1]).exists():
        pool = (
            spark.read.parquet(str(partition(stored, earlier[-1])))
            .where(F.col("view_ds") >= days_back(ds, cfg.long_window_days)[0])
            .select(*columns)
            .unionByName(today.withColumn("view_ds", F.lit(ds)).select(*columns))
        )
    else:
        pool = (
            read_days(spark, paths.normalized(INTERACTIONS), window_days)
            .withColumn("view_ds", F.col("ds").cast("string"))
            .select(*columns)
        )
    recent = with_recency(pool).where(F.col("_recency") <= keep).drop("_recency")
    write(recent, paths, USER_RECENT, ds)
    return with_recency(spark.read.parquet(str(partition(stored, ds))))


def user_features(
    spark: SparkSession,
    paths: Paths,
    recent: DataFrame,
    window_days: list[str],
    ds: str,
    cfg: FeatureConfig,
) -> DataFrame:
    """user_features(D) from the window's user_daily rows and user_recent(D) (`recent`, with
    `_recency` and `primary_category`)."""
    daily = read_days(spark, table(paths, USER_DAILY), window_days)
    in_mid = F.col("ds") >= days_back(ds, cfg.mid_window_days)[0]
    horizons = {"7d": in_mid, "28d": F.lit(True)}
    base = daily.groupBy("user_id").agg(
        F.sum(F.when(F.col("ds") == ds, F.col("views")).otherwise(0)).alias("views_1d"),
        F.sum(F.when(in_mid, F.col("views")).otherwise(0)).alias("views_7d"),
        F.sum("views").alias("views_28d"),
        *[rate for h, where in horizons.items() for rate in _combined(RATE_NAMES, where, h)],
        F.max("last_view_ts").alias("_last_view_ts"),
    )
    short = recent.groupBy("user_id").agg(
        *_rates(recent, cfg, F.col("_recency") <= cfg.short_term_views, USER_HORIZONS[0])
    )
    base = base.join(short, "user_id", "left")

    def counts(column: str) -> DataFrame:
        return (
            daily.select("user_id", F.explode(column).alias("bucket", "n"))
            .groupBy("user_id", "bucket")
            .agg(F.sum("n").alias("n"))
        )

    return assemble_user_features(
        base, counts("category_views"), counts("hour_views"), recent, ds, cfg
    )


def video_features(
    spark: SparkSession,
    paths: Paths,
    catalog: DataFrame,
    window_days: list[str],
    ds: str,
    cfg: FeatureConfig,
    has: set[str],
) -> DataFrame:
    """video_features(D) of day D's catalog from the window's video_daily rows."""
    daily = read_days(spark, table(paths, VIDEO_DAILY), window_days)
    in_mid = F.col("ds") >= days_back(ds, cfg.mid_window_days)[0]
    on_day = F.col("ds") == ds
    stats = daily.groupBy("video_id").agg(
        F.sum(F.when(on_day, F.col("exposures")).otherwise(0)).alias("exposures_1d"),
        F.sum(F.when(in_mid, F.col("exposures")).otherwise(0)).alias("exposures_7d"),
        *_combined(VIDEO_RATE_NAMES, on_day, "1d"),
        *_combined(VIDEO_RATE_NAMES, in_mid, "7d"),
        F.max("max_duration_ms").alias("_viewed_duration_ms"),
        F.min("first_view_ts").alias("_first_view_ts"),
    )
    return assemble_video_features(stats, catalog, ds, cfg, has)


def seen_before(
    spark: SparkSession, paths: Paths, window_days: list[str], ds: str
) -> DataFrame | None:
    """The distinct (user_id, video_id) pairs viewed on the window's days before D (two columns
    of their normalized partitions): the repeats of the rewatch label."""
    earlier = read_days(spark, paths.normalized(INTERACTIONS), [d for d in window_days if d < ds])
    return None if earlier is None else earlier.select("user_id", "video_id").distinct()
