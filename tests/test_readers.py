"""KuaiRec reader: native files as released, quirks included; bad rows quarantined with a reason."""

import pytest
from pyspark.sql import functions as F

from jobs.readers import kuairec
from jobs.readers.native import InputFileError
from lake.schema import QUARANTINE_REASON
from reelflow.config import QualityConfig
from tests.conftest import SHARED_DATA

REAL_KUAIREC = SHARED_DATA / "kuairec"


def test_generated_log_rows_are_kept_or_quarantined_per_day(spark, tiny_raw):
    raw, manifest = tiny_raw
    rows = kuairec.read_interactions(spark, raw, QualityConfig())
    per_day = {
        r["ds"]: (r["n"], r["ok"])
        for r in rows.groupBy("ds")
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum(F.col(QUARANTINE_REASON).isNull().cast("int")).alias("ok"),
        )
        .collect()
    }
    assert {d: n for d, (n, _) in per_day.items()} == manifest["rows_per_day"]
    assert {d: ok for d, (_, ok) in per_day.items()} == manifest["valid_rows_per_day"]
    reasons = {r[0] for r in rows.select(QUARANTINE_REASON).distinct().collect()} - {None}
    assert reasons == {
        "user_id missing or not an integer",
        "play_duration missing or not a number",
        "negative video_duration",
        "watch_ratio outside [0.0, 100.0]",
        "exact duplicate row",
    }


@pytest.mark.skipif(not REAL_KUAIREC.exists(), reason="../shared/data/kuairec is absent")
def test_real_caption_file_with_bare_carriage_returns_reads_every_row(spark):
    videos = kuairec.read_videos(spark, REAL_KUAIREC)
    assert videos.count() == 10_728
    assert videos.where(F.col(QUARANTINE_REASON).isNotNull()).count() == 0
    first = videos.where("video_id = 1").first()
    assert first.categories == [27, 9] and first.primary_category == 27
    # -124 / UNKNOWN are KuaiRec's "missing": they must not become a category name.
    assert videos.where(F.col("category_name") == "UNKNOWN").count() == 0


@pytest.mark.skipif(not REAL_KUAIREC.exists(), reason="../shared/data/kuairec is absent")
def test_real_user_features_read_with_sentinels_as_null(spark):
    users = kuairec.read_users(spark, REAL_KUAIREC)
    assert users.count() == 7_176
    assert users.where(F.col(QUARANTINE_REASON).isNotNull()).count() == 0


def test_missing_column_names_the_file_and_the_column(spark, tmp_path):
    (tmp_path / "big_matrix.csv").write_text("user_id,video_id,play_duration\n1,2,3\n")
    with pytest.raises(
        InputFileError, match=r"big_matrix\.csv: missing column\(s\) \['video_duration'"
    ):
        kuairec.read_interactions(spark, tmp_path, QualityConfig())


def test_wrong_separator_is_named(spark, tmp_path):
    header = "\t".join(kuairec.MATRIX_COLUMNS)
    (tmp_path / "big_matrix.csv").write_text(header + "\n")
    with pytest.raises(
        InputFileError, match=r"wrong separator: expected ',', the header uses '\\t'"
    ):
        kuairec.read_interactions(spark, tmp_path, QualityConfig())


def test_missing_file_is_named(spark, tmp_path):
    with pytest.raises(InputFileError, match=r"item_categories\.csv: file not found"):
        kuairec.read_videos(spark, tmp_path)
