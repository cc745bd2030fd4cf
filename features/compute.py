"""Daily user and video features in Spark, stamped by the feature-time rule.

Features computed from data through day D are stamped D+1 00:00 UTC (`feature_time(D)`),
the first moment they could exist; a point-in-time join then never shows a label on day D a
feature that used day D.

user_features/ds=D   one row per user active in the long window
  views_1d, views_7d, views_28d, mean_watch_ratio_7d, mean_watch_ratio_28d,
  completion_rate_28d, skip_rate_28d, hours_since_last_view,
  category_affinity (share of the user's 28-day views per primary category)
video_features/ds=D  one row per video in the day's catalog (unseen videos get zeros)
  exposures_1d, exposures_7d, mean_watch_ratio_7d, completion_rate_7d, skip_rate_7d,
  trend_velocity (1-day exposures over the 7-day daily mean), duration_ms,
  primary_category, hours_since_first_view
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from features.labels import ranker_labels
from features.schema import INTERACTIONS, VIDEOS
from jobs.commit import staged_partition
from jobs.spark import spark_session
from reelflow.config import Config, FeatureConfig, load_config
from reelflow.paths import Paths

USER_FEATURES = "user_features"
VIDEO_FEATURES = "video_features"
LABELS = "labels"


def feature_time(ds: str) -> datetime:
    """The timestamp of features computed from data through day `ds`."""
    return datetime.fromisoformat(ds).replace(tzinfo=UTC) + timedelta(days=1)


def days_back(ds: str, n: int) -> list[str]:
    """`ds` and the n-1 days before it, oldest first."""
    end = date.fromisoformat(ds)
    return [(end - timedelta(days=i)).isoformat() for i in range(n - 1, -1, -1)]


def read_window(spark: SparkSession, table_dir: Path, ds: str, n_days: int) -> DataFrame | None:
    """The partitions of the n days through ds that exist, with their `ds` column."""
    parts = [
        str(table_dir / f"ds={d}")
        for d in days_back(ds, n_days)
        if (table_dir / f"ds={d}").exists()
    ]
    if not parts:
        return None
    return spark.read.option("basePath", str(table_dir)).parquet(*parts)


def _rates(cfg: FeatureConfig, suffix: str, where: F.Column | None = None) -> list[F.Column]:
    def cond(c: F.Column) -> F.Column:
        return c if where is None else (c & where)

    in_window = F.lit(True) if where is None else where
    n = F.sum(F.when(in_window, 1).otherwise(0))
    return [
        F.coalesce(F.sum(F.when(in_window, F.col("watch_ratio"))) / n, F.lit(0.0)).alias(
            f"mean_watch_ratio_{suffix}"
        ),
        F.coalesce(
            F.sum(F.when(cond(F.col("watch_ratio") >= cfg.completion_threshold), 1).otherwise(0))
            / n,
            F.lit(0.0),
        ).alias(f"completion_rate_{suffix}"),
        F.coalesce(
            F.sum(F.when(cond(F.col("watch_ratio") < cfg.skip_max_watch_ratio), 1).otherwise(0))
            / n,
            F.lit(0.0),
        ).alias(f"skip_rate_{suffix}"),
    ]


def user_features(views: DataFrame, ds: str, cfg: FeatureConfig) -> DataFrame:
    stamp = feature_time(ds)
    mid_start = days_back(ds, cfg.mid_window_days)[0]
    in_mid = F.col("ds") >= mid_start
    base = views.groupBy("user_id").agg(
        F.sum(F.when(F.col("ds") == ds, 1).otherwise(0)).alias("views_1d"),
        F.sum(F.when(in_mid, 1).otherwise(0)).alias("views_7d"),
        F.count(F.lit(1)).alias("views_28d"),
        *[c for c in _rates(cfg, "7d", in_mid) if "mean" in str(c)],
        *_rates(cfg, "28d"),
        F.max("event_ts").alias("last_view_ts"),
    )
    per_category = views.groupBy("user_id", "primary_category").agg(F.count(F.lit(1)).alias("n"))
    affinity = (
        per_category.groupBy("user_id")
        .agg(
            F.map_from_entries(F.collect_list(F.struct("primary_category", "n"))).alias(
                "cat_counts"
            ),
            F.sum("n").alias("cat_total"),
        )
        .select(
            "user_id",
            F.expr(
                f"transform(sequence(0, {cfg.num_categories - 1}), "
                "i -> cast(coalesce(cat_counts[i], 0) / cat_total as float))"
            ).alias("category_affinity"),
        )
    )
    return base.join(affinity, "user_id").select(
        F.col("user_id").cast("long"),
        F.lit(stamp).cast("timestamp").alias("event_timestamp"),
        F.col("views_1d").cast("long"),
        F.col("views_7d").cast("long"),
        F.col("views_28d").cast("long"),
        F.col("mean_watch_ratio_7d").cast("float"),
        F.col("mean_watch_ratio_28d").cast("float"),
        F.col("completion_rate_28d").cast("float"),
        F.col("skip_rate_28d").cast("float"),
        (
            (F.lit(stamp).cast("timestamp").cast("double") - F.col("last_view_ts").cast("double"))
            / 3600.0
        )
        .cast("float")
        .alias("hours_since_last_view"),
        "category_affinity",
    )


def video_features(views: DataFrame, catalog: DataFrame, ds: str, cfg: FeatureConfig) -> DataFrame:
    stamp = feature_time(ds)
    mid_start = days_back(ds, cfg.mid_window_days)[0]
    in_mid = F.col("ds") >= mid_start
    stats = views.groupBy("video_id").agg(
        F.sum(F.when(F.col("ds") == ds, 1).otherwise(0)).alias("exposures_1d"),
        F.sum(F.when(in_mid, 1).otherwise(0)).alias("exposures_7d"),
        *_rates(cfg, "7d", in_mid),
        F.max("duration_ms").alias("duration_ms"),
        F.min("event_ts").alias("first_view_ts"),
    )
    joined = catalog.select("video_id", "primary_category").join(stats, "video_id", "left")
    return joined.select(
        F.col("video_id").cast("long"),
        F.lit(stamp).cast("timestamp").alias("event_timestamp"),
        F.coalesce("exposures_1d", F.lit(0)).cast("long").alias("exposures_1d"),
        F.coalesce("exposures_7d", F.lit(0)).cast("long").alias("exposures_7d"),
        F.coalesce("mean_watch_ratio_7d", F.lit(0.0)).cast("float").alias("mean_watch_ratio_7d"),
        F.coalesce("completion_rate_7d", F.lit(0.0)).cast("float").alias("completion_rate_7d"),
        F.coalesce("skip_rate_7d", F.lit(0.0)).cast("float").alias("skip_rate_7d"),
        # Today's exposures against the 7-day daily mean: > 1 means the video is rising.
        F.coalesce(
            F.col("exposures_1d") / (F.col("exposures_7d") / F.lit(float(cfg.mid_window_days))),
            F.lit(0.0),
        )
        .cast("float")
        .alias("trend_velocity"),
        F.coalesce("duration_ms", F.lit(0)).cast("long").alias("duration_ms"),
        F.coalesce("primary_category", F.lit(-1)).cast("long").alias("primary_category"),
        F.coalesce(
            (F.lit(stamp).cast("timestamp").cast("double") - F.col("first_view_ts").cast("double"))
            / 3600.0,
            F.lit(-1.0),
        )
        .cast("float")
        .alias("hours_since_first_view"),
    )


def compute_features(
    ds: str, config: Config | None = None, paths: Paths | None = None
) -> dict[str, Any]:
    config = config or load_config()
    paths = paths or Paths.from_env()
    spark = spark_session(config.spark)
    cfg = config.features
    catalog = spark.read.parquet(str(paths.normalized(VIDEOS) / f"ds={ds}"))
    views = read_window(spark, paths.normalized(INTERACTIONS), ds, cfg.long_window_days)
    if views is None:
        raise FileNotFoundError(
            f"no normalized interactions through ds={ds} under {paths.normalized(INTERACTIONS)}"
        )
    views = views.join(catalog.select("video_id", "primary_category"), "video_id", "left").persist()
    counts = {}
    for name, frame in (
        (USER_FEATURES, user_features(views, ds, cfg)),
        (VIDEO_FEATURES, video_features(views, catalog, ds, cfg)),
        (LABELS, ranker_labels(views.where(F.col("ds") == ds), cfg, config.ranker)),
    ):
        table = paths.features(name)
        with staged_partition(table, f"ds={ds}") as staging:
            frame.coalesce(1).write.parquet(str(staging))
        counts[name] = spark.read.parquet(str(table / f"ds={ds}")).count()
    views.unpersist()
    return {"ds": ds, "feature_time": feature_time(ds).isoformat(), "rows": counts}
