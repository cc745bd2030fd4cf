"""reelflow's Feast repo: declarations only.

Sources read the feature tables the Spark jobs write under $REELFLOW_HOME/lake/features
(one `ds=` partition per day, stamped by the feature-time rule: data through day D carries
event_timestamp D+1 00:00 UTC).
"""

import os
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Float32, Int64, String

LAKE = os.path.join(os.environ.get("REELFLOW_HOME", "var"), "lake", "features")

user = Entity(
    name="user", join_keys=["user_id"], value_type=ValueType.INT64, description="A viewer"
)
video = Entity(
    name="video", join_keys=["video_id"], value_type=ValueType.INT64, description="A short video"
)

user_features_source = FileSource(
    name="user_features_source",
    path=os.path.join(LAKE, "user_features"),
    timestamp_field="event_timestamp",
)
video_features_source = FileSource(
    name="video_features_source",
    path=os.path.join(LAKE, "video_features"),
    timestamp_field="event_timestamp",
)
user_sequences_source = FileSource(
    name="user_sequences_source",
    path=os.path.join(LAKE, "user_sequences"),
    timestamp_field="event_timestamp",
)
user_candidates_source = FileSource(
    name="user_candidates_source",
    path=os.path.join(LAKE, "user_candidates"),
    timestamp_field="event_timestamp",
)


def _rates(suffix: str, names: tuple[str, ...], horizon: str) -> list[Field]:
    return [
        Field(name=f"{name}_{suffix}", dtype=Float32, description=f"{name} over {horizon}")
        for name in names
    ]


RATES = (
    "mean_watch_ratio",
    "completion_rate",
    "skip_rate",
    "like_rate",
    "follow_rate",
    "comment_rate",
    "share_rate",
)

# TTL two days: a lookup still finds yesterday's features when today's run is late, and a
# user inactive for longer is served as unknown rather than with stale features.
user_features = FeatureView(
    name="user_features",
    entities=[user],
    ttl=timedelta(days=2),
    schema=[
        Field(name="views_1d", dtype=Int64, description="views on the last day"),
        Field(name="views_7d", dtype=Int64),
        Field(name="views_28d", dtype=Int64),
        *_rates("last50", RATES, "the user's last 50 views"),
        *_rates("7d", RATES, "7 days"),
        *_rates("28d", RATES, "28 days"),
        Field(
            name="category_affinity",
            dtype=Array(Float32),
            description="share of 28-day views per category id",
        ),
        Field(
            name="recent_category_share",
            dtype=Array(Float32),
            description="share of the last features.fatigue_views views per category id (fatigue)",
        ),
        Field(name="top_categories", dtype=Array(Int64), description="most viewed first"),
        Field(name="top_category_weights", dtype=Array(Float32)),
        Field(name="active_hours", dtype=Array(Float32), description="share per UTC hour"),
        Field(name="hours_since_last_view", dtype=Float32),
    ],
    source=user_features_source,
    online=True,
    tags={"owner": "reelflow", "horizon": "last50/7d/28d"},
)

video_features = FeatureView(
    name="video_features",
    entities=[video],
    ttl=timedelta(days=2),
    schema=[
        Field(name="exposures_1d", dtype=Int64),
        Field(name="exposures_7d", dtype=Int64),
        *_rates("1d", RATES[:4], "the last day"),
        *_rates("7d", RATES[:4], "7 days"),
        Field(
            name="trend_velocity",
            dtype=Float32,
            description="1-day exposures over the 7-day daily mean",
        ),
        Field(name="duration_ms", dtype=Int64),
        Field(name="primary_category", dtype=Int64),
        Field(name="hours_since_first_view", dtype=Float32),
        Field(name="age_hours", dtype=Float32, description="since upload, else first view"),
        Field(name="duration_bucket", dtype=Int64),
        Field(name="age_bucket", dtype=Int64),
        Field(
            name="normalized_performance",
            dtype=Float32,
            description="7-day performance over comparable videos' (same duration and age)",
        ),
    ],
    source=video_features_source,
    online=True,
    tags={"owner": "reelflow"},
)

user_sequences = FeatureView(
    name="user_sequences",
    entities=[user],
    ttl=timedelta(days=2),
    schema=[
        Field(name="seq_video_ids", dtype=Array(Int64), description="last 50 views, oldest first"),
        Field(name="seq_watch_ratios", dtype=Array(Float32)),
        Field(name="seq_timestamps", dtype=Array(Int64), description="epoch seconds"),
        Field(name="seq_length", dtype=Int64),
    ],
    source=user_sequences_source,
    online=True,
    tags={"owner": "reelflow"},
)

user_candidates = FeatureView(
    name="user_candidates",
    entities=[user],
    ttl=timedelta(days=2),
    schema=[
        Field(name="video_ids", dtype=Array(Int64), description="ranked candidates, best first"),
        Field(name="scores", dtype=Array(Float32)),
        Field(
            name="sources",
            dtype=Array(String),
            description="where each candidate came from: ann, popular",
        ),
        Field(name="model_version", dtype=Int64),
    ],
    source=user_candidates_source,
    online=True,
    tags={"owner": "reelflow", "written_by": "reelflow_export"},
)

# One feature service per use: what a model version was trained on is pinned by name.
ranker_v1 = FeatureService(name="ranker_v1", features=[user_features, video_features])
sequence_v1 = FeatureService(name="sequence_v1", features=[user_sequences])
serving_v1 = FeatureService(
    name="serving_v1", features=[user_candidates, user_features, user_sequences]
)
# What `reelflow recommend` prints: the user's list and a few of their online features.
recommend_v1 = FeatureService(
    name="recommend_v1",
    features=[
        user_candidates[["video_ids", "scores", "sources", "model_version"]],
        user_features[
            ["views_28d", "mean_watch_ratio_28d", "completion_rate_28d", "hours_since_last_view"]
        ],
    ],
)
