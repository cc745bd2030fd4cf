"""Cold start and virality: how a new video earns its audience, one day at a time.

A new video (uploaded, or first seen, within `cold_start.new_video_hours`) first goes to a
small random cohort of active users (`cohort_users`, default 500) as an exploration slot of
their candidate lists. Each following day its normalized performance (its 7-day performance
over that of comparable videos: same duration and age buckets, features/compute.py) decides:

    >= expansion_threshold (1.2)   grow:  the cohort times expansion_factor (2.0)
    no view yet                    hold:  the same cohort one more day (then stop)
    below the threshold            stop:  no more exploration slots

The plan is a lake table, `lake/exposure_plan/ds=D` (video_id, state, cohort_users,
normalized_performance, reason, first_ds): each day's plan is computed from the previous day's
and that day's video features, so a backfill of day D reproduces it exactly. A stopped video
stays in the plan as stopped and never starts again.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reelflow.config import ColdStartConfig

EXPLORING = ("new", "grow", "hold")  # states that hand out exploration slots
PLAN_COLUMNS = ("video_id", "state", "cohort_users", "normalized_performance", "reason", "first_ds")


def plan_exposure(
    ds: str,
    videos: pd.DataFrame,
    previous: pd.DataFrame | None,
    active_users: int,
    cfg: ColdStartConfig,
    slots: int | None = None,
) -> pd.DataFrame:
    """Day `ds`'s plan. `videos`: video_id, age_hours, normalized_performance (the video
    features stamped ds+1, i.e. through day ds); `previous`: the plan of the day before.
    `slots`: the day's exploration slots (active users x a list's exploration slots; None: no
    bound). Videos already exploring keep theirs first; new videos are admitted newest first
    while slots remain, the rest wait (not in the plan: a later day may admit them while they
    are still new). KuaiRand-1K's first export handed a 500-user cohort to every new video of a
    4.37M catalog and ran out of memory drawing them, for a few thousand slots a day."""
    previous = empty_plan() if previous is None else previous
    perf = videos.set_index("video_id")["normalized_performance"]
    rows = []
    for row in previous.itertuples(index=False):
        value = perf.get(row.video_id, np.nan)
        value = float(value) if pd.notna(value) else np.nan
        if row.state not in EXPLORING:
            rows.append((row.video_id, row.state, 0, value, row.reason, row.first_ds))
        elif np.isnan(value):
            if row.state == "hold":
                rows.append((row.video_id, "stop", 0, value, "no view in two days", row.first_ds))
            else:
                rows.append(
                    (row.video_id, "hold", row.cohort_users, value, "no view yet", row.first_ds)
                )
        elif value >= cfg.expansion_threshold:
            grown = min(int(round(row.cohort_users * cfg.expansion_factor)), active_users)
            reason = f"normalized performance {value:.2f} >= {cfg.expansion_threshold}"
            rows.append((row.video_id, "grow", grown, value, reason, row.first_ds))
        else:
            reason = f"normalized performance {value:.2f} < {cfg.expansion_threshold}"
            rows.append((row.video_id, "stop", 0, value, reason, row.first_ds))
    known = set(previous["video_id"].tolist())
    fresh = videos[
        (pd.to_numeric(videos["age_hours"], errors="coerce") <= cfg.new_video_hours)
        & ~videos["video_id"].isin(known)
    ]
    cohort = min(cfg.cohort_users, active_users)
    if slots is not None:
        left = max(slots - sum(r[2] for r in rows), 0)
        newest = fresh.assign(_age=pd.to_numeric(fresh["age_hours"], errors="coerce"))
        fresh = newest.sort_values(["_age", "video_id"]).head(left // cohort if cohort else 0)
    for video in fresh["video_id"].tolist():
        rows.append((video, "new", cohort, np.nan, "new video: first random cohort", ds))
    plan = pd.DataFrame(rows, columns=list(PLAN_COLUMNS))
    return plan.astype({"video_id": "int64", "cohort_users": "int64"}).sort_values("video_id")


def empty_plan() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "video_id": pd.Series(dtype="int64"),
            "state": pd.Series(dtype="object"),
            "cohort_users": pd.Series(dtype="int64"),
            "normalized_performance": pd.Series(dtype="float64"),
            "reason": pd.Series(dtype="object"),
            "first_ds": pd.Series(dtype="object"),
        }
    )


def assign_cohorts(
    plan: pd.DataFrame, active_users: np.ndarray, ds: str, cfg: ColdStartConfig
) -> pd.DataFrame:
    """(user_id, video_id) exposure slots: each exploring video's cohort drawn at random from
    the active users, seeded by (seed, day, video) so a re-run draws the same cohort."""
    day = int(pd.Timestamp(ds).strftime("%Y%m%d"))
    parts = []
    for row in plan[plan["cohort_users"] > 0].itertuples(index=False):
        rng = np.random.default_rng([cfg.seed, day, int(row.video_id)])
        n = min(int(row.cohort_users), len(active_users))
        users = rng.choice(active_users, size=n, replace=False)
        parts.append(pd.DataFrame({"user_id": users, "video_id": int(row.video_id)}))
    if not parts:
        return pd.DataFrame(
            {"user_id": pd.Series(dtype="int64"), "video_id": pd.Series(dtype="int64")}
        )
    return pd.concat(parts, ignore_index=True).astype("int64")
