"""Daily user, video and sequence features in Spark, stamped by the feature-time rule.

By default the window is summed from daily partial aggregates (features/partials.py); the
functions here compute it from every view of the window (`features.incremental=false`), and
assemble the rows either way.

Features computed from data through day D are stamped D+1 00:00 UTC
(`lake.schema.feature_time`), the first moment they could exist; a point-in-time join then
never shows a label on day D a feature that used day D. Every table is one `ds=D` partition
per day under lake/features, written by one job for a single day (the daily DAG) or for a
range of days (a first load): every frame is keyed by its as-of day (`asof`), so the same
code computes one day or many, and the range writes exactly the partitions day by day writes.
Each feature is defined once below; the README's feature table is written from this list.

user_features/ds=D  one row per user with a view in the long window (28 days)
  views_1d, views_7d, views_28d          views on day D, in the last 7 and 28 days
  <rate>_<h> for the horizons h = last50 (the user's last 50 views: short term),
             7d (mid term) and 28d (long term), and the rates
    mean_watch_ratio  mean watch_ms / duration_ms
    completion_rate   share of views with watch_ratio >= completion_threshold
    skip_rate         share of views with watch_ratio < skip_max_watch_ratio
    like_rate, follow_rate, comment_rate, share_rate   share of views with that action
  category_affinity     share of the 28-day views per primary category (a dense vector)
  recent_category_share share of the user's last `fatigue_views` (20) views per primary
                        category (a dense vector; uncategorized views count in the total):
                        what the user just binged, the ranker's fatigue signal
  top_categories        the top categories by 28-day views, with their shares in
  top_category_weights  (same order)
  active_hours          share of the 28-day views in each UTC hour (24 values)
  hours_since_last_view from the last view to the feature time
video_features/ds=D  one row per video in day D's catalog (never-viewed videos get zeros)
  exposures_1d, exposures_7d
  mean_watch_ratio_<w>, completion_rate_<w>, skip_rate_<w>, like_rate_<w>   w = 1d, 7d
  trend_velocity        exposures on day D over the 7-day daily mean (> 1: rising)
  duration_ms, primary_category
  hours_since_first_view  from the first view in the long window to the feature time
  age_hours             since upload (upload_ts) where the dataset has it, else since first view
  duration_bucket, age_bucket   the comparable-video group (config bucket bounds)
  normalized_performance  the video's 7-day performance over the exposure-weighted mean of
                          its group on the same day; performance is the mean watch ratio,
                          or the like rate, or (neither logged) exposures. Cold start grows a
                          new video's exposure when this is high.
user_sequences/ds=D  one row per user with a view in the long window
  seq_video_ids, seq_watch_ratios, seq_timestamps (epoch seconds): the user's last 50 views,
  oldest first; seq_length
labels/ds=D  one row per view on day D (see features/labels.py), stamped at the view

A dataset that lacks a column (KuaiRec logs no likes, MicroLens no watch time) gets nulls in
the features built on it: absent stays absent, it is never invented.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from features.labels import ranker_labels
from lake.commit import write_days
from lake.partitions import days_back, partition, partition_name
from lake.schema import (
    INTERACTIONS,
    LABELS,
    USER_FEATURES,
    USER_SEQUENCES,
    VIDEO_FEATURES,
    VIDEOS,
    feature_time,
)
from lake.spark import read_days, spark_session
from reelflow.config import Config, FeatureConfig, load_config
from reelflow.paths import Paths

ENGAGEMENT = ("like", "follow", "comment", "share")  # is_<action> flags of the schema
USER_HORIZONS = ("last50", "7d", "28d")
RATE_NAMES = (
    "mean_watch_ratio",
    "completion_rate",
    "skip_rate",
    *(f"{a}_rate" for a in ENGAGEMENT),
)
VIDEO_RATE_NAMES = ("mean_watch_ratio", "completion_rate", "skip_rate", "like_rate")
# The interaction column each rate is computed from: a dataset without it gets nulls.
RATE_SOURCE = {
    "mean_watch_ratio": "watch_ratio",
    "completion_rate": "watch_ratio",
    "skip_rate": "watch_ratio",
    **{f"{a}_rate": f"is_{a}" for a in ENGAGEMENT},
}


def read_window(spark: SparkSession, table_dir: Path, ds: str, n_days: int) -> DataFrame | None:
    """The partitions of the n days through ds that exist, with their `ds` column."""
    return read_days(spark, table_dir, days_back(ds, n_days))


def _share(flag: Column, where: Column) -> Column:
    """The share of rows in `where` for which `flag` holds (null: no rows, or no flag)."""
    return F.sum(F.when(where, flag.cast("double"))) / F.sum(F.when(where, 1))


def _rates(
    views: DataFrame, cfg: FeatureConfig, where: Column, suffix: str, names=RATE_NAMES
) -> list[Column]:
    """Watch-ratio and engagement rates over the rows in `where`, null where not logged."""
    has = set(views.columns)
    ratio = F.col("watch_ratio")
    definitions = {
        "mean_watch_ratio": lambda: F.avg(F.when(where, ratio)),
        "completion_rate": lambda: _share(ratio >= cfg.completion_threshold, where),
        "skip_rate": lambda: _share(ratio < cfg.skip_max_watch_ratio, where),
        **{f"{a}_rate": lambda flag=f"is_{a}": _share(F.col(flag) == 1, where) for a in ENGAGEMENT},
    }
    return [
        (rate() if RATE_SOURCE[name] in has else F.lit(None).cast("double")).alias(
            f"{name}_{suffix}"
        )
        for name, rate in definitions.items()
        if name in names
    ]


# The as-of day of every feature row: the day whose data (through its end) it summarizes. A
# single day's job has one value; a range's one per day. Written as the `ds` partition.
ASOF = "asof"
USER_KEY, VIDEO_KEY = [ASOF, "user_id"], [ASOF, "video_id"]


def stamp_of(asof: Column) -> Column:
    """`feature_time` of each row's as-of day: the next day's 00:00 UTC (the session's zone)."""
    return F.date_add(F.to_date(asof), 1).cast("timestamp")


def _hours_since(stamp: Column, ts: Column) -> Column:
    return (stamp.cast("double") - ts.cast("double")) / 3600.0


def _distribution(key: list[str], size: int, counts: DataFrame, name: str) -> DataFrame:
    """Per `key`: a dense vector of shares over 0..size-1 from (*key, bucket, n) counts."""
    return (
        counts.groupBy(*key)
        .agg(
            F.map_from_entries(F.collect_list(F.struct("bucket", "n"))).alias("_counts"),
            F.sum("n").alias("_total"),
        )
        .select(
            *key,
            F.expr(
                f"transform(sequence(0, {size - 1}), "
                "i -> cast(coalesce(_counts[i], 0) / _total as float))"
            ).alias(name),
        )
    )


def with_recency(views: DataFrame, key=("user_id",)) -> DataFrame:
    """Adds `_recency`: 1 for a user's latest view, 2 for the one before, ... (per `key`: the
    user, or the user as of a day). Computed once (one sort of the window) for both the
    short-term horizon and the sequences."""
    recent_first = Window.partitionBy(*key).orderBy(F.desc("event_ts"), F.desc("video_id"))
    return views.withColumn("_recency", F.row_number().over(recent_first))


def user_features(views: DataFrame, ds: str, cfg: FeatureConfig) -> DataFrame:
    """`views`: the long window of interactions with `ds`, `primary_category`, `_recency`."""
    in_mid = F.col("ds") >= days_back(ds, cfg.mid_window_days)[0]
    in_short = F.col("_recency") <= cfg.short_term_views
    horizons = {"last50": in_short, "7d": in_mid, "28d": F.lit(True)}
    views = views.withColumn(ASOF, F.lit(ds))
    base = views.groupBy(*USER_KEY).agg(
        F.sum(F.when(F.col("ds") == ds, 1).otherwise(0)).alias("views_1d"),
        F.sum(F.when(in_mid, 1).otherwise(0)).alias("views_7d"),
        F.count(F.lit(1)).alias("views_28d"),
        *[rate for h, where in horizons.items() for rate in _rates(views, cfg, where, h)],
        F.max("event_ts").alias("_last_view_ts"),
    )
    by_category = (
        views.where(F.col("primary_category").isNotNull())
        .groupBy(*USER_KEY, F.col("primary_category").alias("bucket"))
        .agg(F.count(F.lit(1)).alias("n"))
    )
    by_hour = views.groupBy(*USER_KEY, F.hour("event_ts").alias("bucket")).agg(
        F.count(F.lit(1)).alias("n")
    )
    return assemble_user_features(base, by_category, by_hour, views, cfg)


def assemble_user_features(
    base: DataFrame,
    by_category: DataFrame,
    by_hour: DataFrame,
    recent: DataFrame,
    cfg: FeatureConfig,
) -> DataFrame:
    """The user_features rows from their parts, whichever way they were counted (the whole
    window here, daily partial aggregates in features/partials.py), each keyed by (asof,
    user_id): `base` (view counts, every rate of every horizon, `_last_view_ts`), (*key,
    bucket, n) counts per category and per UTC hour, and `recent`, views with `_recency` and
    `primary_category` (at least the user's last `fatigue_views`)."""
    stamp = stamp_of(F.col(ASOF))
    affinity = _distribution(USER_KEY, cfg.num_categories, by_category, "category_affinity")
    # Fatigue: shares of the last views themselves, so an uncategorized view (bucket -1, outside
    # the vector) still counts in the total: one tagged video in 20 views is no binge.
    recent = _distribution(
        USER_KEY,
        cfg.num_categories,
        recent.where(F.col("_recency") <= cfg.fatigue_views)
        .groupBy(*USER_KEY, F.coalesce("primary_category", F.lit(-1)).alias("bucket"))
        .agg(F.count(F.lit(1)).alias("n")),
        "recent_category_share",
    )
    # Top categories by views, ties broken by the smaller id so reruns agree.
    top = (
        by_category.withColumn(
            "_share", F.col("n") / F.sum("n").over(Window.partitionBy(*USER_KEY))
        )
        .groupBy(*USER_KEY)
        .agg(
            F.slice(
                F.sort_array(
                    F.collect_list(F.struct(-F.col("n"), F.col("bucket"), F.col("_share")))
                ),
                1,
                cfg.top_categories,
            ).alias("_top")
        )
        .select(
            *USER_KEY,
            F.expr("transform(_top, t -> cast(t.bucket as long))").alias("top_categories"),
            F.expr("transform(_top, t -> cast(t._share as float))").alias("top_category_weights"),
        )
    )
    active = _distribution(USER_KEY, 24, by_hour, "active_hours")
    rates = [f"{r}_{h}" for h in USER_HORIZONS for r in RATE_NAMES]
    return (
        base.join(affinity, USER_KEY, "left")
        .join(recent, USER_KEY, "left")
        .join(top, USER_KEY, "left")
        .join(active, USER_KEY)
        .select(
            ASOF,
            F.col("user_id").cast("long"),
            stamp.alias("event_timestamp"),
            *[F.col(c).cast("long") for c in ("views_1d", "views_7d", "views_28d")],
            *[F.col(c).cast("float") for c in rates],
            # Users whose videos have no category get all-zero shares, not a null.
            *[
                F.coalesce(
                    name, F.array_repeat(F.lit(0.0).cast("float"), cfg.num_categories)
                ).alias(name)
                for name in ("category_affinity", "recent_category_share")
            ],
            F.coalesce("top_categories", F.array().cast("array<long>")).alias("top_categories"),
            F.coalesce("top_category_weights", F.array().cast("array<float>")).alias(
                "top_category_weights"
            ),
            "active_hours",
            _hours_since(stamp, F.col("_last_view_ts"))
            .cast("float")
            .alias("hours_since_last_view"),
        )
    )


def _bucket(value: Column, bounds: tuple[float, ...]) -> Column:
    """The index of the first bound above `value` (len(bounds) past the last; null stays null)."""
    out = F.lit(len(bounds))
    for i, bound in reversed(list(enumerate(bounds))):
        out = F.when(value < bound, i).otherwise(out)
    return F.when(value.isNotNull(), out)


def video_features(views: DataFrame, catalog: DataFrame, ds: str, cfg: FeatureConfig) -> DataFrame:
    """`views`: the long window of interactions with `ds`; `catalog`: day D's videos."""
    in_mid = F.col("ds") >= days_back(ds, cfg.mid_window_days)[0]
    on_day = F.col("ds") == ds
    has = set(views.columns)
    stats = (
        views.withColumn(ASOF, F.lit(ds))
        .groupBy(*VIDEO_KEY)
        .agg(
            F.sum(F.when(on_day, 1).otherwise(0)).alias("exposures_1d"),
            F.sum(F.when(in_mid, 1).otherwise(0)).alias("exposures_7d"),
            *_rates(views, cfg, on_day, "1d", VIDEO_RATE_NAMES),
            *_rates(views, cfg, in_mid, "7d", VIDEO_RATE_NAMES),
            (F.max("duration_ms") if "duration_ms" in has else F.lit(None).cast("long")).alias(
                "_viewed_duration_ms"
            ),
            F.min("event_ts").alias("_first_view_ts"),
        )
    )
    return assemble_video_features(stats, catalog.withColumn(ASOF, F.lit(ds)), cfg, has)


def assemble_video_features(
    stats: DataFrame, catalog: DataFrame, cfg: FeatureConfig, has: set[str]
) -> DataFrame:
    """The video_features rows of each as-of day's `catalog` from per-(asof, video) `stats`
    of the window (exposures_1d/7d, the 1d and 7d rates, `_viewed_duration_ms`,
    `_first_view_ts`), however they were counted; `has`: the interaction columns the dataset
    logs."""
    stamp = stamp_of(F.col(ASOF))
    listed = set(catalog.columns)
    video = catalog.select(
        *VIDEO_KEY,
        (F.col("primary_category") if "primary_category" in listed else F.lit(None)).alias(
            "primary_category"
        ),
        (F.col("duration_ms") if "duration_ms" in listed else F.lit(None))
        .cast("long")
        .alias("_listed_duration_ms"),
        (F.col("upload_ts") if "upload_ts" in listed else F.lit(None))
        .cast("timestamp")
        .alias("_upload_ts"),
    )
    joined = video.join(stats, VIDEO_KEY, "left")
    duration = F.coalesce("_listed_duration_ms", "_viewed_duration_ms")
    age_hours = _hours_since(stamp, F.coalesce("_upload_ts", "_first_view_ts"))
    if "watch_ratio" in has:
        performance = F.col("mean_watch_ratio_7d")
    elif "is_like" in has:
        performance = F.col("like_rate_7d")
    else:
        performance = F.col("exposures_7d").cast("double")
    shaped = joined.select(
        "*",
        duration.alias("_duration_ms"),
        age_hours.alias("_age_hours"),
        _bucket(duration / 1000.0, cfg.duration_buckets_s).alias("duration_bucket"),
        _bucket(age_hours / 24.0, cfg.age_buckets_days).alias("age_bucket"),
        F.when(F.col("exposures_7d") > 0, performance).alias("_performance"),
    )
    # The group's baseline: exposure-weighted mean performance of the comparable videos.
    group = Window.partitionBy(ASOF, "duration_bucket", "age_bucket")
    exposed = F.when(F.col("_performance").isNotNull(), F.col("exposures_7d"))
    baseline = F.try_divide(
        F.sum(F.col("_performance") * exposed).over(group), F.sum(exposed).over(group)
    )
    rate_columns = [f"{r}_{w}" for w in ("1d", "7d") for r in VIDEO_RATE_NAMES]
    return shaped.select(
        ASOF,
        F.col("video_id").cast("long"),
        stamp.alias("event_timestamp"),
        F.coalesce("exposures_1d", F.lit(0)).cast("long").alias("exposures_1d"),
        F.coalesce("exposures_7d", F.lit(0)).cast("long").alias("exposures_7d"),
        # A never-viewed video's rates are 0 where the dataset logs the signal, else null.
        *[
            (F.coalesce(c, F.lit(0.0)) if _logged(c, has) else F.col(c)).cast("float").alias(c)
            for c in rate_columns
        ],
        # Today's exposures against the 7-day daily mean: > 1 means the video is rising.
        F.coalesce(
            # Spark's ANSI mode fails on x / 0: only-older views leave exposures_7d at 0.
            F.try_divide(F.col("exposures_1d") * cfg.mid_window_days, F.col("exposures_7d")),
            F.lit(0.0),
        )
        .cast("float")
        .alias("trend_velocity"),
        F.coalesce("_duration_ms", F.lit(0)).cast("long").alias("duration_ms"),
        F.coalesce("primary_category", F.lit(-1)).cast("long").alias("primary_category"),
        F.coalesce(_hours_since(stamp, F.col("_first_view_ts")), F.lit(-1.0))
        .cast("float")
        .alias("hours_since_first_view"),
        F.col("_age_hours").cast("float").alias("age_hours"),
        F.col("duration_bucket").cast("long"),
        F.col("age_bucket").cast("long"),
        F.try_divide(F.col("_performance"), baseline).cast("float").alias("normalized_performance"),
    )


def _logged(rate_column: str, has: set[str]) -> bool:
    return RATE_SOURCE[rate_column.rsplit("_", 1)[0]] in has


def user_sequences(views: DataFrame, cfg: FeatureConfig) -> DataFrame:
    """Each user's last `sequence_length` views in the long window as of each day (`views`
    with `asof` and `_recency`), oldest first."""
    ratio = F.col("watch_ratio") if "watch_ratio" in views.columns else F.lit(None)
    last = views.where(F.col("_recency") <= cfg.sequence_length)
    ordered = last.groupBy(*USER_KEY).agg(
        F.sort_array(
            F.collect_list(F.struct("event_ts", "video_id", ratio.cast("float").alias("r")))
        ).alias("_views")
    )
    return ordered.select(
        ASOF,
        F.col("user_id").cast("long"),
        stamp_of(F.col(ASOF)).alias("event_timestamp"),
        F.expr("transform(_views, v -> cast(v.video_id as long))").alias("seq_video_ids"),
        (
            F.expr("transform(_views, v -> v.r)")
            if "watch_ratio" in views.columns
            else F.lit(None).cast("array<float>")
        ).alias("seq_watch_ratios"),
        F.expr("transform(_views, v -> cast(unix_seconds(v.event_ts) as long))").alias(
            "seq_timestamps"
        ),
        F.size("_views").cast("long").alias("seq_length"),
    )


def compute_features(
    ds: str, config: Config | None = None, paths: Paths | None = None
) -> dict[str, Any]:
    """Day D's features, user_sequences and labels: the daily DAG's job."""
    return compute_features_days([ds], config, paths)[ds]


def compute_features_days(
    days: list[str], config: Config | None = None, paths: Paths | None = None
) -> dict[str, dict[str, Any]]:
    """The features of each of `days` (as-of days), as `compute_features` of each writes them
    (the same partitions and counts), in one job per table: a first load of a long history
    costs about one pass over it. Returns each day's summary."""
    config = config or load_config()
    paths = paths or Paths.from_env()
    days = sorted(set(days))
    for ds in days:
        partition_name(ds)  # a bad day stops here, before anything is written
    spark = spark_session(config.spark)
    cfg = config.features
    viewed = [d for d in days if partition(paths.normalized(INTERACTIONS), d).exists()]
    if len(days) > 1 and not (cfg.incremental and viewed == days):
        # The whole window is a per-day reference (and the way for a day without views).
        return {ds: compute_features_days([ds], config, paths)[ds] for ds in days}
    if cfg.incremental and viewed:
        outputs, persisted = _from_partials(spark, paths, days, config)
        how = "daily partial aggregates"
    else:
        outputs, persisted = _whole_window(spark, paths, days[0], config)
        how = "the whole window"
    rows: dict[str, dict[str, int]] = {ds: {} for ds in days}
    for name, frame in outputs.items():
        table = paths.features(name)
        write_days(frame.withColumnRenamed(ASOF, "ds"), table, days)
        counted = dict(read_days(spark, table, days).groupBy("ds").count().collect())
        for ds in days:
            rows[ds][name] = counted.get(ds, 0)
    for frame in persisted:
        frame.unpersist()
    return {
        ds: {"ds": ds, "feature_time": feature_time(ds).isoformat(), "rows": rows[ds], "from": how}
        | ({"range": [days[0], days[-1]]} if len(days) > 1 else {})
        for ds in days
    }


def categories(catalog: DataFrame, key=("video_id",)) -> DataFrame:
    """(*key, primary_category) of a catalog (null where the dataset has none)."""
    if "primary_category" in catalog.columns:
        return catalog.select(*key, "primary_category")
    return catalog.select(*key, F.lit(None).cast("int").alias("primary_category"))


def _whole_window(
    spark: SparkSession, paths: Paths, ds: str, config: Config
) -> tuple[dict[str, DataFrame], list[DataFrame]]:
    """Day D's frames from every view of its window, re-read and sorted: the reference the
    partials are checked against, and the way for a day without views of its own."""
    from features.labels import seen_in_window

    cfg = config.features
    catalog = spark.read.parquet(str(partition(paths.normalized(VIDEOS), ds)))
    views = read_window(spark, paths.normalized(INTERACTIONS), ds, cfg.long_window_days)
    if views is None:
        raise FileNotFoundError(
            f"no normalized interactions through {partition_name(ds)} under {paths.normalized(INTERACTIONS)}"
        )
    views = with_recency(views.join(categories(catalog), "video_id", "left")).persist()
    seen = seen_in_window(views, [ds], cfg.long_window_days)
    outputs = {
        USER_FEATURES: user_features(views, ds, cfg),
        VIDEO_FEATURES: video_features(views, catalog, ds, cfg),
        USER_SEQUENCES: user_sequences(views.withColumn(ASOF, F.lit(ds)), cfg),
        LABELS: ranker_labels(
            views.where(F.col("ds") == ds), cfg, config.ranker, seen
        ).withColumnRenamed("ds", ASOF),
    }
    return outputs, [views]


def _from_partials(
    spark: SparkSession, paths: Paths, days: list[str], config: Config
) -> tuple[dict[str, DataFrame], list[DataFrame]]:
    """The as-of days' frames from daily partial aggregates (features/partials.py), writing
    the days' own partials first."""
    from features import partials

    cfg = config.features
    mapping = partials.window_map(paths, days, cfg)
    window = sorted({row[0] for row in mapping})
    today = partials.views_with_partials(spark, paths, days, window, cfg)
    catalog = read_days(spark, paths.normalized(VIDEOS), days).withColumnRenamed("ds", ASOF)
    by_video = categories(catalog, VIDEO_KEY)
    recent = partials.recent_views(spark, paths, today, days, window, cfg)
    recent = recent.join(by_video, [ASOF, "video_id"], "left").persist()
    seen = partials.seen_before(spark, paths, window, days, cfg)
    outputs = {
        USER_FEATURES: partials.user_features(spark, paths, recent, mapping, cfg),
        VIDEO_FEATURES: partials.video_features(
            spark, paths, catalog, mapping, cfg, set(today.columns)
        ),
        USER_SEQUENCES: user_sequences(recent, cfg),
        LABELS: ranker_labels(today, cfg, config.ranker, seen).withColumnRenamed("ds", ASOF),
    }
    return outputs, [today, recent]
