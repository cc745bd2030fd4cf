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
