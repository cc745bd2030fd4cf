"""The lake's tables: their names, the unified schema, and the feature-time rule.

The unified schema is the one contract between readers and everything downstream: every
reader in `jobs/readers/` produces the normalized tables below from its dataset's native
files; features, models and exports read only these. Columns marked optional appear only
when the dataset has them (KuaiRec has no like/follow flags, MovieLens no watch time): absent
stays absent downstream, it is never invented.

interactions (lake/normalized/interactions/ds=YYYY-MM-DD, one UTC day per partition)
  user_id      long       required
  video_id     long       required
  event_ts     timestamp  required, UTC instant of the view
  watch_ms     long       optional, milliseconds played (KuaiRec play_duration)
  duration_ms  long       optional, video length in ms at the time of the view
  watch_ratio  double     optional, watch_ms / duration_ms, may exceed 1 (rewatch)
  is_click, is_like, is_follow, is_comment, is_share, is_hate   int 0/1, optional
               (KuaiRand's is_forward is is_share)
  source       string     required, dataset name
  KuaiRand only (optional, absent elsewhere):
  is_rand           int 0/1  1 = a randomly exposed video (the random log): keep these rows
                             apart as an unbiased evaluation set
  tab               int      the app surface of the view (0..14)
  long_view         int 0/1  watched "long" (whole video if <= 18 s, else >= 18 s)
  profile_stay_ms   long     ms spent on the author's profile (profile_stay_time)
  comment_stay_ms   long     ms spent in the comments (comment_stay_time)
  is_profile_enter  int 0/1  entered the author's profile

videos (lake/normalized/videos/ds=…, a daily snapshot of the catalog)
  video_id long, categories array<int>, primary_category int, caption string,
  category_name string, duration_ms long (optional), upload_ts timestamp (optional),
  author_id long (optional)
  Each column only where the dataset has it: KuaiRand has no caption/category_name,
  MicroLens no categories/primary_category (an untagged KuaiRand video has categories [] and
  a null primary_category). Dataset extras (optional):
  video_type  string   KuaiRand: NORMAL or AD
  stat_<x>    double   KuaiRand: every counter of video_features_statistic (stat_counts,
                       stat_show_cnt, stat_play_cnt, ...), averaged per day by the release
  likes       long     MicroLens: likes (likes_and_views.txt)
  views       long     MicroLens: views (likes_and_views.txt)

users (lake/normalized/users/ds=…, a daily snapshot)
  user_id long, user_active_degree string, register_days int, follow_user_num int,
  fans_user_num int, friend_user_num int, is_live_streamer int, is_video_author int
  (KuaiRec, KuaiRand; MicroLens and events logs have no users table)

small_matrix (lake/normalized/small_matrix, one table without days) KuaiRec's fully observed
  block, with the interactions' columns, where the release has it

The other tables, each one `ds=D` partition per day under the home's lake (`reelflow.paths`):
  quarantine/<table>   rejected rows: the native values as `raw_<column>` strings and the
                       `quarantine_reason`; rows without a readable time in `ds=undated`
  features/<view>      user_features, video_features, user_sequences: the Feast feature views
                       (features/compute.py); labels, offline only (features/labels.py);
                       user_candidates, each user's candidate lists (jobs/export.py)
  candidates           user_id, rank, video_id, score, source (jobs/export.py)
  exposure_plan        the cold-start plan (jobs/cold_start.py)

Feature time: features computed from data through day D are stamped D+1 00:00 UTC
(`feature_time(D)`), the first moment they could exist; a point-in-time join then never shows
a label on day D a feature that used day D. Materialization follows the same stamps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
# KuaiRand-only interaction columns (optional; absent for every other dataset).
INTERACTION_EXTRAS = (
    "is_rand",
    "tab",
    "long_view",
    "profile_stay_ms",
    "comment_stay_ms",
    "is_profile_enter",
)
VIDEO_COLUMNS = ("video_id", "categories", "primary_category", "caption", "category_name")
VIDEO_OPTIONAL = ("duration_ms", "upload_ts", "author_id", "video_type", "likes", "views")
VIDEO_STAT_PREFIX = "stat_"  # KuaiRand video_features_statistic counters, doubles
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

# Feature tables under lake/features/: the Feast feature views, and the labels (offline only).
USER_FEATURES = "user_features"
VIDEO_FEATURES = "video_features"
USER_SEQUENCES = "user_sequences"
LABELS = "labels"
FEATURE_TABLES = (USER_FEATURES, VIDEO_FEATURES, USER_SEQUENCES, LABELS)
ONLINE_VIEWS = (USER_FEATURES, VIDEO_FEATURES, USER_SEQUENCES)  # labels stay offline
# The export's: each user's candidate lists (a feature view, materialized online) and the
# cold-start plan.
USER_CANDIDATES = "user_candidates"
EXPOSURE_PLAN = "exposure_plan"


def feature_time(ds: str) -> datetime:
    """The timestamp of features computed from data through day `ds`: D+1 00:00 UTC."""
    return datetime.fromisoformat(ds).replace(tzinfo=UTC) + timedelta(days=1)
