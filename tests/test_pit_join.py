"""The Spark point-in-time join against Feast's own `get_historical_features` (file offline
store) and against a brute-force reference, on hand-made feature partitions.

Stored rows (TTL 2 days, both views; a `ds=D` partition is stamped D+1 00:00):

  user_features   users 1, 2 at 07-02 and 07-03 00:00; users 1, 2, 3 at 07-06 00:00
  video_features  videos 10, 11, 12 at 07-02 and 07-04 00:00; video 11 also at 07-02 15:30
                  (off the daily grid: the join must not assume midnight stamps)

Every stored value encodes its key, its stamp and its column, so a value in the output says
which stored row it came from. The rows are built from the views' schemas in the registry
(every declared column, whatever the repo declares today), not from a list of columns here.
"""

from __future__ import annotations

import pandas as pd
import pytest

from features.pit_join import same_value

USER_ROWS = [(1, "2020-07-01"), (2, "2020-07-01"), (1, "2020-07-02"), (2, "2020-07-02")]
USER_ROWS += [(1, "2020-07-05"), (2, "2020-07-05"), (3, "2020-07-05")]
VIDEO_ROWS = [(v, d) for d in ("2020-07-01", "2020-07-03") for v in (10, 11, 12)]
VIDEO_ROWS += [(11, "2020-07-02", "2020-07-02 15:30:00")]

# user, video, time, label (the extra column: it must come through, and tells rows apart)
ENTITIES = [
    (1, 10, "2020-07-02 00:00:00", "at a stamp"),  # stamped exactly at the entity time: seen
    (1, 11, "2020-07-03 12:00:00", "off-grid stamp"),  # video 11's 15:30 row is the latest
    (1, 11, "2020-07-02 15:29:59.999999", "just before"),  # a microsecond before it: not yet
    (2, 10, "2020-07-01 12:00:00", "before any"),  # no stored row yet: nulls
    (1, 12, "2020-07-05 12:00:00", "user stale"),  # user's latest is 2.5 days old: nulls
    (2, 12, "2020-07-05 00:00:00", "one ttl old"),  # exactly 2 days old: still fresh
    (3, 12, "2020-07-06 00:00:00", "third user"),
    (2, 10, "2020-07-09 00:00:00", "all stale"),
    # The same user and time three times (two identical rows), with different videos.
    (1, 10, "2020-07-03 06:00:00", "dup"),
    (1, 11, "2020-07-03 06:00:00", "dup"),
    (1, 10, "2020-07-03 06:00:00", "dup"),
]
NO_MATCH = {"before any", "user stale", "all stale"}  # a view has nothing in its window
ENTITY_COLUMNS = ["user_id", "video_id", "event_timestamp", "label"]


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def stored_value(dtype, key: int, stamp: pd.Timestamp, column: int):
    """A value that names its row: key, stamp (minutes) and column, typed as declared."""
    from feast.types import Array, PrimitiveFeastType

    base = key * 10_000_000 + int(stamp.timestamp() // 60) % 1_000_000 * 10 + column % 10
    if isinstance(dtype, Array):
        return [stored_value(dtype.base_type, key, stamp, column + i) for i in range(3)]
    if dtype in (PrimitiveFeastType.INT64, PrimitiveFeastType.INT32):
        return base
    if dtype in (PrimitiveFeastType.FLOAT32, PrimitiveFeastType.FLOAT64):
        return float(base % 1_000_000) + 0.25  # exact in float32
    if dtype == PrimitiveFeastType.BOOL:
        return bool(base % 2)
    if dtype == PrimitiveFeastType.STRING:
        return f"v{base}"
    raise NotImplementedError(f"no test value for {dtype}")


def write_view(spark, paths, fv, rows) -> pd.DataFrame:
    """One `ds=` partition per day with every column the view declares; returns the rows."""
    import pyarrow as pa
    from feast.type_map import feast_value_type_to_pa

    from lake.schema import feature_time

    (key,) = [c.name for c in fv.entity_columns]
    ts_field = fv.batch_source.timestamp_field
    fields = [pa.field(key, pa.int64()), pa.field(ts_field, pa.timestamp("us", tz="UTC"))]
    fields += [
        pa.field(f.name, feast_value_type_to_pa(f.dtype.to_value_type())) for f in fv.features
    ]
    records = []
    for k, ds, *stamp in rows:
        at = ts(stamp[0]) if stamp else pd.Timestamp(feature_time(ds))
        values = {f.name: stored_value(f.dtype, k, at, j) for j, f in enumerate(fv.features)}
        records.append({"ds": ds, key: k, ts_field: at, **values})
    frame = pd.DataFrame(records)
    for ds, day in frame.groupby("ds"):
        table = pa.Table.from_pandas(day.drop(columns="ds"), schema=pa.schema(fields))
        out = paths.features(fv.name) / f"ds={ds}"
        spark.createDataFrame(table).coalesce(1).write.mode("overwrite").parquet(str(out))
    return frame


@pytest.fixture(scope="module")
def joined(spark, tmp_path_factory):
    """Both joins of ENTITIES for the ranker_v1 service (full names: the views share names)."""
    from features.feast_repo import feature_store
    from features.pit_join import spark_historical_features
    from features.store import apply_if_changed
    from reelflow.paths import Paths

    mp = pytest.MonkeyPatch()
    mp.setenv("REELFLOW_HOME", str(tmp_path_factory.mktemp("pit_join") / "home"))
    mp.delenv("FEAST_FS_YAML_FILE_PATH", raising=False)
    paths = Paths.from_env()
    apply_if_changed(paths)
    store = feature_store(paths)
    views = {name: store.get_feature_view(name) for name in ("user_features", "video_features")}
    stored = {
        "user_features": write_view(spark, paths, views["user_features"], USER_ROWS),
        "video_features": write_view(spark, paths, views["video_features"], VIDEO_ROWS),
    }
    entity = pd.DataFrame(ENTITIES, columns=ENTITY_COLUMNS)
    entity["event_timestamp"] = pd.to_datetime(
        entity["event_timestamp"], utc=True, format="ISO8601"
    )
    service = store.get_feature_service("ranker_v1")
    feast_out = store.get_historical_features(
        entity_df=entity, features=service, full_feature_names=True
    ).to_df()
    spark_out = spark_historical_features(entity, "ranker_v1", paths, full_feature_names=True)
    yield {
        "paths": paths,
        "store": store,
        "views": views,
        "stored": stored,
        "entity": entity,
        "feast": feast_out,
        "spark": spark_out,
    }
    mp.undo()


def expected_row(joined, row) -> dict:
    out = {}
    for name, fv in joined["views"].items():
        (key,) = [c.name for c in fv.entity_columns]
        ts_field = fv.batch_source.timestamp_field
        stored = joined["stored"][name]
        candidates = stored[
            (stored[key] == getattr(row, key))
            & (stored[ts_field] <= row.event_timestamp)
            & (stored[ts_field] >= row.event_timestamp - fv.ttl)
        ]
        hit = candidates.loc[candidates[ts_field].idxmax()] if len(candidates) else None
        for f in fv.features:
            out[f"{name}__{f.name}"] = None if hit is None else hit[f.name]
    return out


def test_every_entity_row_comes_back_in_order_with_its_columns(joined):
    entity, got = joined["entity"], joined["spark"]
    assert len(got) == len(entity)
    pd.testing.assert_frame_equal(got[ENTITY_COLUMNS], entity, check_dtype=False)
    # Order-independent as well: the same multiset of entity rows, duplicates included.
    by_value = ENTITY_COLUMNS
    pd.testing.assert_frame_equal(
        got[by_value].sort_values(by_value).reset_index(drop=True),
        entity.sort_values(by_value).reset_index(drop=True),
        check_dtype=False,
    )
    feature_columns = [f"{n}__{f.name}" for n, fv in joined["views"].items() for f in fv.features]
    assert list(got.columns) == ENTITY_COLUMNS + feature_columns


def test_values_equal_the_brute_force_reference(joined):
    """Latest stamp <= entity time and >= entity time - TTL, per view; nulls when none."""
    for row in joined["spark"].itertuples(index=False):
        want = expected_row(joined, row)
        for column, value in want.items():
            assert same_value(getattr(row, column), value), (row.label, column)


def test_boundary_cases_pick_the_rows_worked_out_by_hand(joined):
    got = joined["spark"].set_index("label")
    minutes = lambda text: int(ts(text).timestamp() // 60) % 1_000_000 * 10  # noqa: E731

    def stamp_of(label, column):
        value = got.loc[[label], column].iloc[0]
        return None if pd.isna(value) else int(value) % 10_000_000 - int(value) % 10

    assert stamp_of("at a stamp", "user_features__views_1d") == minutes("2020-07-02")
    assert stamp_of("off-grid stamp", "video_features__exposures_1d") == minutes("2020-07-02 15:30")
    assert stamp_of("just before", "video_features__exposures_1d") == minutes("2020-07-02")
    assert stamp_of("one ttl old", "user_features__views_1d") == minutes("2020-07-03")
    assert stamp_of("third user", "user_features__views_1d") == minutes("2020-07-06")
    assert stamp_of("before any", "user_features__views_1d") is None
    assert stamp_of("before any", "video_features__exposures_1d") is None
    assert stamp_of("user stale", "user_features__views_1d") is None
    assert stamp_of("user stale", "video_features__exposures_1d") == minutes("2020-07-04")
    assert stamp_of("all stale", "video_features__exposures_1d") is None
    # Arrays come through whole.
    affinity = got.loc["at a stamp", "user_features__category_affinity"]
    assert len(affinity) == 3 and not pd.isna(affinity[0])


def test_rows_feast_returns_are_identical_and_the_rest_are_its_known_gaps(joined):
    """Feast's file store returns a subset: every row it returns equals ours, column by column.

    The rows it leaves out are exactly (a) the rows for which some view has no stored row in
    the window (Feast drops them instead of returning nulls) and (b) all but one of the
    entity rows sharing user_id + event_timestamp (its de-duplication on the first view's keys
    and the timestamp). Both are reasons this join exists; if Feast changes, this test says so.
    """
    feast_out, ours = joined["feast"], joined["spark"]
    assert set(feast_out.columns) == set(ours.columns)
    key = ["user_id", "video_id", "event_timestamp", "label"]
    ours_by_key = {tuple(r[key]): r for _, r in ours.iterrows()}
    for _, theirs in feast_out.iterrows():
        mine = ours_by_key[tuple(theirs[key])]
        for column in feast_out.columns:
            assert same_value(mine[column], theirs[column]), (theirs["label"], column)
    returned = feast_out["label"].tolist()
    assert not NO_MATCH & set(returned)
    assert returned.count("dup") == 1
    full = [label for label in ours["label"] if label not in NO_MATCH and label != "dup"]
    assert sorted(returned) == sorted([*full, "dup"])


def test_feature_refs_and_feast_name_rules(joined):
    """A list of refs gives bare names, like Feast; colliding bare names fail like Feast's."""
    from feast.errors import FeatureNameCollisionError

    from features.pit_join import spark_historical_features

    paths, store, entity = joined["paths"], joined["store"], joined["entity"]
    refs = ["video_features:exposures_1d", "user_features:views_7d", "user_features:active_hours"]
    got = spark_historical_features(entity, refs, paths)
    assert list(got.columns) == ENTITY_COLUMNS + ["exposures_1d", "views_7d", "active_hours"]
    full = joined["spark"]
    for ref in refs:
        view, name = ref.split(":")
        assert all(
            same_value(a, b) for a, b in zip(got[name], full[f"{view}__{name}"], strict=True)
        )
    with pytest.raises(FeatureNameCollisionError):
        store.get_historical_features(
            entity_df=entity, features=store.get_feature_service("ranker_v1")
        )
    with pytest.raises(FeatureNameCollisionError):
        spark_historical_features(entity, "ranker_v1", paths)


def test_only_files_that_can_match_are_read(joined):
    """Entity times 07-03 00:00..12:00 with a 2-day TTL need stamps in [07-01 00:00, 07-03 12:00]."""
    from features.pit_join import source_files

    fv = joined["views"]["user_features"]
    start = ts("2020-07-03") - fv.ttl
    kept, every = source_files(
        fv.batch_source.path,
        fv.batch_source.timestamp_field,
        start.value,
        ts("2020-07-03 12:00").value,
    )
    day = lambda f: f.parent.name  # noqa: E731
    assert sorted({day(f) for f in every}) == ["ds=2020-07-01", "ds=2020-07-02", "ds=2020-07-05"]
    assert sorted({day(f) for f in kept}) == ["ds=2020-07-01", "ds=2020-07-02"]


def test_auto_engine_picks_by_size_and_both_give_the_rankers_frame(joined, monkeypatch):
    """`features.training_join=auto` (the default) joins up to `training_join_spark_rows` entity
    rows with Feast and more with Spark; the ranker's as-of frame (distinct ids and moments,
    nulls where a view has nothing) is the same whichever one it gets."""
    import numpy as np

    from features.store import join_engine
    from models.ranker_data import _features_as_of

    monkeypatch.delenv("REELFLOW_FEATURES__TRAINING_JOIN", raising=False)
    monkeypatch.setenv("REELFLOW_FEATURES__TRAINING_JOIN_SPARK_ROWS", "3")
    assert [join_engine(n) for n in (0, 3, 4)] == ["feast", "feast", "spark"]
    assert join_engine(10**9, "feast") == "feast"
    with pytest.raises(ValueError, match="'auto', 'spark' or 'feast'"):
        join_engine(1, "duckdb")

    entity = joined["entity"]
    refs = [f"video_features:{f.name}" for f in joined["views"]["video_features"].features]
    frames = {}
    for limit in ("1000", "0"):  # every frame through Feast, then every one through Spark
        monkeypatch.setenv("REELFLOW_FEATURES__TRAINING_JOIN_SPARK_ROWS", limit)
        ids = entity["video_id"].to_numpy(np.int64)
        frames[limit] = _features_as_of(
            "video_id", ids, entity["event_timestamp"], refs, joined["paths"]
        )
    feast_frame, spark_frame = frames["1000"], frames["0"]
    assert feast_frame.shape == spark_frame.shape
    assert feast_frame.isna().to_numpy().any()  # rows without features come back as nulls
    for column in feast_frame.columns:
        assert all(
            same_value(a, b) for a, b in zip(feast_frame[column], spark_frame[column], strict=True)
        ), column
