"""The Great Expectations gate passes a clean day and names what fails on a bad one."""

from datetime import datetime

import pytest

from jobs.validate import ValidationFailed, validate_day


def write_day(spark, paths, ds, rows):
    interactions = spark.createDataFrame(
        rows,
        "user_id long, video_id long, event_ts timestamp, watch_ms long, duration_ms long, watch_ratio double, source string",
    )
    interactions.write.mode("overwrite").parquet(str(paths.normalized("interactions") / f"ds={ds}"))
    videos = spark.createDataFrame(
        [(1, [3], 3, "a", "c3"), (2, [4], 4, "b", "c4")],
        "video_id long, categories array<int>, primary_category int, caption string, category_name string",
    )
    videos.write.mode("overwrite").parquet(str(paths.normalized("videos") / f"ds={ds}"))


def test_a_clean_day_passes_and_the_report_is_kept(spark, home):
    write_day(
        spark, home, "2020-07-05", [(1, 1, datetime(2020, 7, 5, 10), 500, 1000, 0.5, "kuairec")]
    )
    result = validate_day("2020-07-05", paths=home)
    assert result["success"]
    assert (home.validation("interactions") / "ds=2020-07-05.json").exists()


def test_a_bad_day_fails_naming_the_expectations(spark, home):
    rows = [
        (1, 1, datetime(2020, 7, 5, 10), 500, 1000, 500.0, "kuairec"),  # watch ratio out of range
        (1, 9, datetime(2020, 7, 6, 1), 500, 1000, 0.5, "kuairec"),  # next day, unknown video
    ]
    write_day(spark, home, "2020-07-05", rows)
    with pytest.raises(ValidationFailed) as failure:
        validate_day("2020-07-05", paths=home)
    message = str(failure.value)
    assert "expect_column_values_to_be_between(watch_ratio)" in message
    assert "expect_column_values_to_be_between(event_ts)" in message
    assert "expect_column_values_to_be_in_set(video_id)" in message
