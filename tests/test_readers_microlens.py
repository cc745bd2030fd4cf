"""MicroLens reader: pairs log, headerless CRLF titles, likes/views; faults named exactly."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs.readers import microlens
from jobs.readers.native import InputFileError
from lake.schema import QUARANTINE_REASON
from reelflow.config import QualityConfig
from tests.conftest import SHARED_DATA

REAL_TITLES = SHARED_DATA / "microlens" / "MicroLens-100k_title_en.csv"
PREFIX = "MicroLens-100k_"


def reasons(df) -> Counter:
    bad = df.where(F.col(QUARANTINE_REASON).isNotNull()).select(QUARANTINE_REASON)
    return Counter(r[0] for r in bad.collect())


def write_pairs(folder: Path, rows: list[str], prefix: str = PREFIX) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{prefix}pairs.csv"
    path.write_text("\n".join(["user,item,timestamp", *rows]) + "\n")
    return path


# ----------------------------------------------------------------------------- real file


@pytest.mark.skipif(
    not REAL_TITLES.exists(), reason="../shared/data/microlens title file is absent"
)
def test_real_title_file_has_no_header_and_keeps_empty_titles(spark):
    videos = microlens.read_videos(spark, REAL_TITLES).persist()
    assert videos.count() == 19_738
    assert videos.where(F.col(QUARANTINE_REASON).isNotNull()).count() == 0
    # No header row lost (id 1 is the first line) or invented (no row without an integer id).
    ids = videos.agg(F.min("video_id"), F.max("video_id"), F.countDistinct("video_id")).first()
    assert tuple(ids) == (1, 19_738, 19_738)
    assert videos.where("caption is null").count() == 72
    assert videos.where("video_id = 1849").first().caption is None  # the line "1849, "
    first = videos.where("video_id = 1").first()
    assert first.caption == "Gu long song gaga bad"  # CRLF and the space after the comma gone
    assert videos.where(F.col("caption").contains("\r")).count() == 0
    assert set(videos.columns) == {
        "raw_video_id",
        "raw_title",
        "video_id",
        "caption",
        QUARANTINE_REASON,
    }
    videos.unpersist()


# ----------------------------------------------------------------------------- titles


def test_titles_split_on_the_first_comma_only(spark, tmp_path):
    # The real file holds no title with a comma; this one does, with CRLF endings.
    path = tmp_path / f"{PREFIX}title_en.csv"
    path.write_bytes(
        b"1, hello, world, again\r\n"
        b"2, \r\n"
        b"3,plain\r\n"
        b"x, an id that is no number\r\n"
        b"no comma at all\r\n"
        b"1, hello, world, again\r\n"
        b"4, a bare\rreturn\r\n"
    )
    videos = microlens.read_videos(spark, path).persist()
    assert videos.count() == 7
    assert reasons(videos) == Counter(
        {
            "video_id missing or not an integer": 1,
            "no comma between id and title": 1,
            "exact duplicate row": 1,
        }
    )
    ok = {r.video_id: r.caption for r in videos.where(F.col(QUARANTINE_REASON).isNull()).collect()}
    assert ok == {1: "hello, world, again", 2: None, 3: "plain", 4: "a bare\rreturn"}
    videos.unpersist()


def test_likes_and_views_join_the_titles(spark, tmp_path):
    titles = tmp_path / f"{PREFIX}title_en.csv"
    titles.write_bytes(b"1, one\r\n2, two\r\n")
    likes = tmp_path / f"{PREFIX}likes_and_views.txt"
    likes.write_text("1\t10\t100\n3\t30\t300\n4\tmany\t400\n5\t-1\t500\n")
    videos = microlens.read_videos(spark, titles, likes).persist()
    rows = {r.video_id: (r.caption, r.likes, r.views) for r in videos.collect()}
    # An item in one file only is kept (full outer join on the id).
    assert rows == {
        1: ("one", 10, 100),
        2: ("two", None, None),
        3: (None, 30, 300),
        4: (None, None, 400),
        5: (None, -1, 500),
    }
    assert reasons(videos) == Counter({"likes missing or not an integer": 1, "negative likes": 1})
    assert dict(videos.dtypes)["likes"] == "bigint" and dict(videos.dtypes)["views"] == "bigint"
    videos.unpersist()


def test_likes_file_with_the_wrong_separator_is_named(spark, tmp_path):
    likes = tmp_path / f"{PREFIX}likes_and_views.txt"
    likes.write_text("1,10,100\n")
    with pytest.raises(InputFileError) as error:
        microlens.read_videos(spark, None, likes)
    assert str(error.value) == f"{likes}: wrong separator: expected '\\t', the first line uses ','"


def test_missing_title_file_is_named(spark, tmp_path):
    path = tmp_path / f"{PREFIX}title_en.csv"
    with pytest.raises(InputFileError) as error:
        microlens.read_videos(spark, path)
    assert str(error.value) == f"{path}: file not found"


# ----------------------------------------------------------------------------- the log


def test_malformed_pairs_are_quarantined_with_their_reason(spark, tmp_path):
    valid = ["1,10,1651314030792", "1,11,1651314031000", "2,10,1651400000000", "2,10,1651400001000"]
    bad = {
        "u1,10,1651314030792": "user missing or not an integer",
        "1,,1651314030792": "item missing or not an integer",
        "1,12,yesterday": "timestamp missing or not a number",
        "1,12,1e30": "timestamp out of range",
        "1,12,-5": "timestamp before 1990-01-01 (quality.min_event_time)",
    }
    duplicate = "3,10,1651314030792"
    path = write_pairs(tmp_path, [*valid, *bad, duplicate, duplicate, duplicate])
    rows = microlens.read_interactions(spark, path).persist()
    assert rows.count() == len(valid) + len(bad) + 3
    assert rows.where(F.col(QUARANTINE_REASON).isNull()).count() == len(valid) + 1
    assert reasons(rows) == Counter({**Counter(bad.values()), "exact duplicate row": 2})
    first = rows.where("raw_timestamp = '1651314030792' and user_id = 1").select(
        F.date_format("event_ts", "yyyy-MM-dd HH:mm:ss.SSS").alias("ts"), "ds", "video_id"
    )
    assert first.first().asDict() == {
        "ts": "2022-04-30 10:20:30.792",
        "ds": "2022-04-30",
        "video_id": 10,
    }
    # MicroLens has no watch time, flags or categories: those columns are absent.
    assert set(rows.columns) == {
        "raw_user",
        "raw_item",
        "raw_timestamp",
        "raw__corrupt_record",  # a line with the wrong number of fields keeps its text here
        "user_id",
        "video_id",
        "event_ts",
        "source",
        "ds",
        QUARANTINE_REASON,
    }
    rows.unpersist()


def test_pairs_missing_a_column_names_the_file_and_column(spark, tmp_path):
    path = tmp_path / f"{PREFIX}pairs.csv"
    path.write_text("user,item\n1,2\n")
    with pytest.raises(InputFileError) as error:
        microlens.read_interactions(spark, path)
    assert (
        str(error.value) == f"{path}: missing column(s) ['timestamp']; header is ['user', 'item']"
    )


def test_pairs_with_the_wrong_separator_is_named(spark, tmp_path):
    path = tmp_path / f"{PREFIX}pairs.csv"
    path.write_text("user\titem\ttimestamp\n1\t2\t3\n")
    with pytest.raises(InputFileError) as error:
        microlens.read_interactions(spark, path)
    assert str(error.value) == f"{path}: wrong separator: expected ',', the header uses '\\t'"


def test_missing_pairs_file_is_named(spark, tmp_path):
    path = tmp_path / f"{PREFIX}pairs.csv"
    with pytest.raises(InputFileError) as error:
        microlens.read_interactions(spark, path)
    assert str(error.value) == f"{path}: file not found"


# ----------------------------------------------------------------------------- pairs.tsv


def test_agreeing_pairs_tsv_is_checked_and_no_users_table_is_made(spark, tmp_path):
    write_pairs(
        tmp_path,
        ["1,10,1651314031000", "1,11,1651314032000", "1,10,1651314033000", "2,12,1651314031500"],
    )
    (tmp_path / f"{PREFIX}pairs.tsv").write_text("1\t10 11 10\n2\t12\n")
    release = microlens.detect(tmp_path)
    assert set(release.files) == {"pairs.csv", "pairs.tsv"}
    tables = microlens.read_tables(spark, release, QualityConfig())
    assert set(tables) == {"interactions"}  # no user file: no users table, none invented
    assert tables["interactions"].count() == 4


def test_pairs_tsv_lists_only_what_the_reader_keeps_of_pairs_csv(spark, tmp_path):
    """Rows that go to quarantine (no user, an item that is no number) and the second copy
    of an exact duplicate are not in the tsv, which is derived from the kept log."""
    write_pairs(
        tmp_path,
        [
            "1,10,1651314031000",
            ",11,1651314032000",
            "1,x,1651314032500",
            "1,10,1651314031000",
            "2,12,1651314031500",
        ],
    )
    (tmp_path / f"{PREFIX}pairs.tsv").write_text("1\t10\n2\t12\n")
    tables = microlens.read_tables(spark, microlens.detect(tmp_path), QualityConfig())
    assert tables["interactions"].count() == 5  # every row kept, bad ones with a reason


def test_disagreeing_pairs_tsv_names_both_files(spark, tmp_path):
    csv = write_pairs(tmp_path, ["1,10,1651314031000", "1,11,1651314032000", "2,12,1651314031500"])
    tsv = tmp_path / f"{PREFIX}pairs.tsv"
    tsv.write_text("1\t10 11 11\n2\t12\n")
    release = microlens.detect(tmp_path)
    with pytest.raises(InputFileError) as error:
        microlens.read_tables(spark, release, QualityConfig())
    assert str(error.value) == (
        f"{tsv}: does not agree with {csv}: 1 (user, item) pair(s) occur a different number of "
        f"times, e.g. user 1 item 11: 1 in {csv.name}, 2 in {tsv.name}"
    )


def test_pairs_tsv_alone_is_refused_for_lack_of_timestamps(tmp_path):
    tsv = tmp_path / f"{PREFIX}pairs.tsv"
    tsv.write_text("1\t10 11\n")
    with pytest.raises(InputFileError) as error:
        microlens.detect(tmp_path)
    assert str(error.value) == (
        f"{tsv}: has no timestamps: {PREFIX}pairs.csv (user,item,timestamp) is required, "
        "interactions are partitioned by UTC day"
    )


# ----------------------------------------------------------------------------- detection


def test_detects_100k_and_50k_from_the_prefix(spark, tmp_path):
    write_pairs(tmp_path / "a", ["1,10,1651314031000"])
    (tmp_path / "a" / f"{PREFIX}title_en.csv").write_bytes(b"10, ten\r\n")
    (tmp_path / "a" / f"{PREFIX}likes_and_views.txt").write_text("10\t1\t2\n")
    release = microlens.detect(tmp_path / "a")
    assert (release.dataset, release.variant, release.root) == ("microlens", "100k", tmp_path / "a")
    assert set(release.files) == {"pairs.csv", "title_en.csv", "likes_and_views.txt"}
    videos = microlens.read_tables(spark, release, QualityConfig())["videos"]
    assert [(r.video_id, r.caption, r.likes, r.views) for r in videos.collect()] == [
        (10, "ten", 1, 2)
    ]

    write_pairs(tmp_path / "b" / "data", ["1,10,1651314031000"], prefix="MicroLens-50k_")
    release = microlens.detect(tmp_path / "b")
    assert (release.variant, release.root) == ("50k", tmp_path / "b" / "data")

    write_pairs(tmp_path / "c", ["1,10,1651314031000"], prefix="MicroLens-100K_")
    assert microlens.detect(tmp_path / "c").variant == "100k"


def test_a_folder_that_matches_nothing_lists_the_expected_files(tmp_path):
    (tmp_path / "pairs.csv").write_text("user,item,timestamp\n")
    with pytest.raises(InputFileError) as error:
        microlens.detect(tmp_path)
    assert str(error.value) == (
        f"{tmp_path}: not a MicroLens release: expected MicroLens-<size>_pairs.csv "
        "(header user,item,timestamp) with optional MicroLens-<size>_pairs.tsv, "
        "MicroLens-<size>_title_en.csv and MicroLens-<size>_likes_and_views.txt, "
        "<size> being 100k or 50k; found ['pairs.csv']"
    )


def test_titles_without_the_log_are_refused(tmp_path):
    (tmp_path / f"{PREFIX}title_en.csv").write_bytes(b"1, one\r\n")
    with pytest.raises(InputFileError) as error:
        microlens.detect(tmp_path)
    assert str(error.value).startswith(
        f"{tmp_path / (PREFIX + 'pairs.csv')}: file not found; expected MicroLens-<size>_pairs.csv"
    )
