"""Features from a tiny hand-made log, checked against values worked out by hand; then the
point-in-time training set (no leakage), backfill-safe materialization and online lookups
through the Feast SDK and through Feast's own HTTP feature server.

The log (normalized interactions; default config: completion at watch_ratio >= 1,
skip below 0.2, windows 7 and 28 days):

  user 1  2020-06-20 10:00:00  video 10  ratio 0.1   (28-day window only)
          2020-07-04 12:00:00  video 11  ratio 1.0
          2020-07-05 08:00:00  video 10  ratio 1.5   liked; a repeat of video 10
          2020-07-05 08:00:40  video 12  ratio 0.5   starts 25 s after the view before ended
  user 2  2020-07-04 09:00:00  video 11  ratio 0.3
          2020-07-05 23:00:00  video 11  ratio 0.05  a repeat, and a skip

catalog: video 10 (cat 1, 10 s, uploaded 07-01), 11 (cat 2, 20 s, 06-01),
         12 (cat 1, 10 s, 07-02), 13 (cat 1, 10 s, 07-03, never viewed)
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from tests.conftest import feast_online_over_http, feature_values, service_available

D0, D1 = "2020-07-04", "2020-07-05"
LOG = [
    # user, video, time, watch_ms, duration_ms, is_like
    (1, 10, "2020-06-20 10:00:00", 1_000, 10_000, 0),
    (1, 11, "2020-07-04 12:00:00", 20_000, 20_000, 0),
    (1, 10, "2020-07-05 08:00:00", 15_000, 10_000, 1),
    (1, 12, "2020-07-05 08:00:40", 5_000, 10_000, 0),
    (2, 11, "2020-07-04 09:00:00", 6_000, 20_000, 0),
    (2, 11, "2020-07-05 23:00:00", 1_000, 20_000, 0),
]
CATALOG = [
    # video, category, duration_ms, upload
    (10, 1, 10_000, "2020-07-01 00:00:00"),
    (11, 2, 20_000, "2020-06-01 00:00:00"),
    (12, 1, 10_000, "2020-07-02 00:00:00"),
    (13, 1, 10_000, "2020-07-03 00:00:00"),
]


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def write_hand_log(paths, drop: tuple[str, ...] = ()) -> None:
    log = pd.DataFrame(
        LOG, columns=["user_id", "video_id", "event_ts", "watch_ms", "duration_ms", "is_like"]
    )
    log["event_ts"] = pd.to_datetime(log["event_ts"], utc=True)
    log["watch_ratio"] = log["watch_ms"] / log["duration_ms"]
    log["is_like"] = log["is_like"].astype("int32")
    log["source"] = "hand"
    log = log.drop(columns=list(drop))
    for ds, day in log.groupby(log["event_ts"].dt.strftime("%Y-%m-%d")):
        out = paths.normalized("interactions") / f"ds={ds}"
        out.mkdir(parents=True)
        day.to_parquet(out / "part-0.parquet", index=False, coerce_timestamps="us")
    catalog = pd.DataFrame(
        CATALOG, columns=["video_id", "primary_category", "duration_ms", "upload_ts"]
    )
    catalog["primary_category"] = catalog["primary_category"].astype("int32")
    catalog["categories"] = [[c] for c in catalog["primary_category"]]
    catalog["upload_ts"] = pd.to_datetime(catalog["upload_ts"], utc=True)
    for ds in (D0, D1):
        out = paths.normalized("videos") / f"ds={ds}"
        out.mkdir(parents=True)
        catalog.to_parquet(out / "part-0.parquet", index=False, coerce_timestamps="us")


@pytest.fixture(scope="module")
def hand_home(spark, tmp_path_factory):
    """The hand log's features for both days, in a home of this module."""
    from features.compute import compute_features
    from reelflow.config import load_config
    from reelflow.paths import Paths

    mp = pytest.MonkeyPatch()
    mp.setenv("REELFLOW_HOME", str(tmp_path_factory.mktemp("features") / "home"))
    mp.delenv("FEAST_FS_YAML_FILE_PATH", raising=False)
    paths = Paths.from_env()
    write_hand_log(paths)
    config = load_config({})
    results = {ds: compute_features(ds, config, paths) for ds in (D0, D1)}
    yield paths, results
    mp.undo()


def table(paths, name: str, ds: str, key: str) -> pd.DataFrame:
    return pd.read_parquet(paths.features(name) / f"ds={ds}").set_index(key).sort_index()


def test_user_features_equal_hand_computed_values(hand_home):
    paths, _ = hand_home
    users = table(paths, "user_features", D1, "user_id")
    u1, u2 = users.loc[1], users.loc[2]
    assert users["event_timestamp"].eq(ts("2020-07-06")).all()  # data through D1: D1 + 1 day
    assert (u1.views_1d, u1.views_7d, u1.views_28d) == (2, 3, 4)
    assert u1.mean_watch_ratio_28d == pytest.approx((0.1 + 1.0 + 1.5 + 0.5) / 4)
    assert u1.mean_watch_ratio_7d == pytest.approx((1.0 + 1.5 + 0.5) / 3)
    assert u1.mean_watch_ratio_last50 == pytest.approx(u1.mean_watch_ratio_28d)
    assert u1.completion_rate_28d == pytest.approx(2 / 4)
    assert u1.completion_rate_7d == pytest.approx(2 / 3)
    assert u1.skip_rate_28d == pytest.approx(1 / 4)
    assert u1.skip_rate_7d == 0.0
    assert u1.like_rate_28d == pytest.approx(1 / 4)
    assert u1.like_rate_7d == pytest.approx(1 / 3)
    # The log has no follow/comment/share flags: absent stays absent.
    assert users[["follow_rate_28d", "comment_rate_7d", "share_rate_last50"]].isna().all().all()
    assert u1.category_affinity[1] == pytest.approx(0.75)
    assert u1.category_affinity[2] == pytest.approx(0.25)
    assert sum(u1.category_affinity) == pytest.approx(1.0)
    # Fatigue: the last 20 views (all four here) per category: 10, 11, 10, 12 -> 1, 2, 1, 1.
    expected_recent = np.zeros(31)
    expected_recent[[1, 2]] = (0.75, 0.25)
    np.testing.assert_allclose(u1.recent_category_share, expected_recent, rtol=1e-6)
    assert list(u2.recent_category_share) == pytest.approx([0.0] * 2 + [1.0] + [0.0] * 28)
    u1_d0 = table(paths, "user_features", D0, "user_id").loc[1]  # 10 (06-20), 11: one each
    assert (u1_d0.recent_category_share[1], u1_d0.recent_category_share[2]) == (0.5, 0.5)
    assert list(u1.top_categories) == [1, 2]
    assert list(u1.top_category_weights) == pytest.approx([0.75, 0.25])
    hours = np.asarray(u1.active_hours)
    assert (hours[8], hours[10], hours[12]) == pytest.approx((0.5, 0.25, 0.25))
    assert hours.sum() == pytest.approx(1.0)
    assert u1.hours_since_last_view == pytest.approx(15 + 59 / 60 + 20 / 3600, rel=1e-6)
    assert (u2.views_1d, u2.views_28d) == (1, 2)
    assert u2.mean_watch_ratio_28d == pytest.approx(0.175)
    assert u2.skip_rate_28d == pytest.approx(0.5)
    assert u2.hours_since_last_view == pytest.approx(1.0)


def test_short_term_and_fatigue_horizons_are_the_last_n_views(spark, tmp_path, monkeypatch):
    from features.compute import compute_features
    from reelflow.config import load_config
    from reelflow.paths import Paths

    monkeypatch.setenv("REELFLOW_HOME", str(tmp_path / "home"))
    paths = Paths.from_env()
    write_hand_log(paths)
    config = load_config(
        {"REELFLOW_FEATURES__SHORT_TERM_VIEWS": "2", "REELFLOW_FEATURES__FATIGUE_VIEWS": "2"}
    )
    compute_features(D1, config, paths)
    users = table(paths, "user_features", D1, "user_id")
    u1 = users.loc[1]
    assert u1.mean_watch_ratio_last50 == pytest.approx((1.5 + 0.5) / 2)  # the two latest
    assert u1.like_rate_last50 == pytest.approx(0.5)
    # The two latest views, videos 10 and 12, are both category 1 (the 28 days: 0.75).
    assert u1.recent_category_share[1] == 1.0 and sum(u1.recent_category_share) == 1.0
    assert users.loc[2].recent_category_share[2] == 1.0  # video 11 twice


def test_a_log_without_watch_time_gets_nulls_not_invented_values(spark, tmp_path, monkeypatch):
    """MicroLens logs no watch time: watch features and labels are null, the rest is known."""
    from features.compute import compute_features
    from reelflow.config import load_config
    from reelflow.paths import Paths

    monkeypatch.setenv("REELFLOW_HOME", str(tmp_path / "home"))
    paths = Paths.from_env()
    write_hand_log(paths, drop=("watch_ms", "duration_ms", "watch_ratio", "is_like"))
    compute_features(D1, load_config({}), paths)
    u1 = table(paths, "user_features", D1, "user_id").loc[1]
    assert u1.views_28d == 4 and list(u1.top_categories) == [1, 2]
    assert pd.isna(u1.mean_watch_ratio_7d) and pd.isna(u1.like_rate_28d)
    videos = table(paths, "video_features", D1, "video_id")
    assert videos["mean_watch_ratio_7d"].isna().all()
    # Without watch time, performance is exposures against comparable videos': 1 and 1.
    assert videos.loc[10].normalized_performance == pytest.approx(1.0)
    labels = pd.read_parquet(paths.features("labels") / f"ds={D1}").sort_values("event_timestamp")
    assert labels[["label_watch_time", "label_completion", "label_skip"]].isna().all().all()
    assert labels["label_continuation"].isna().all()
    assert list(labels["label_rewatch"]) == [1, 0, 1]  # repeats are known without watch time
    seq = table(paths, "user_sequences", D1, "user_id")
    assert list(seq.loc[1].seq_video_ids) == [10, 11, 10, 12]
    assert seq.loc[1].seq_watch_ratios is None


def test_video_features_equal_hand_computed_values(hand_home):
    paths, _ = hand_home
    videos = table(paths, "video_features", D1, "video_id")
    v10, v11, v12, v13 = (videos.loc[v] for v in (10, 11, 12, 13))
    assert (v10.exposures_1d, v10.exposures_7d) == (1, 1)  # the 06-20 view is outside 7 days
    assert v10.mean_watch_ratio_1d == pytest.approx(1.5)
    assert (v10.completion_rate_7d, v10.skip_rate_7d, v10.like_rate_7d) == (1.0, 0.0, 1.0)
    assert v10.trend_velocity == pytest.approx(7.0)  # 1 today over a 7-day mean of 1/7
    assert v10.hours_since_first_view == pytest.approx(15 * 24 - 10 + 24)  # 06-20 10:00
    assert v10.age_hours == pytest.approx(5 * 24)  # uploaded 07-01, features at 07-06
    assert (v10.duration_bucket, v10.age_bucket) == (0, 2)  # < 15 s; 5 days in [3, 7)
    assert (v11.exposures_1d, v11.exposures_7d) == (1, 3)
    assert v11.mean_watch_ratio_7d == pytest.approx((1.0 + 0.3 + 0.05) / 3)
    assert v11.mean_watch_ratio_1d == pytest.approx(0.05)
    assert (v11.completion_rate_7d, v11.skip_rate_7d) == pytest.approx((1 / 3, 1 / 3))
    assert v11.hours_since_first_view == pytest.approx(39.0)  # 07-04 09:00
    assert (v11.duration_bucket, v11.age_bucket) == (1, 5)  # 20 s; 35 days, past the last bound
    assert v11.normalized_performance == pytest.approx(1.0)  # alone in its group
    # Videos 10 and 12 are comparable (10 s, 4-5 days old): the group's exposure-weighted mean
    # watch ratio is (1.5 + 0.5) / 2 = 1.0.
    assert (v12.duration_bucket, v12.age_bucket) == (0, 2)
    assert v10.normalized_performance == pytest.approx(1.5)
    assert v12.normalized_performance == pytest.approx(0.5)
    # Never viewed: zero counts and rates, no performance (not a zero one), age from upload.
    assert (v13.exposures_7d, v13.mean_watch_ratio_7d, v13.trend_velocity) == (0, 0.0, 0.0)
    assert pd.isna(v13.normalized_performance)
    assert v13.hours_since_first_view == -1.0
    assert v13.age_hours == pytest.approx(3 * 24)


def test_sequences_hold_the_last_views_oldest_first(hand_home):
    paths, _ = hand_home
    seq = table(paths, "user_sequences", D1, "user_id")
    assert list(seq.loc[1].seq_video_ids) == [10, 11, 10, 12]
    assert list(seq.loc[1].seq_watch_ratios) == pytest.approx([0.1, 1.0, 1.5, 0.5])
    assert list(seq.loc[1].seq_timestamps) == [
        int(ts(t).timestamp()) for u, _v, t, *_rest in LOG if u == 1
    ]
    assert seq.loc[1].seq_length == 4
    assert list(seq.loc[2].seq_video_ids) == [11, 11]


def test_labels_equal_hand_computed_values(hand_home):
    paths, _ = hand_home
    labels = pd.read_parquet(paths.features("labels") / f"ds={D1}").sort_values("event_timestamp")
    got = labels[
        ["user_id", "video_id"] + [c for c in labels.columns if c.startswith("label_")]
    ].to_numpy()
    expected = [
        # user, video, watch_time, completion, rewatch, continuation, skip
        [1, 10, 0.75, 1, 1, 1, 0],  # ratio 1.5; next view 25 s after this one ends
        [1, 12, 0.25, 0, 0, 0, 0],  # the user's last view of the day
        [2, 11, 0.025, 0, 1, 0, 1],  # a repeat of 07-04's view, and a skip
    ]
    np.testing.assert_allclose(got.astype(float), expected, rtol=1e-6)
    assert labels["event_timestamp"].iloc[0] == ts("2020-07-05 08:00:00")


@pytest.mark.parametrize("engine", ["feast", "spark"])
def test_training_set_never_sees_features_of_the_label_day(hand_home, engine):
    """Features change every day; a label on D1 gets the values computed through D0, with
    Feast's file offline store and with the Spark join alike."""
    from features.store import apply_if_changed, historical_features

    paths, _ = hand_home
    apply_if_changed(paths)
    labels = pd.read_parquet(paths.features("labels") / f"ds={D1}")
    entity = labels[["user_id", "video_id", "event_timestamp"]].copy()
    # The edges: the first and the last instant of D1, and the moment D1's features exist.
    edges = pd.DataFrame(
        {
            "user_id": [1, 1, 1],
            "video_id": [10, 10, 10],
            "event_timestamp": [ts(D1), ts("2020-07-05 23:59:59.999999"), ts("2020-07-06")],
        }
    )
    entity = pd.concat([entity, edges], ignore_index=True)
    entity["event_timestamp"] = pd.to_datetime(entity["event_timestamp"], utc=True)
    got = historical_features(
        entity, ["user_features:views_28d", "video_features:exposures_7d"], paths, engine
    )
    through = {
        ds: (
            table(paths, "user_features", ds, "user_id")["views_28d"],
            table(paths, "video_features", ds, "video_id")["exposures_7d"],
        )
        for ds in (D0, D1)
    }
    assert len(got) == len(entity)
    for row in got.itertuples():
        seen = D1 if row.event_timestamp >= ts("2020-07-06") else D0
        users, videos = through[seen]
        assert row.views_28d == users[row.user_id], row
        assert row.exposures_7d == videos[row.video_id], row
    # The planted change is real: the two days' values differ for user 1.
    assert through[D0][0][1] == 2 and through[D1][0][1] == 4


@pytest.fixture(scope="module")
def online_home(hand_home):
    """D1 materialized, then D0 backfilled after it (an older day written last). D1 goes
    online two rows a write, so the checks below also cover a day split into many writes."""
    from features import store
    from features.feast_repo import feature_store
    from features.store import apply_if_changed, materialize_day, online_features
    from lake.schema import ONLINE_VIEWS

    paths, _ = hand_home
    apply_if_changed(paths)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "ONLINE_WRITE_ROWS", 2)
        first = materialize_day(D1, list(ONLINE_VIEWS), paths)
    assert all(v["from"].startswith("day partition") for v in first["views"].values()), first
    # What D1's own partition put online, before the backfill re-loads it through Feast.
    refs = [f"{view}:{f.name}" for view in ("user_features", "user_sequences")
            for f in feature_store(paths).get_feature_view(view).features]  # fmt: skip
    D1_ONLINE.update(refs=refs, values=online_features(ONLINE_USERS, refs, paths))
    backfill = materialize_day(D0, list(ONLINE_VIEWS), paths)
    return paths, backfill


ONLINE_USERS = [{"user_id": u} for u in (1, 2, 3)]
D1_ONLINE: dict = {}


LOOKUP = [
    "user_features:views_28d",
    "user_features:mean_watch_ratio_7d",
    "user_sequences:seq_video_ids",
    "user_sequences:seq_length",
]


def test_backfilling_an_older_day_keeps_newer_online_values(online_home):
    from features.store import online_features

    paths, backfill = online_home
    # The backfill re-read through the newest materialized day, so D1's rows won.
    assert backfill["views"]["user_features"]["end"] == "2020-07-07T00:00:00+00:00"
    got = online_features([{"user_id": 1}, {"user_id": 2}], LOOKUP, paths)
    assert got["views_28d"] == [4, 2]
    assert got["seq_video_ids"][0] == [10, 11, 10, 12]
    assert got["seq_length"] == [4, 2]
    assert got["mean_watch_ratio_7d"][0] == pytest.approx(1.0)


def test_a_new_day_goes_online_from_its_partition_as_feast_would_load_it(online_home):
    """The newest day is written online from its own partition (Feast's file store would read
    every partition to select it); the backfill of an older day goes through Feast's
    materialize, which re-loads D1 too: the online values are the same either way."""
    from features.store import online_features

    paths, backfill = online_home
    assert backfill["views"]["user_features"]["from"] == "feast materialize"
    assert D1_ONLINE["values"]["views_28d"][:2] == [4, 2]
    assert online_features(ONLINE_USERS, D1_ONLINE["refs"], paths) == D1_ONLINE["values"]


def test_online_videos_hold_the_latest_day(online_home):
    from features.store import online_features

    paths, _ = online_home
    got = online_features(
        [{"video_id": 11}, {"video_id": 99}],
        ["video_features:exposures_7d", "video_features:normalized_performance"],
        paths,
    )
    assert got["exposures_7d"] == [3, None]  # an unknown video is null, not an error


def test_bulk_online_rows_are_the_rows_feast_writes(online_home):
    """features/online_sqlite.py writes exactly the rows Feast's own online write does (every
    byte: entity key, value, value_text, timestamps), nulls and extremes included."""
    import sqlite3

    from features.feast_repo import feature_store
    from features.online_sqlite import bulk_write, can_bulk_write
    from features.store import online_features
    from lake.partitions import partition

    paths, _ = online_home
    store = feature_store(paths)
    view = store.get_feature_view("video_features")
    assert can_bulk_write(store, view)
    assert not can_bulk_write(store, store.get_feature_view("user_sequences"))  # lists
    day = pd.read_parquet(partition(paths.features("video_features"), D1))
    frame = pd.concat([day, day.iloc[:2]], ignore_index=True)
    frame["video_id"] = np.arange(900_000, 900_000 + len(frame))  # entities nobody else reads
    frame.loc[len(day), ["exposures_1d", "exposures_7d"]] = [-(2**62), 2**63 - 1]
    frame.loc[len(day), ["trend_velocity", "age_hours"]] = [np.inf, -np.inf]
    frame.loc[len(day) + 1, ["normalized_performance", "mean_watch_ratio_1d"]] = np.nan
    table_name = f"{store.project}_video_features"
    db = sqlite3.connect(paths.feast / "online_store.db")  # raw text, no type detection

    def rows() -> set:
        return set(db.execute(f'SELECT * FROM "{table_name}"').fetchall())

    def forget(written: set) -> None:
        keys = list({row[0] for row in written})
        with db:
            db.execute(
                f'DELETE FROM "{table_name}" WHERE entity_key IN ({",".join("?" * len(keys))})',
                keys,
            )

    before = rows()
    store.write_to_online_store("video_features", frame)
    by_feast = rows() - before
    assert len(by_feast) == len(frame) * len(view.features)
    forget(by_feast)
    assert rows() == before
    assert bulk_write(store, view, frame, batch_rows=3)["rows"] == len(frame)
    by_bulk = rows() - before
    assert by_bulk == by_feast
    got = online_features(
        [{"video_id": 900_000 + len(day)}, {"video_id": 900_001 + len(day)}],
        ["video_features:exposures_7d", "video_features:normalized_performance"],
        paths,
    )
    assert got["exposures_7d"] == [2**63 - 1, day["exposures_7d"].iloc[1]]
    assert got["normalized_performance"][1] is None
    forget(by_bulk)


def test_int64_entity_keys_are_feasts_bytes(online_home):
    """The protobuf-free keys of a single INT64 join key are serialize_entity_key's bytes,
    extremes included; a null key or another layout falls back to Feast's serializer."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    from features.feast_repo import feature_store
    from features.online_sqlite import _entity_keys, _int64_keys

    store = feature_store(online_home[0])
    view = store.get_feature_view("video_features")
    ids = [0, 1, -1, 255, 256, 2**63 - 1, -(2**63), 4_369_953]
    frame = pd.DataFrame({"video_id": ids})
    feast_keys = [
        serialize_entity_key(
            EntityKey(join_keys=["video_id"], entity_values=[Value(int64_val=i)]), 3
        )
        for i in ids
    ]
    assert _int64_keys(frame, view, 3) == feast_keys
    assert _entity_keys(frame, view, 3, batch_rows=3) == feast_keys
    assert _int64_keys(pd.DataFrame({"video_id": [1, None]}), view, 3) is None
    assert _int64_keys(frame, view, 2) is None


def test_a_day_after_the_newest_online_writes_only_the_values_that_changed(online_home):
    """Given the rows online (the day before), the bulk write puts in only the changed values
    (and a new entity's all); the table then holds what a full write by Feast would, each
    unchanged value with the time it was last written. A table that lost rows is refilled."""
    import sqlite3

    from features.feast_repo import feature_store
    from features.online_sqlite import bulk_write
    from lake.partitions import partition

    paths, _ = online_home
    store = feature_store(paths)
    view = store.get_feature_view("video_features")
    n = len(view.features)
    day = pd.read_parquet(partition(paths.features("video_features"), D1))
    day["video_id"] = np.arange(800_000, 800_000 + len(day))
    day.loc[1, "normalized_performance"] = 0.5
    table_name = f"{store.project}_video_features"
    db = sqlite3.connect(paths.feast / "online_store.db")  # raw text, no type detection
    columns = "entity_key, feature_name, value, value_text, event_ts"
    base = set(db.execute(f'SELECT entity_key FROM "{table_name}"'))

    def ours() -> dict:  # this test's rows: (entity_key, feature_name) -> row
        got = db.execute(f'SELECT {columns} FROM "{table_name}"')
        return {(r[0], r[1]): r for r in got if (r[0],) not in base}

    bulk_write(store, view, day, batch_rows=4)
    after = day.copy()
    after["event_timestamp"] = after["event_timestamp"] + pd.Timedelta(days=1)
    after.loc[0, "exposures_7d"] += 5  # a changed value
    after.loc[1, "normalized_performance"] = np.nan  # a value that became null
    newcomer = after.iloc[[2]].assign(video_id=800_000 + len(day))  # an entity not online
    after = pd.concat([after, newcomer], ignore_index=True)
    counts = bulk_write(store, view, after, batch_rows=4, previous=day)
    assert counts == {"rows": len(after), "values": 2 + n, "unchanged": len(after) * n - 2 - n}
    delta = ours()
    assert len(delta) == len(after) * n
    store.write_to_online_store("video_features", after)  # what Feast would leave
    full = ours()
    assert delta.keys() == full.keys()
    assert all(delta[k][:4] == full[k][:4] for k in full)  # the same values, byte for byte
    # Only the unchanged values keep the earlier time.
    assert sum(delta[k][4] != full[k][4] for k in full) == counts["unchanged"]
    # A table that lost an entity's rows since the day before is written whole again.
    lost = next(iter(full))[0]
    with db:
        db.execute(f'DELETE FROM "{table_name}" WHERE entity_key = ?', (lost,))
    assert bulk_write(store, view, after, batch_rows=4, previous=after)["unchanged"] == 0
    assert len(ours()) == len(after) * n
    with db:
        db.executemany(f'DELETE FROM "{table_name}" WHERE entity_key = ?', {(k[0],) for k in full})


def test_recommend_reads_its_features_through_the_recommend_v1_service(online_home):
    """`reelflow recommend` names no feature: the service does (here before any export, so
    the candidate list is empty and the user's features are there)."""
    from reelflow.cli import CANDIDATE_FIELDS, recommendations

    paths, _ = online_home
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REELFLOW_HOME", str(paths.home))
        result = recommendations(1, k=10)
    assert result["candidates"] == []
    assert list(result["user_features"]) == [
        "views_28d",
        "mean_watch_ratio_28d",
        "completion_rate_28d",
        "hours_since_last_view",
    ]
    assert result["user_features"]["views_28d"] == 4
    assert not set(CANDIDATE_FIELDS) & set(result["user_features"])


def test_feast_serve_answers_over_http(online_home):
    """Feast's own feature server, started on loopback against this repo unchanged."""
    paths, _ = online_home
    answer = feast_online_over_http(
        paths.home, {"features": LOOKUP, "entities": {"user_id": [1, 2]}}
    )
    values = feature_values(answer)
    assert values["views_28d"] == [4, 2]
    assert values["seq_video_ids"][0] == [10, 11, 10, 12]
    statuses = answer["results"][answer["metadata"]["feature_names"].index("views_28d")]
    assert statuses["statuses"] == ["PRESENT", "PRESENT"]


@pytest.mark.services
def test_redis_online_store_and_postgres_registry(hand_home, monkeypatch):
    """The distributed variant: the same repo against the real Redis and PostgreSQL."""
    service_available("127.0.0.1", 5432, "PostgreSQL")
    service_available("127.0.0.1", 6379, "Redis")
    import psycopg
    import redis

    from features.feast_repo import feature_store
    from features.store import apply_if_changed, materialize_day, online_features
    from lake.schema import ONLINE_VIEWS
    from reelflow.paths import FEATURE_REPO

    paths, _ = hand_home
    database = f"reelflow_feast_{os.getpid()}"
    redis_db = 1 + os.getpid() % 15  # away from db 0, which other tools use
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}"')
        conn.execute(f'CREATE DATABASE "{database}"')
    redis.Redis(host="127.0.0.1", port=6379, db=redis_db).flushdb()
    monkeypatch.setenv("FEAST_FS_YAML_FILE_PATH", str(FEATURE_REPO / "feature_store.redis.yaml"))
    monkeypatch.setenv(
        "REELFLOW_FEAST_REGISTRY_URL", f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
    )
    monkeypatch.setenv("REELFLOW_FEAST_REDIS", f"127.0.0.1:6379,db={redis_db}")
    try:
        assert apply_if_changed(paths)["applied"]
        store = feature_store(paths)
        assert type(store._get_provider().online_store).__name__ == "RedisOnlineStore"
        assert {fs.name for fs in store.list_feature_services()} >= {
            "ranker_v1",
            "sequence_v1",
            "serving_v1",
        }
        materialize_day(D1, list(ONLINE_VIEWS), paths)
        materialize_day(D0, list(ONLINE_VIEWS), paths)  # a backfill after the newer day
        got = online_features([{"user_id": 1}, {"user_id": 2}], LOOKUP, paths)
        assert got["views_28d"] == [4, 2]
        assert got["seq_video_ids"][0] == [10, 11, 10, 12]
        assert redis.Redis(host="127.0.0.1", port=6379, db=redis_db).dbsize() > 0
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{database}") as conn:
            views = {r[0] for r in conn.execute("SELECT feature_view_name FROM feature_views")}
        assert views >= {"user_features", "video_features", "user_sequences"}
    finally:
        # The embedded default must be re-applied for any later test of this home.
        (paths.feast / "applied.sha256").unlink(missing_ok=True)
        redis.Redis(host="127.0.0.1", port=6379, db=redis_db).flushdb()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_feature_repo_declares_every_computed_column(hand_home):
    """The Feast schemas and the Spark tables agree, column for column and type for type."""
    from features.feast_repo import feature_store
    from features.store import apply_if_changed
    from lake.schema import ONLINE_VIEWS

    paths, _ = hand_home
    apply_if_changed(paths)
    store = feature_store(paths)
    for name in ONLINE_VIEWS:
        declared = {f.name for f in store.get_feature_view(name).features}
        written = set(pd.read_parquet(paths.features(name) / f"ds={D1}").columns)
        keys = {"user_id", "video_id", "event_timestamp"}
        assert declared == written - keys, name


def test_feature_time_stamps_the_next_midnight():
    from lake.schema import feature_time

    assert feature_time(D1) == datetime(2020, 7, 6, tzinfo=UTC)
