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
user_candidates_source = FileSource(
    name="user_candidates_source",
    path=os.path.join(LAKE, "user_candidates"),
    timestamp_field="event_timestamp",
)

# Two days: a lookup still finds yesterday's features when today's run is late.
user_features = FeatureView(
    name="user_features",
    entities=[user],
    ttl=timedelta(days=2),
    schema=[
        Field(name="views_1d", dtype=Int64, description="views on the last day"),
        Field(name="views_7d", dtype=Int64),
        Field(name="views_28d", dtype=Int64),
        Field(name="mean_watch_ratio_7d", dtype=Float32),
        Field(name="mean_watch_ratio_28d", dtype=Float32),
        Field(name="completion_rate_28d", dtype=Float32),
        Field(name="skip_rate_28d", dtype=Float32),
        Field(name="hours_since_last_view", dtype=Float32),
        Field(
            name="category_affinity",
            dtype=Array(Float32),
            description="share of 28-day views per category",
        ),
    ],
    source=user_features_source,
    online=True,
    tags={"owner": "reelflow", "horizon": "1d/7d/28d"},
)

video_features = FeatureView(
    name="video_features",
    entities=[video],
    ttl=timedelta(days=2),
    schema=[
        Field(name="exposures_1d", dtype=Int64),
        Field(name="exposures_7d", dtype=Int64),
        Field(name="mean_watch_ratio_7d", dtype=Float32),
        Field(name="completion_rate_7d", dtype=Float32),
        Field(name="skip_rate_7d", dtype=Float32),
        Field(
            name="trend_velocity",
            dtype=Float32,
            description="1-day exposures over the 7-day daily mean",
        ),
        Field(name="duration_ms", dtype=Int64),
        Field(name="primary_category", dtype=Int64),
        Field(name="hours_since_first_view", dtype=Float32),
    ],
    source=video_features_source,
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

ranker_v1 = FeatureService(name="ranker_v1", features=[user_features, video_features])
serving_v1 = FeatureService(name="serving_v1", features=[user_candidates, user_features])
