"""Ranker labels per interaction, written once here and documented in the README.

For every normalized view on day D (one row per view, stamped with the view's own time):
  label_watch_time    min(watch_ratio, cap) / cap: watch time as a capped fraction in [0, 1]
  label_completion    watch_ratio >= completion_threshold
  label_rewatch       watch_ratio > 1, or the user viewed this video before, in the long
                      window (28 days through D)
  label_continuation  the user's next view starts within `continuation_gap_s` of this view's end
                      (views past midnight are not looked at: a day's labels need only data
                      through that day, like its features)
  label_skip          watch_ratio < skip_max_watch_ratio (a very short play)
A label whose inputs the dataset does not log is null (MicroLens has no watch time: only
rewatch-by-repeat is known), so the trainer switches that head off instead of learning zeros.

`HEADS` lists the labels once: the ranker (models/ranker.py) has one head per label, in this
order. Spark is imported only by `ranker_labels`, so the models can read `HEADS` without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reelflow.config import FeatureConfig, RankerConfig

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# The ranker's heads, each learned from the label column `label_<head>`.
HEADS = ("watch_time", "completion", "rewatch", "continuation", "skip")


def seen_in_window(pairs: DataFrame, days: list[str], long_window_days: int) -> DataFrame:
    """(user_id, video_id, ds, _seen) of the pairs of `pairs` (user_id, video_id, ds: views of
    the window) viewed on a day of `days` and on an earlier day of that day's long window:
    the repeats a label of the day cannot see in its own views."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    by_pair = Window.partitionBy("user_id", "video_id").orderBy("ds")
    previous = F.lag(F.to_date("ds")).over(by_pair)  # the pair's last earlier day with a view
    pairs = pairs.select("user_id", "video_id", "ds")
    # Only a pair viewed on one of `days` can repeat: the window's other pairs (most of a
    # 28-day window's views on KuaiRec) are dropped by one semi-join before the distinct and
    # the sort, which otherwise grew with the window.
    on_days = pairs.where(F.col("ds").isin(days)).select("user_id", "video_id")
    return (
        pairs.join(on_days, ["user_id", "video_id"], "left_semi")
        .distinct()
        .withColumn("_previous", previous)
        .where(
            F.col("ds").isin(days)
            & (F.col("_previous") >= F.date_sub(F.to_date("ds"), long_window_days - 1))
        )
        .select("user_id", "video_id", "ds", F.lit(True).alias("_seen"))
    )


def ranker_labels(
    views: DataFrame,
    features: FeatureConfig,
    ranker: RankerConfig,
    seen: DataFrame,
) -> DataFrame:
    """Labels of the views of `views` (with their day, `ds`, kept as a column); `seen`
    (`seen_in_window`) flags the views whose pair the user viewed on an earlier day of the
    window. A day's labels read only that day's views and `seen`, so one day or a range of
    days is one computation."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    by_user = Window.partitionBy("user_id", "ds").orderBy("event_ts", "video_id")
    by_pair = Window.partitionBy("user_id", "video_id", "ds").orderBy("event_ts")
    has = set(views.columns)
    ratio = F.col("watch_ratio") if "watch_ratio" in has else F.lit(None).cast("double")
    views = views.join(seen, ["user_id", "video_id", "ds"], "left")
    repeat = (F.row_number().over(by_pair) > 1) | F.coalesce(F.col("_seen"), F.lit(False))
    if "watch_ms" in has:
        view_end = F.col("event_ts").cast("double") + F.col("watch_ms") / 1000.0
        next_start = F.lead(F.col("event_ts").cast("double")).over(by_user)
        # The day's last view has no next view: the session ended (not unknown).
        continuation = F.coalesce(
            (next_start - view_end) <= features.continuation_gap_s, F.lit(False)
        )
    else:
        continuation = F.lit(None).cast("boolean")
    return views.select(
        "ds",
        F.col("user_id").cast("long"),
        F.col("video_id").cast("long"),
        F.col("event_ts").alias("event_timestamp"),
        ratio.cast("float").alias("watch_ratio"),
        # least() skips nulls: without a ratio the label must stay null, not become the cap.
        (
            F.when(ratio.isNotNull(), F.least(ratio, F.lit(ranker.watch_ratio_cap)))
            / ranker.watch_ratio_cap
        )
        .cast("float")
        .alias("label_watch_time"),
        (ratio >= features.completion_threshold).cast("int").alias("label_completion"),
        (F.coalesce(ratio > 1.0, F.lit(False)) | repeat).cast("int").alias("label_rewatch"),
        continuation.cast("int").alias("label_continuation"),
        (ratio < features.skip_max_watch_ratio).cast("int").alias("label_skip"),
    )
