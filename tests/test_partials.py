"""Features from daily partial aggregates (features/partials.py, the default) equal the
whole-window computation (`features.incremental=false`) on generated KuaiRec days, day by day
through a window that slides (3 days long, 2 mid), and after partials of earlier days are lost.
"""

from __future__ import annotations

import pandas as pd
import pytest

from features.pit_join import same_value
from lake.partitions import partition

TABLES = {
    "user_features": "user_id",
    "video_features": "video_id",
    "user_sequences": "user_id",
    "labels": None,
}
WINDOW = {"REELFLOW_FEATURES__LONG_WINDOW_DAYS": "3", "REELFLOW_FEATURES__MID_WINDOW_DAYS": "2"}


def close(a, b) -> bool:
    """Equal values; floats to 1e-5 relative (sums of daily sums round differently)."""
    return same_value(a, b, rel_tol=1e-5)


def snapshot(paths, ds: str) -> dict[str, pd.DataFrame]:
    out = {}
    for name, key in TABLES.items():
        frame = pd.read_parquet(partition(paths.features(name), ds))
        order = [key] if key else ["user_id", "event_timestamp", "video_id"]
        out[name] = frame.sort_values(order, kind="stable").reset_index(drop=True)
    return out


def assert_same(got: dict, want: dict, ds: str) -> None:
    for name in TABLES:
        a, b = got[name], want[name]
        assert list(a.columns) == list(b.columns), (ds, name)
        assert len(a) == len(b), (ds, name, len(a), len(b))
        for column in a.columns:
            bad = [
                i
                for i, (x, y) in enumerate(zip(a[column], b[column], strict=True))
                if not close(x, y)
            ]
            assert not bad, (ds, name, column, a[column].iloc[bad[0]], b[column].iloc[bad[0]])


@pytest.fixture(scope="module")
def normalized_home(spark, tiny_raw, tmp_path_factory):
    from jobs.landing import land
    from jobs.normalize import normalize_day
    from reelflow.paths import Paths

    raw, manifest = tiny_raw
    mp = pytest.MonkeyPatch()
    mp.setenv("REELFLOW_HOME", str(tmp_path_factory.mktemp("partials") / "home"))
    for key, value in WINDOW.items():
        mp.setenv(key, value)
    land("kuairec", raw)
    for ds in manifest["days"]:
        normalize_day("kuairec", raw, ds)
    yield Paths.from_env(), manifest["days"]
    mp.undo()


def compute(ds: str, paths, incremental: bool) -> dict:
    from features.compute import compute_features
    from reelflow.config import load_config

    env = {**WINDOW, "REELFLOW_FEATURES__INCREMENTAL": str(incremental).lower()}
    summary = compute_features(ds, load_config(env), paths)
    assert summary["from"] == ("daily partial aggregates" if incremental else "the whole window")
    return snapshot(paths, ds)


def test_partials_equal_the_whole_window_day_by_day(normalized_home):
    from features.partials import USER_RECENT, table

    paths, days = normalized_home
    assert len(days) >= 4  # the 3-day window slides past the first day
    for ds in days:
        incremental = compute(ds, paths, incremental=True)
        assert_same(incremental, compute(ds, paths, incremental=False), ds)
        recent = pd.read_parquet(partition(table(paths, USER_RECENT), ds))
        assert recent.groupby("user_id").size().max() <= 50
        assert recent["view_ds"].min() >= days[max(0, days.index(ds) - 2)]
    users = incremental["user_features"]
    assert (users["views_28d"] >= users["views_7d"]).all() and (users["views_7d"] > 0).any()


def test_lost_partials_are_rebuilt_from_the_normalized_days(normalized_home):
    """A home written before the partials (or a day normalized later): the missing daily rows
    are made from that day's views, and user_recent from the whole window."""
    import shutil

    from features.partials import USER_DAILY, USER_RECENT, VIDEO_DAILY, table

    paths, days = normalized_home
    last, before = days[-1], days[-2]
    for name in (USER_DAILY, VIDEO_DAILY, USER_RECENT):
        shutil.rmtree(partition(table(paths, name), before))
    want = compute(last, paths, incremental=False)
    assert_same(compute(last, paths, incremental=True), want, last)
    for name in (USER_DAILY, VIDEO_DAILY):
        assert partition(table(paths, name), before).exists()


def partial_rows(spark, folder) -> list[str]:
    """A partition's rows, sorted, floats to 9 digits (sums of one day's views, in any order),
    maps as sorted pairs (the order of a map's entries carries nothing)."""

    def plain(value):
        if isinstance(value, float):
            return round(value, 9)
        return sorted(value.items()) if isinstance(value, dict) else value

    rows = spark.read.parquet(str(folder)).collect()
    return sorted(repr(tuple(plain(v) for v in row)) for row in rows)


def test_a_range_of_days_computes_what_day_by_day_runs_write(
    spark, normalized_home, tmp_path, monkeypatch
):
    """A first load computes many days in one job per table (`compute_features_days`): the
    same feature, sequence and label partitions, daily partials and user_recent lists as a run
    per day; the second range starts from the first's stored user_recent."""
    import shutil

    from features.compute import compute_features_days
    from features.partials import USER_DAILY, USER_RECENT, VIDEO_DAILY, table
    from reelflow.config import load_config
    from reelflow.paths import Paths

    by_day, days = normalized_home
    config = load_config({**WINDOW, "REELFLOW_FEATURES__INCREMENTAL": "true"})
    monkeypatch.setenv("REELFLOW_HOME", str(tmp_path / "range"))
    ranged = Paths.from_env()
    shutil.copytree(by_day.lake / "normalized", ranged.lake / "normalized")
    first = compute_features_days(days[:2], config, ranged)
    rest = compute_features_days(days[2:], config, ranged)
    summaries = first | rest
    assert list(summaries) == days
    for ds in days:
        want = compute_features_days([ds], config, by_day)[ds]
        got = summaries[ds]
        assert got.pop("range") == ([days[0], days[1]] if ds in days[:2] else [days[2], days[-1]])
        assert got == want
        assert_same(snapshot(ranged, ds), snapshot(by_day, ds), ds)
        for name in (USER_DAILY, VIDEO_DAILY, USER_RECENT):
            a, b = (partition(table(home, name), ds) for home in (ranged, by_day))
            assert partial_rows(spark, a) == partial_rows(spark, b), (ds, name)
