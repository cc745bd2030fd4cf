"""Ranker labels per interaction, written once here and documented in the README.

For every normalized view on day D (one row per view, stamped with the view's own time):
  label_watch_time    min(watch_ratio, cap) / cap: watch time as a capped fraction in [0, 1]
  label_completion    watch_ratio >= completion_threshold
  label_rewatch       watch_ratio > 1, or the user already viewed this video earlier that day
  label_continuation  the user's next view starts within `continuation_gap_s` of this view's end
                      (views past midnight are not looked at: a day's labels need only that day)
  label_skip          watch_ratio < skip_max_watch_ratio (a very short play)
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from reelflow.config import FeatureConfig, RankerConfig

LABELS = ("watch_time", "completion", "rewatch", "continuation", "skip")


def ranker_labels(views: DataFrame, features: FeatureConfig, ranker: RankerConfig) -> DataFrame:
    by_user = Window.partitionBy("user_id").orderBy("event_ts", "video_id")
    by_pair = Window.partitionBy("user_id", "video_id").orderBy("event_ts")
    view_end = F.col("event_ts").cast("double") + F.col("watch_ms") / 1000.0
    next_start = F.lead(F.col("event_ts").cast("double")).over(by_user)
    ratio = F.col("watch_ratio")
    return views.select(
        F.col("user_id").cast("long"),
        F.col("video_id").cast("long"),
        F.col("event_ts").alias("event_timestamp"),
        ratio.cast("float").alias("watch_ratio"),
        (F.least(ratio, F.lit(ranker.watch_ratio_cap)) / ranker.watch_ratio_cap)
        .cast("float")
        .alias("label_watch_time"),
        (ratio >= features.completion_threshold).cast("int").alias("label_completion"),
        ((ratio > 1.0) | (F.row_number().over(by_pair) > 1)).cast("int").alias("label_rewatch"),
        F.coalesce((next_start - view_end) <= features.continuation_gap_s, F.lit(False))
        .cast("int")
        .alias("label_continuation"),
        (ratio < features.skip_max_watch_ratio).cast("int").alias("label_skip"),
    )
