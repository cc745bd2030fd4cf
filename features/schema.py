"""The unified schema: the one contract between readers and everything downstream.

Every reader in `jobs/readers/` produces these tables from its dataset's native files;
features, models and exports read only these. Columns marked optional appear only when the
dataset has them (KuaiRec has no like/follow flags, MovieLens no watch time): absent stays
absent downstream, it is never invented.

interactions (lake/normalized/interactions/ds=YYYY-MM-DD, one UTC day per partition)
  user_id      long       required
  video_id     long       required
  event_ts     timestamp  required, UTC instant of the view
  watch_ms     long       optional, milliseconds played (KuaiRec play_duration)
  duration_ms  long       optional, video length in ms at the time of the view
  watch_ratio  double     optional, watch_ms / duration_ms, may exceed 1 (rewatch)
  is_click, is_like, is_follow, is_comment, is_share, is_hate   int 0/1, optional
  source       string     required, dataset name

videos (lake/normalized/videos/ds=…, a daily snapshot of the catalog)
  video_id long, categories array<int>, primary_category int, caption string,
  category_name string, duration_ms long (optional), upload_ts timestamp (optional),
  author_id long (optional)

users (lake/normalized/users/ds=…, a daily snapshot)
  user_id long, user_active_degree string, register_days int, follow_user_num int,
  fans_user_num int, friend_user_num int, is_live_streamer int, is_video_author int
"""

from __future__ import annotations

INTERACTIONS = "interactions"
VIDEOS = "videos"
USERS = "users"
TABLES = (INTERACTIONS, VIDEOS, USERS)

INTERACTION_REQUIRED = ("user_id", "video_id", "event_ts", "source")
INTERACTION_OPTIONAL = (
    "watch_ms",
    "duration_ms",
    "watch_ratio",
    "is_click",
    "is_like",
    "is_follow",
    "is_comment",
    "is_share",
    "is_hate",
)
VIDEO_COLUMNS = ("video_id", "categories", "primary_category", "caption", "category_name")
USER_COLUMNS = (
    "user_id",
    "user_active_degree",
    "register_days",
    "follow_user_num",
    "fans_user_num",
    "friend_user_num",
    "is_live_streamer",
    "is_video_author",
)

QUARANTINE_REASON = "quarantine_reason"  # column naming why a row was rejected
UNDATED = "undated"  # quarantine partition of rows whose time cannot be read at all
