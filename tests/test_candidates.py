"""Candidate lists (jobs/candidates.py) and cold-start exposure (jobs/cold_start.py) by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from jobs.candidates import DayCatalog, build_lists, interleave, mmr, slots, watched_pairs
from jobs.cold_start import assign_cohorts, plan_exposure
from reelflow.config import CandidateConfig, ColdStartConfig


def catalog(categories, performance=None, exposures=None) -> DayCatalog:
    n = len(categories)
    return DayCatalog(
        video_ids=np.arange(100, 100 + n),
        categories=np.asarray(categories),
        trend_velocity=np.linspace(2.0, 0.1, n),
        performance=np.asarray(performance if performance is not None else np.ones(n), float),
        exposures_7d=np.asarray(exposures if exposures is not None else np.full(n, 10), float),
    )


def test_mmr_spreads_categories_and_caps_each():
    # Scores fall with the position; videos 0-4 are category 0, 5-6 category 1, 7-8 category 2.
    cat = catalog([0, 0, 0, 0, 0, 1, 1, 2, 2, 3])
    scored = pd.DataFrame({"row": 0, "pos": np.arange(10), "score": np.linspace(1.0, 0.1, 10)})
    cfg = CandidateConfig(mmr_lambda=1.0, max_share_per_category=0.4)
    # lambda 1: relevance only, but the cap (ceil(0.4 * 5) = 2 per category) still holds.
    assert mmr(scored, 1, cat, 5, cfg).tolist() == [[0, 1, 5, 6, 7]]
    # lambda 0.5: a second video of a category costs 0.5, more than the score gaps here.
    cfg = CandidateConfig(mmr_lambda=0.5, max_share_per_category=1.0)
    assert mmr(scored, 1, cat, 4, cfg).tolist() == [[0, 5, 7, 9]]


def test_mmr_over_embeddings_without_categories():
    cat = catalog([-1, -1, -1])
    embeddings = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0]])
    scored = pd.DataFrame({"row": 0, "pos": [0, 1, 2], "score": [1.0, 0.9, 0.5]})
    cfg = CandidateConfig(mmr_lambda=0.5)
    # Video 1 is nearly video 0: the orthogonal video 2 comes second.
    assert mmr(scored, 1, cat, 2, cfg, embeddings).tolist() == [[0, 2]]


def test_exploration_slots_are_spread_over_the_list():
    exploit = np.arange(17)[None, :]
    explore = np.array([[100, 101, 102]])
    positions, marks = interleave(exploit, explore)
    assert np.flatnonzero(marks[0]).tolist() == [4, 9, 14]
    assert positions[0, [4, 9, 14]].tolist() == [100, 101, 102]
    assert slots(CandidateConfig(exploration_share=0.15), 20) == (17, 3)


@pytest.fixture()
def lists():
    rng = np.random.default_rng(0)
    n_users, n_videos, k = 60, 300, 20
    cat = catalog(
        rng.integers(0, 8, n_videos),
        performance=rng.uniform(0.5, 1.5, n_videos),
        exposures=rng.integers(0, 50, n_videos),
    )
    users = np.arange(1, n_users + 1)
    ann = np.stack([rng.choice(n_videos, 100, replace=False) for _ in users])
    watched = pd.DataFrame(
        {"row": np.repeat(np.arange(n_users), 30), "pos": ann[:, :30].ravel()}
    )  # the nearest 30 were all watched
    top = rng.integers(0, 8, (n_users, 3))
    cohorts = pd.DataFrame({"user_id": users[:10], "video_id": cat.video_ids[299]})
    table = build_lists(
        users,
        ann,
        top,
        cat,
        watched,
        cohorts,
        lambda rows, pos: np.sin(rows * 7 + pos),  # any fixed score
        CandidateConfig(),
        k,
    )
    return table, cat, watched, users, cohorts


def test_lists_hold_no_watched_video_and_the_caps(lists):
    table, cat, watched, users, cohorts = lists
    assert (table.groupby("user_id").size() == 20).all()
    pos = cat.positions(table["video_id"].to_numpy())
    row = table["user_id"].to_numpy() - 1
    seen = set(zip(watched["row"].tolist(), watched["pos"].tolist(), strict=True))
    assert not any((r, p) in seen for r, p in zip(row.tolist(), pos.tolist(), strict=True))
    assert not table.duplicated(["user_id", "video_id"]).any()
    # Exploration: 3 of 20 slots (15%), at ranks 5, 10, 15; cohort videos first.
    explored = table[table["source"].isin(["cold_start", "explore"])]
    assert (explored.groupby("user_id").size() == 3).all()
    assert set(explored["rank"]) == {5, 10, 15}
    # Video 299 went to the first ten users' cohort: in each one's list (as the first
    # exploration slot unless the ranker picked it already), or watched before.
    had_seen = set(watched.loc[watched["pos"] == 299, "row"] + 1)
    listed = set(table.loc[table["video_id"] == cat.video_ids[299], "user_id"])
    assert listed | had_seen >= set(cohorts["user_id"])
    cold = table[table["source"] == "cold_start"]
    assert len(cold) >= 5 and (cold["rank"] == 5).all()
    # The fatigue cap: at most ceil(0.3 * 17) = 6 exploitation picks per category.
    exploit = table[table["source"].isin(["ann", "affinity", "trending"])]
    per_category = exploit.assign(cat=cat.categories[cat.positions(exploit["video_id"])])
    assert per_category.groupby(["user_id", "cat"]).size().max() <= 6


def test_a_strong_new_video_grows_and_a_weak_one_stops():
    cfg = ColdStartConfig(cohort_users=500, expansion_threshold=1.2, expansion_factor=2.0)
    day1 = pd.DataFrame(
        {
            "video_id": [1, 2, 3],
            "age_hours": [5.0, 20.0, 300.0],  # 3 is old: no cold start
            "normalized_performance": [np.nan, np.nan, 1.0],
        }
    )
    plan1 = plan_exposure("2020-07-05", day1, None, active_users=5000, cfg=cfg)
    assert plan1.set_index("video_id")["cohort_users"].to_dict() == {1: 500, 2: 500}
    day2 = day1.assign(age_hours=[29.0, 44.0, 324.0], normalized_performance=[1.5, 0.8, 1.0])
    plan2 = plan_exposure("2020-07-06", day2, plan1, active_users=5000, cfg=cfg).set_index(
        "video_id"
    )
    assert plan2.loc[1, "state"] == "grow" and plan2.loc[1, "cohort_users"] == 1000
    assert plan2.loc[2, "state"] == "stop" and plan2.loc[2, "cohort_users"] == 0
    assert "0.80 < 1.2" in plan2.loc[2, "reason"]
    # Growth is capped by the active users; a stopped video never starts again.
    day3 = day2.assign(normalized_performance=[2.0, 5.0, 1.0])
    plan3 = plan_exposure("2020-07-07", day3, plan2.reset_index(), 1500, cfg).set_index("video_id")
    assert plan3.loc[1, "cohort_users"] == 1500 and plan3.loc[2, "state"] == "stop"
    # No view at all: hold once, then stop.
    day4 = day3.assign(normalized_performance=[np.nan, np.nan, 1.0])
    plan4 = plan_exposure("2020-07-08", day4, plan3.reset_index(), 5000, cfg)
    plan5 = plan_exposure("2020-07-09", day4, plan4, 5000, cfg).set_index("video_id")
    assert plan4.set_index("video_id").loc[1, "state"] == "hold"
    assert plan5.loc[1, "state"] == "stop"


def test_new_videos_wait_for_exploration_slots_newest_first():
    """A day holds `slots` exploration slots: videos already exploring keep their cohorts,
    new videos are admitted newest first while slots remain, the rest wait for a later day
    (a catalog of millions would otherwise hand each new video a cohort nobody can show)."""
    cfg = ColdStartConfig(cohort_users=100, new_video_hours=24.0)
    day1 = pd.DataFrame(
        {
            "video_id": [1, 2, 3, 4],
            "age_hours": [10.0, 2.0, 5.0, 2.0],
            "normalized_performance": [np.nan] * 4,
        }
    )
    plan1 = plan_exposure("2020-07-05", day1, None, 1000, cfg, slots=250)
    assert plan1["video_id"].tolist() == [2, 4]  # the two newest (ties: lower id); 3 and 1 wait
    day2 = day1.assign(age_hours=[34.0, 26.0, 20.0, 26.0], normalized_performance=[np.nan] * 4)
    plan2 = plan_exposure("2020-07-06", day2, plan1, 1000, cfg, slots=300).set_index("video_id")
    # 2 and 4 hold their 200 slots; 3 (still new) takes the last 100; 1 is no longer new.
    assert plan2["cohort_users"].to_dict() == {2: 100, 3: 100, 4: 100}
    assert plan2.loc[3, "state"] == "new" and plan2.loc[2, "state"] == "hold"
    unbounded = plan_exposure("2020-07-05", day1, None, 1000, cfg)
    assert sorted(unbounded["video_id"]) == [1, 2, 3, 4]


def test_cohorts_are_random_sized_and_reproducible():
    plan = pd.DataFrame({"video_id": [7, 8], "state": ["new", "stop"], "cohort_users": [50, 0]})
    users = np.arange(1000, 1400)
    first = assign_cohorts(plan, users, "2020-07-05", ColdStartConfig())
    assert len(first) == 50 and first["user_id"].is_unique and set(first["video_id"]) == {7}
    again = assign_cohorts(plan, users, "2020-07-05", ColdStartConfig())
    assert first.equals(again)
    other_day = assign_cohorts(plan, users, "2020-07-06", ColdStartConfig())
    assert set(other_day["user_id"]) != set(first["user_id"])


def test_watched_pairs_keep_known_users_and_catalog_videos():
    cat = catalog([0, 1, 2])  # videos 100, 101, 102
    seen = pd.DataFrame({"user_id": [7, 7, 8, 9], "video_id": [101, 555, 100, 102]})
    pairs = watched_pairs(seen, np.array([8, 7]), cat)
    # User 9 is not among the users, video 555 not in the catalog.
    assert pairs.to_dict("list") == {"row": [1, 0], "pos": [1, 0]}
