"""Tests for the order of generated sessions (synthetic.world.SessionOrder): each parameter's
statistic, measured on the written files, lies where the parameter puts it, and falls to the
level of unordered sessions when the parameter is 0.

The statistics, on the valid rows of KuaiRec's big_matrix.csv (sessions recovered from the
timestamps: a gap of over a minute between a view's end and the next view starts a session):

- topic: the share of a session's consecutive views whose videos share the primary category;
- creator: the share of a session's consecutive views whose videos have the same creator;
- re-watch: the share of views of a video the user viewed before.

The no-order level of the first two is their expectation over random orders of each session's
views (same videos, shuffled). Derived expectations: a view after the first of its session
continues the topic with probability p, or else lands on the same category as often as
unordered views do (b0, measured with p = 0): p + (1 - p) * b0. A creator follow-up needs the
creator to have another video out: p * e + (1 - p * e) * b0, e the share of consecutive pairs
whose first video's creator has another video uploaded by that day. A re-watch needs an
earlier favourite: p * h + r0, h the share of views with an earlier view of the user at
watch_ratio >= FAVOURITE_WATCH_RATIO, r0 the repeats left with p = 0.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthetic.kuairand import build_kuairand_world, generate_kuairand
from synthetic.kuairec import build_kuairec_world, generate_kuairec
from synthetic.microlens import build_microlens_world, generate_microlens
from synthetic.world import (
    CREATOR_FOLLOW_UP,
    FAVOURITE_WATCH_RATIO,
    REWATCH_SHARE,
    TOPIC_CONTINUITY,
    SessionOrder,
    World,
)

SCALE, SEED = "tiny", 0
SESSION_GAP_S = 60  # within a session the next view starts 1-8 s after one ends; sessions 10 min
NO_ORDER = SessionOrder(topic_continuity=0.0, creator_follow_up=0.0, rewatch=0.0)
ONLY = {
    "topic": SessionOrder(topic_continuity=TOPIC_CONTINUITY, creator_follow_up=0.0, rewatch=0.0),
    "creator": SessionOrder(topic_continuity=0.0, creator_follow_up=CREATOR_FOLLOW_UP, rewatch=0.0),
    "rewatch": SessionOrder(topic_continuity=0.0, creator_follow_up=0.0, rewatch=REWATCH_SHARE),
}


def _kuairec_views(out_dir: Path) -> pd.DataFrame:
    """The valid rows of big_matrix.csv (bad rows and duplicate copies left out), in file order:
    user, then time."""
    raw = pd.read_csv(out_dir / "big_matrix.csv", dtype=str, keep_default_na=False)
    columns = ["user_id", "video_id", "play_duration", "video_duration", "timestamp", "watch_ratio"]
    table = raw[columns].apply(pd.to_numeric, errors="coerce")
    valid = (
        table.notna().all(axis=1)
        & (table["video_duration"] > 0)
        & (table["watch_ratio"] < 1e5)
        & ~raw.duplicated()
    )
    return table[valid].astype({"user_id": int, "video_id": int}).reset_index(drop=True)


def _sessions(user: np.ndarray, start_s: np.ndarray, end_s: np.ndarray) -> np.ndarray:
    """Session number of each view (rows sorted by user, then time)."""
    starts = np.r_[True, (user[1:] != user[:-1]) | (start_s[1:] - end_s[:-1] > SESSION_GAP_S)]
    return np.cumsum(starts)


def _consecutive_share(session: np.ndarray, key: np.ndarray) -> tuple[float, float]:
    """(share of a session's consecutive views with equal keys, its expectation over random
    orders of each session: sum over sessions of sum_k n_k (n_k - 1) / L over all L - 1)."""
    same_session = session[1:] == session[:-1]
    share = float((key[1:] == key[:-1])[same_session].mean())
    per_key = pd.DataFrame({"session": session, "key": key}).value_counts()
    length = pd.Series(session).value_counts()
    same_pairs = (per_key * (per_key - 1)).groupby(level="session").sum()
    expected = (same_pairs / length.reindex(same_pairs.index)).sum() / (length - 1).sum()
    return share, float(expected)


def _kuairec_statistics(views: pd.DataFrame, world: World) -> dict[str, float]:
    user, video = views["user_id"].to_numpy(), views["video_id"].to_numpy()
    start_s = views["timestamp"].to_numpy()
    session = _sessions(user, start_s, start_s + views["play_duration"].to_numpy() / 1000)
    catalog = world.catalog
    topic, topic_unordered = _consecutive_share(session, catalog.primary_category[video])
    creator, creator_unordered = _consecutive_share(session, catalog.creator[video])

    pair = pd.Series(user * world.scale.videos + video)
    repeat = pair.duplicated().to_numpy()
    liked = (views["watch_ratio"].to_numpy() >= FAVOURITE_WATCH_RATIO) & ~repeat
    liked_before = views.assign(liked=liked).groupby("user_id")["liked"].cumsum() - liked
    first_ratio = pd.Series(views["watch_ratio"].to_numpy()[~repeat], index=pair[~repeat])

    # Creator follow-ups are possible after a video whose creator has another one out that day.
    day = (start_s // 86_400).astype(np.int64)
    day -= day.min()
    same_session = session[1:] == session[:-1]
    creator_of, upload_day = catalog.creator, catalog.upload_day
    out_by = pd.DataFrame({"creator": creator_of, "day": upload_day}).groupby("creator")["day"]
    sorted_days = out_by.apply(np.sort)
    previous = video[:-1][same_session]
    out_that_day = np.array(
        [
            np.searchsorted(sorted_days[c], d, side="right")
            for c, d in zip(creator_of[previous], day[:-1][same_session], strict=True)
        ]
    )
    return {
        "topic": topic,
        "topic_unordered": topic_unordered,
        "creator": creator,
        "creator_unordered": creator_unordered,
        "creator_possible": float((out_that_day >= 2).mean()),
        "rewatch": float(repeat.mean()),
        "rewatch_possible": float((liked_before.to_numpy() > 0).mean()),
        "rewatch_of_favourite": float(
            (first_ratio[pair[repeat]].to_numpy() >= FAVOURITE_WATCH_RATIO).mean()
        ),
    }


@pytest.fixture(scope="module")
def world() -> World:
    return build_kuairec_world(SCALE, SEED)


@pytest.fixture(scope="module")
def statistics(tmp_path_factory: pytest.TempPathFactory, world: World) -> dict[str, dict]:
    """Statistics of KuaiRec tiny with no order, with each parameter alone, and by default."""
    results = {}
    for name, order in {"none": NO_ORDER, **ONLY, "default": None}.items():
        out_dir = tmp_path_factory.mktemp(f"order_{name}")
        generate_kuairec(out_dir, scale=SCALE, seed=SEED, order=order)
        results[name] = _kuairec_statistics(_kuairec_views(out_dir), world)
    return results


def test_without_order_the_statistics_are_those_of_shuffled_sessions(
    statistics: dict[str, dict],
) -> None:
    none = statistics["none"]
    assert none["topic"] == pytest.approx(none["topic_unordered"], abs=0.03)
    assert none["creator"] == pytest.approx(none["creator_unordered"], abs=0.01)
    assert none["rewatch"] < 0.02  # natural repeats only: heavy users who ran out of videos


def test_topic_continuity_sets_the_share_of_same_category_neighbours(
    statistics: dict[str, dict],
) -> None:
    p, b0 = TOPIC_CONTINUITY, statistics["none"]["topic"]
    topic = statistics["topic"]
    expected = p + (1 - p) * b0
    # Below it by the views whose category the user has seen all of (small categories at tiny).
    assert expected - 0.06 < topic["topic"] < expected + 0.02
    assert topic["topic"] > topic["topic_unordered"] + 0.15


def test_creator_follow_ups_set_the_share_of_same_creator_neighbours(
    statistics: dict[str, dict],
) -> None:
    p, b0 = CREATOR_FOLLOW_UP, statistics["none"]["creator"]
    creator = statistics["creator"]
    possible = p * creator["creator_possible"]
    expected = possible + (1 - possible) * b0
    # Below it by the follow-ups whose creator's other videos the user has all seen.
    assert expected - 0.04 < creator["creator"] < expected + 0.01
    assert creator["creator"] > creator["creator_unordered"] + 0.04


def test_rewatches_set_the_share_of_repeat_views_and_replay_favourites(
    statistics: dict[str, dict],
) -> None:
    p, r0 = REWATCH_SHARE, statistics["none"]["rewatch"]
    rewatch = statistics["rewatch"]
    expected = p * rewatch["rewatch_possible"] + r0
    assert expected - 0.01 < rewatch["rewatch"] < expected + 0.01
    # The first view was played to the end, except for the few natural repeats (any video).
    assert rewatch["rewatch_of_favourite"] > 0.8
    assert statistics["none"]["rewatch_of_favourite"] < 0.6


def test_the_default_order_carries_all_three(statistics: dict[str, dict]) -> None:
    default, none = statistics["default"], statistics["none"]
    assert default["topic"] > 0.4 and default["topic"] > default["topic_unordered"] + 0.15
    assert default["creator"] > default["creator_unordered"] + 0.04
    assert default["rewatch"] > none["rewatch"] + 0.015


# --- the other datasets share the world's order ------------------------------------------------


def test_kuairand_feed_logs_follow_creators_under_their_written_author_ids(
    tmp_path: Path,
) -> None:
    generate_kuairand(tmp_path, scale=SCALE, seed=SEED)
    world = build_kuairand_world(SCALE, SEED)
    basic = pd.read_csv(tmp_path / "video_features_basic_pure.csv")
    # One author id per creator and one creator per author id.
    pairs = pd.DataFrame({"creator": world.catalog.creator, "author": basic["author_id"]})
    assert pairs.drop_duplicates().shape[0] == pairs["creator"].nunique()
    assert pairs["author"].nunique() == pairs["creator"].nunique()

    logs = pd.concat(
        pd.read_csv(tmp_path / name)
        for name in ("log_standard_4_08_to_4_21_pure.csv", "log_standard_4_22_to_5_08_pure.csv")
    )
    logs = logs[logs["user_id"].notna() & (logs["play_time_ms"].astype(str) != "abc")]
    logs = logs.drop_duplicates().astype({"user_id": int, "play_time_ms": float})
    logs = logs.sort_values(["user_id", "time_ms"], kind="stable")
    start_s = logs["time_ms"].to_numpy() / 1000
    session = _sessions(
        logs["user_id"].to_numpy(), start_s, start_s + logs["play_time_ms"].abs().to_numpy() / 1000
    )
    author = basic["author_id"].to_numpy()[logs["video_id"].to_numpy()]
    share, unordered = _consecutive_share(session, author)
    assert share > unordered + 0.01  # few creators have a second video (real Pure: 1.16 each)
    category = world.catalog.primary_category[logs["video_id"].to_numpy()]
    share, unordered = _consecutive_share(session, category)
    assert share > unordered + 0.1  # random exposures in between break some runs


def _microlens_topic_share(out_dir: Path, world: World) -> float:
    pairs = pd.read_csv(out_dir / "MicroLens-100k_pairs.csv", dtype=str, keep_default_na=False)
    pairs = pairs[(pairs["user"] != "") & (pairs["item"] != "abc")].drop_duplicates()
    pairs = pairs.astype(int)
    assert not pairs.duplicated(["user", "item"]).any()  # no re-watches: pairs listed once
    start_s = pairs["timestamp"].to_numpy() / 1000
    # Play times are not written: a start over 10 minutes after the last one starts a session.
    session = _sessions(pairs["user"].to_numpy(), start_s, start_s + 600 - SESSION_GAP_S)
    category = world.catalog.primary_category[pairs["item"].to_numpy() - 1]
    return _consecutive_share(session, category)[0]


def test_microlens_sessions_stay_on_topic_without_repeats(tmp_path: Path) -> None:
    """MicroLens sessions hold a few items (shuffling two changes nothing): compared with the
    same release generated without order."""
    world = build_microlens_world(SCALE, SEED)
    generate_microlens(tmp_path / "ordered", scale=SCALE, seed=SEED)
    generate_microlens(tmp_path / "unordered", scale=SCALE, seed=SEED, order=NO_ORDER)
    ordered = _microlens_topic_share(tmp_path / "ordered", world)
    unordered = _microlens_topic_share(tmp_path / "unordered", world)
    assert ordered > unordered + 0.15
