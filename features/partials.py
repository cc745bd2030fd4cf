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

A range of as-of days (a first load) is one job per table: the partials of every day in one
grouped pass, each window row joined to the as-of days whose window holds it (`window_map`),
and each view kept in user_recent for exactly the as-of days on which it is among its user's
last K (until the K-th later view's day, at most the long window): one pass over the views,
not days x window.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from features.compute import (
    ASOF,
    ENGAGEMENT,
    RATE_NAMES,
    RATE_SOURCE,
    USER_HORIZONS,
    USER_KEY,
    VIDEO_KEY,
    VIDEO_RATE_NAMES,
    _rates,
    assemble_user_features,
    assemble_video_features,
    categories,
    with_recency,
)
from features.labels import seen_in_window
from lake.commit import write_days
from lake.partitions import days_back, partition
from lake.schema import INTERACTIONS, VIDEOS
from lake.spark import read_days
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
    """The user_daily and video_daily rows of each day of `views` (with `ds` and
    `primary_category`)."""
    has = set(views.columns)
    users = views.groupBy("ds", "user_id").agg(
        F.count(F.lit(1)).alias("views"),
        *_parts(has, cfg, RATE_NAMES),
        F.max("event_ts").alias("last_view_ts"),
    )
    by_category = (
        views.where(F.col("primary_category").isNotNull())
        .groupBy("ds", "user_id", F.col("primary_category").cast("long").alias("bucket"))
        .agg(F.count(F.lit(1)).alias("n"))
        .groupBy("ds", "user_id")
        .agg(F.map_from_entries(F.collect_list(F.struct("bucket", "n"))).alias("category_views"))
    )
    by_hour = (
        views.groupBy("ds", "user_id", F.hour("event_ts").cast("long").alias("bucket"))
        .agg(F.count(F.lit(1)).alias("n"))
        .groupBy("ds", "user_id")
        .agg(F.map_from_entries(F.collect_list(F.struct("bucket", "n"))).alias("hour_views"))
    )
    key = ["ds", "user_id"]
    user_daily = users.join(by_category, key, "left").join(by_hour, key, "left")
    video_daily = views.groupBy("ds", "video_id").agg(
        F.count(F.lit(1)).alias("exposures"),
        *_parts(has, cfg, VIDEO_RATE_NAMES),
        (F.max("duration_ms") if "duration_ms" in has else F.lit(None))
        .cast("long")
        .alias("max_duration_ms"),
        F.min("event_ts").alias("first_view_ts"),
    )
    return {USER_DAILY: user_daily, VIDEO_DAILY: video_daily}


def window_map(
    paths: Paths, days: list[str], cfg: FeatureConfig
) -> list[tuple[str, str, bool, bool]]:
    """(ds, asof, on_day, in_mid): each day with normalized views in the long window of an
    as-of day of `days`, with whether it is that day itself and within its mid window."""
    interactions = paths.normalized(INTERACTIONS)
    held: dict[str, bool] = {}
    rows = []
    for asof in days:
        mid_start = days_back(asof, cfg.mid_window_days)[0]
        for day in days_back(asof, cfg.long_window_days):
            if day not in held:
                held[day] = partition(interactions, day).exists()
            if held[day]:
                rows.append((day, asof, day == asof, day >= mid_start))
    return rows


def day_categories(spark: SparkSession, paths: Paths, days: list[str], fallback: str) -> DataFrame:
    """(ds, video_id, primary_category): each day's catalog's categories; a day without a
    catalog partition (an older home) gets the `fallback` day's, the first as-of day that
    needs it, as a run of that day would."""
    videos = paths.normalized(VIDEOS)
    listed = [d for d in days if partition(videos, d).exists()]
    missing = [d for d in days if d not in listed]
    frames = []
    if listed:
        frames.append(categories(read_days(spark, videos, listed), ("ds", "video_id")))
    if missing:
        other = categories(spark.read.parquet(str(partition(videos, fallback))))
        frames.append(other.crossJoin(spark.createDataFrame([(d,) for d in missing], "ds string")))
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out.select("ds", "video_id", "primary_category")


def views_with_partials(
    spark: SparkSession, paths: Paths, days: list[str], window: list[str], cfg: FeatureConfig
) -> DataFrame:
    """Writes the partials of the as-of `days` and of any earlier window day without them
    (each from its own views and its own catalog's categories) in one job; returns the as-of
    days' views (`ds`, `primary_category`), persisted."""
    earlier = [
        d
        for d in window
        if d < days[0]
        and not all(partition(table(paths, n), d).exists() for n in (USER_DAILY, VIDEO_DAILY))
    ]
    need = sorted({*earlier, *days})
    views = (
        read_days(spark, paths.normalized(INTERACTIONS), need)
        .join(day_categories(spark, paths, need, days[0]), ["ds", "video_id"], "left")
        .persist()
    )
    for name, frame in daily_partials(views, cfg).items():
        write_days(frame, table(paths, name), need)
    return views.where(F.col("ds").isin(days)) if earlier else views


def recent_views(
    spark: SparkSession,
    paths: Paths,
    today: DataFrame,
    days: list[str],
    window: list[str],
    cfg: FeatureConfig,
) -> DataFrame:
    """user_recent of each as-of day: each user's last K views through it in its long window,
    from the stored user_recent of the last window day before the first as-of day plus the
    as-of days' views (`today`); from the window's views when that day has none stored.
    Written, then returned with `asof` and `_recency`."""
    keep = max(cfg.short_term_views, cfg.fatigue_views, cfg.sequence_length)
    # A view's own day is `view_ds`; `ds` is the partition's (the day the list is as of).
    columns = ["view_ds", *(c for c in RECENT_COLUMNS if c in today.columns)]
    earlier = [d for d in window if d < days[0]]
    stored = table(paths, USER_RECENT)
    pool = today.withColumn("view_ds", F.col("ds")).select(*columns)
    if earlier and partition(stored, earlier[-1]).exists():
        # That day's last K hold every earlier view that can still be among the last K.
        previous = spark.read.parquet(str(partition(stored, earlier[-1])))
        pool = previous.select(*columns).unionByName(pool)
    elif earlier:
        views = read_days(spark, paths.normalized(INTERACTIONS), earlier)
        pool = views.withColumn("view_ds", F.col("ds")).select(*columns).unionByName(pool)
    # A view is among its user's last K from its own day until the day of the K-th view after
    # it (exclusive), and within the long window: exploded to exactly those as-of days.
    later = Window.partitionBy("user_id").orderBy("event_ts", "video_id")
    seen_on = F.to_date("view_ds")
    first = F.greatest(seen_on, F.lit(days[0]).cast("date"))
    until = F.least(
        F.date_add(seen_on, cfg.long_window_days - 1),
        F.coalesce(F.date_sub(F.to_date("_pushed_out"), 1), F.lit(days[-1]).cast("date")),
        F.lit(days[-1]).cast("date"),
    )
    as_of = spark.createDataFrame([(d,) for d in days], f"{ASOF} string")
    recent = (
        pool.withColumn("_pushed_out", F.lead("view_ds", keep).over(later))
        .where(first <= until)
        .withColumn(
            ASOF, F.explode(F.transform(F.sequence(first, until), lambda d: d.cast("string")))
        )
        .join(F.broadcast(as_of), ASOF)
        .select(*columns, F.col(ASOF).alias("ds"))
    )
    write_days(recent, stored, days)
    written = read_days(spark, stored, days).withColumnRenamed("ds", ASOF)
    return with_recency(written, USER_KEY)


def _mapped(spark: SparkSession, daily: DataFrame, mapping: list) -> DataFrame:
    """Window rows (`ds`) joined to the as-of days whose window holds them."""
    frame = spark.createDataFrame(
        mapping, f"ds string, {ASOF} string, on_day boolean, in_mid boolean"
    )
    return daily.join(F.broadcast(frame), "ds")


def user_features(
    spark: SparkSession,
    paths: Paths,
    recent: DataFrame,
    mapping: list,
    cfg: FeatureConfig,
) -> DataFrame:
    """user_features of each as-of day from its window's user_daily rows and its user_recent
    (`recent`, with `asof`, `_recency` and `primary_category`)."""
    window = sorted({row[0] for row in mapping})
    daily = _mapped(spark, read_days(spark, table(paths, USER_DAILY), window), mapping)
    horizons = {"7d": F.col("in_mid"), "28d": F.lit(True)}
    base = daily.groupBy(*USER_KEY).agg(
        F.sum(F.when(F.col("on_day"), F.col("views")).otherwise(0)).alias("views_1d"),
        F.sum(F.when(F.col("in_mid"), F.col("views")).otherwise(0)).alias("views_7d"),
        F.sum("views").alias("views_28d"),
        *[rate for h, where in horizons.items() for rate in _combined(RATE_NAMES, where, h)],
        F.max("last_view_ts").alias("_last_view_ts"),
    )
    short = recent.groupBy(*USER_KEY).agg(
        *_rates(recent, cfg, F.col("_recency") <= cfg.short_term_views, USER_HORIZONS[0])
    )
    base = base.join(short, USER_KEY, "left")

    def counts(column: str) -> DataFrame:
        return (
            daily.select(*USER_KEY, F.explode(column).alias("bucket", "n"))
            .groupBy(*USER_KEY, "bucket")
            .agg(F.sum("n").alias("n"))
        )

    return assemble_user_features(base, counts("category_views"), counts("hour_views"), recent, cfg)


def video_features(
    spark: SparkSession,
    paths: Paths,
    catalog: DataFrame,
    mapping: list,
    cfg: FeatureConfig,
    has: set[str],
) -> DataFrame:
    """video_features of each as-of day's catalog (`catalog` with `asof`) from its window's
    video_daily rows."""
    window = sorted({row[0] for row in mapping})
    daily = _mapped(spark, read_days(spark, table(paths, VIDEO_DAILY), window), mapping)
    on_day, in_mid = F.col("on_day"), F.col("in_mid")
    stats = daily.groupBy(*VIDEO_KEY).agg(
        F.sum(F.when(on_day, F.col("exposures")).otherwise(0)).alias("exposures_1d"),
        F.sum(F.when(in_mid, F.col("exposures")).otherwise(0)).alias("exposures_7d"),
        *_combined(VIDEO_RATE_NAMES, on_day, "1d"),
        *_combined(VIDEO_RATE_NAMES, in_mid, "7d"),
        F.max("max_duration_ms").alias("_viewed_duration_ms"),
        F.min("first_view_ts").alias("_first_view_ts"),
    )
    return assemble_video_features(stats, catalog, cfg, has)


def seen_before(
    spark: SparkSession, paths: Paths, window: list[str], days: list[str], cfg: FeatureConfig
) -> DataFrame:
    """The (user_id, video_id, ds) of the as-of days' views whose pair was viewed on an earlier
    day of that day's long window (two columns of the window's normalized partitions): the
    repeats of the rewatch label."""
    pairs = read_days(spark, paths.normalized(INTERACTIONS), window).select(
        "user_id", "video_id", "ds"
    )
    return seen_in_window(pairs, days, cfg.long_window_days)
