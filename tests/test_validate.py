"""The Great Expectations gate passes a clean day and names each expectation a bad one breaks."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from jobs.validate import ValidationFailed, validate_day

DAY = "2020-07-05"
START = datetime(2020, 7, 5)
INTERACTIONS = "user_id long, video_id long, event_ts timestamp, watch_ms long, duration_ms long, watch_ratio double, source string"


def clean_rows(n: int = 48, day: datetime = START) -> list[tuple]:
    """n views spread evenly over the day, the last one at 23:30."""
    return [
        (i % 5, i % 3, day + timedelta(minutes=30 * i), 500, 1000, 0.5, "kuairec") for i in range(n)
    ]


def write_partition(spark, table_dir, ds, rows, schema) -> None:
    spark.createDataFrame(rows, schema).write.mode("overwrite").parquet(str(table_dir / f"ds={ds}"))


def write_day(spark, paths, interactions, videos=None, users=None, ds=DAY) -> None:
    write_partition(spark, paths.normalized("interactions"), ds, interactions, INTERACTIONS)
    videos = videos if videos is not None else [(v, [v], v, "caption", f"c{v}") for v in range(3)]
    write_partition(
        spark,
        paths.normalized("videos"),
        ds,
        videos,
        "video_id long, categories array<int>, primary_category int, caption string, category_name string",
    )
    users = users if users is not None else [(u, "high_active") for u in range(5)]
    write_partition(
        spark, paths.normalized("users"), ds, users, "user_id long, user_active_degree string"
    )


def test_a_clean_day_passes_and_the_report_is_kept(spark, home):
    write_day(spark, home, clean_rows())
    result = validate_day(DAY, paths=home)
    assert result["success"] and set(result["tables"]) == {"interactions", "videos", "users"}
    assert (home.validation("interactions") / f"ds={DAY}.json").exists()


def replace_first(rows, **changes):
    first = dict(
        zip(
            ("user_id", "video_id", "event_ts", "watch_ms", "duration_ms", "watch_ratio", "source"),
            rows[0],
            strict=True,
        )
    )
    first.update(changes)
    return [tuple(first.values()), *rows[1:]]


CASES = {
    "null user id": (
        lambda: replace_first(clean_rows(), user_id=None),
        None,
        None,
        "interactions: expect_column_values_to_not_be_null(user_id)",
    ),
    "watch ratio out of range": (
        lambda: replace_first(clean_rows(), watch_ratio=500.0),
        None,
        None,
        "interactions: expect_column_values_to_be_between(watch_ratio)",
    ),
    "a row of the next day": (
        lambda: replace_first(clean_rows(), event_ts=START + timedelta(days=1, hours=1)),
        None,
        None,
        "interactions: expect_column_values_to_be_between(event_ts)",
    ),
    "video missing from the catalog": (
        lambda: replace_first(clean_rows(), video_id=99),
        None,
        None,
        "interactions: expect_column_values_to_be_in_set(video_in_catalog) observed 1",
    ),
    "day stops at noon (freshness)": (
        lambda: clean_rows(24),
        None,
        None,
        "interactions: expect_column_max_to_be_between(hour_of_day) observed 11.5",
    ),
    "empty day": (
        lambda: [],
        None,
        None,
        "interactions: expect_table_row_count_to_be_between(None)",
    ),
    "duplicate video id": (
        clean_rows,
        [
            (1, [1], 1, "a", "c1"),
            (1, [1], 1, "b", "c1"),
            (0, [0], 0, "c", "c0"),
            (2, [2], 2, "d", "c2"),
        ],
        None,
        "videos: expect_column_values_to_be_unique(video_id)",
    ),
    "null user id in users": (
        clean_rows,
        None,
        [(None, "x"), (1, "y")],
        "users: expect_column_values_to_not_be_null(user_id)",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_broken_expectation_fails_the_gate_and_is_named(spark, home, case):
    interactions, videos, users, expected = CASES[case]
    write_day(spark, home, interactions(), videos, users)
    with pytest.raises(ValidationFailed) as failure:
        validate_day(DAY, paths=home)
    assert expected in str(failure.value)


def test_volume_against_the_trailing_days(spark, home):
    for back in range(1, 4):
        day = START - timedelta(days=back)
        write_day(spark, home, clean_rows(48, day), ds=day.date().isoformat())
    # A tenth of the usual volume, still fresh: half a delivery.
    thin = [r for i, r in enumerate(clean_rows()) if i % 10 == 0 or i == 47]
    write_day(spark, home, thin)
    with pytest.raises(
        ValidationFailed,
        match=r"interactions: expect_table_row_count_to_be_between\(None\) observed 6, "
        r"expected 14 .. 145",
    ):
        validate_day(DAY, paths=home)


def test_the_releases_partial_first_day_is_no_volume_baseline(spark, home):
    """KuaiRand is cut at Beijing midnight: its first UTC day holds 8 hours, and its second
    day's full volume is no anomaly. The first landed day stays out of the baseline."""
    first = START - timedelta(days=1)
    first_ds = first.date().isoformat()
    write_day(spark, home, clean_rows(8, first), ds=first_ds)  # a third of a day
    write_day(spark, home, clean_rows(48))
    with pytest.raises(ValidationFailed, match="observed 48, expected 2 .. 25"):
        validate_day(DAY, paths=home)  # without a landing summary the partial day counts
    home.landing.mkdir(parents=True, exist_ok=True)
    (home.landing / "_landed.json").write_text(
        json.dumps({"tables": {"interactions": {"days": [first_ds, DAY]}}})
    )
    assert validate_day(DAY, paths=home)["success"]


def test_the_day_a_release_ends_on_is_fresh_up_to_its_end(spark, home):
    """KuaiRand ends at Beijing midnight, 16:00 UTC: its last UTC day's last view is at about
    16:00. That day is judged against the release's end (landing records it), not midnight."""
    until_four = [r for r in clean_rows() if r[2].hour < 16]  # the last view at 15:30
    write_day(spark, home, until_four)
    with pytest.raises(ValidationFailed, match=r"hour_of_day\) observed 15.5, expected 18.0"):
        validate_day(DAY, paths=home)
    home.landing.mkdir(parents=True, exist_ok=True)
    (home.landing / "_landed.json").write_text(json.dumps({"release_end": f"{DAY}T16:00:00Z"}))
    assert validate_day(DAY, paths=home)["success"]
    # A day before the end is still judged against midnight.
    (home.landing / "_landed.json").write_text(json.dumps({"release_end": "2020-07-06T16:00:00Z"}))
    with pytest.raises(ValidationFailed, match="hour_of_day"):
        validate_day(DAY, paths=home)


def write_days_before(spark, home, n: int = 2) -> list[str]:
    days = []
    for back in range(n, 0, -1):
        day = START - timedelta(days=back)
        days.append(day.date().isoformat())
        write_day(spark, home, clean_rows(48, day), ds=days[-1])
    return days


def test_a_clean_range_passes_in_one_run_and_each_day_keeps_its_report(spark, home):
    from jobs.validate import validate_days

    days = [*write_days_before(spark, home), DAY]
    write_day(spark, home, clean_rows())
    results = validate_days(days, paths=home)
    assert list(results) == days
    for ds, result in results.items():
        assert result["success"] and result["range"] == [days[0], DAY]
        assert set(result["tables"]) == {"interactions", "videos", "users"}
        report = json.loads((home.validation("interactions") / f"ds={ds}.json").read_text())
        assert report["success"] and report["range"] == [days[0], DAY]


@pytest.mark.parametrize("case", list(CASES))
def test_a_range_names_the_day_and_the_expectation_a_daily_run_names(spark, home, case):
    """Every rule a day breaks fails the range too, with the daily run's own message."""
    from jobs.validate import validate_days

    interactions, videos, users, expected = CASES[case]
    days = write_days_before(spark, home)
    write_day(spark, home, interactions(), videos, users)
    with pytest.raises(ValidationFailed) as failure:
        validate_days([*days, DAY], paths=home)
    assert f"validation of ds={DAY} failed" in str(failure.value)
    assert expected in str(failure.value)


def test_a_range_checks_each_days_volume_against_its_own_trailing_days(spark, home):
    from jobs.validate import validate_days

    days = write_days_before(spark, home, 3)
    thin = [r for i, r in enumerate(clean_rows()) if i % 10 == 0 or i == 47]
    write_day(spark, home, thin)
    assert validate_days(days, paths=home)[days[-1]]["success"]
    with pytest.raises(ValidationFailed, match=r"observed 6, expected 14 .. 145"):
        validate_days([*days, DAY], paths=home)
