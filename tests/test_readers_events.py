"""Events reader: a team's own logs described by reelflow_events.toml; spec faults named exactly."""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs.readers import events
from jobs.readers.native import InputFileError
from lake.schema import QUARANTINE_REASON
from reelflow.config import QualityConfig
from tests.conftest import SHARED_DATA

U_DATA = SHARED_DATA / "movielens" / "ml-100k" / "u.data"
LOGGER = "reelflow.readers.events"

MOVIELENS_SPEC = """
format = "tsv"
header = false
files = ["u.data"]
columns = ["user", "item", "rating", "ts"]
source = "movielens"

[mapping]
user_id = "user"
video_id = "item"
event_ts = "ts"

[time]
unit = "s"
"""


def reasons(df) -> Counter:
    bad = df.where(F.col(QUARANTINE_REASON).isNotNull()).select(QUARANTINE_REASON)
    return Counter(r[0] for r in bad.collect())


def utc(column: str = "event_ts"):
    return F.date_format(column, "yyyy-MM-dd HH:mm:ss.SSS").alias(column)


def folder_with(tmp_path: Path, spec: str, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    (tmp_path / events.SPEC_NAME).write_text(spec)
    return tmp_path


def events_logs(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


# ----------------------------------------------------------------------------- MovieLens


@pytest.mark.skipif(not U_DATA.exists(), reason="../shared/data/movielens/ml-100k/u.data is absent")
def test_movielens_u_data_flows_through_the_spec(spark, tmp_path, caplog):
    # A copy: a spec's files may not resolve outside its folder (a symlink is refused).
    shutil.copyfile(U_DATA, tmp_path / "u.data")
    (tmp_path / events.SPEC_NAME).write_text(MOVIELENS_SPEC)
    release = events.detect(tmp_path)
    assert (release.dataset, release.variant) == ("events", "movielens")
    assert release.all_files() == sorted([tmp_path / "u.data", tmp_path / events.SPEC_NAME])
    with caplog.at_level(logging.INFO, logger=LOGGER):
        tables = events.read_tables(spark, release, QualityConfig())
    assert set(tables) == {"interactions"}
    rows = tables["interactions"].persist()
    stats = rows.agg(
        F.count(F.lit(1)), F.countDistinct("user_id"), F.countDistinct("video_id")
    ).first()
    assert tuple(stats) == (100_000, 943, 1_682)
    assert rows.where(F.col(QUARANTINE_REASON).isNotNull()).count() == 0
    first = rows.where("user_id = 196 and video_id = 242").select(utc(), "ds", "source").first()
    assert first.asDict() == {
        "event_ts": "1997-12-04 15:55:49.000",  # 881250949 s
        "ds": "1997-12-04",
        "source": "movielens",
    }
    span = rows.agg(F.min("ds"), F.max("ds")).first()
    assert tuple(span) == ("1997-09-20", "1998-04-22")
    # rating is not mapped: kept only as the raw value, no unified column for it.
    assert set(rows.columns) == {
        "raw_user",
        "raw_item",
        "raw_rating",
        "raw_ts",
        "raw__corrupt_record",  # a line with the wrong number of fields keeps its text here
        "user_id",
        "video_id",
        "event_ts",
        "source",
        "ds",
        QUARANTINE_REASON,
    }
    assert events_logs(caplog) == [
        f"{tmp_path / events.SPEC_NAME}: optional column(s) not mapped, absent downstream: "
        "watch_ms, duration_ms, watch_ratio, is_click, is_like, is_follow, is_comment, "
        "is_share, is_hate"
    ]
    rows.unpersist()


# ----------------------------------------------------------------------------- row rules

CSV_SPEC = """
format = "csv"
files = ["log.csv"]

[mapping]
user_id = "uid"
video_id = "vid"
event_ts = "when"

[time]
unit = "iso8601"

[optional]
watch_ms = "played"
duration_ms = "length"
is_like = "liked"
"""


def test_malformed_rows_are_quarantined_with_their_reason(spark, tmp_path, caplog):
    valid = [
        "1,10,2022-04-30T10:20:30.792Z,500,1000,1,a",
        "1,11,2022-04-30 18:20:30+08:00,0,0,0,b",  # zero length: kept, no ratio
        "2,10,2022-04-30,100,1000,true,c",  # a date alone: UTC midnight
        "2,12,2022-05-01T01:00:00,250.4,1000,false,d",  # no offset: UTC
    ]
    bad = {
        "u,10,2022-04-30T10:00:00Z,1,1,0,e": "user_id (column 'uid') missing or not an integer",
        "1,,2022-04-30T10:00:00Z,1,1,0,f": "video_id (column 'vid') missing or not an integer",
        "1,10,last tuesday,1,1,0,g": "event_ts (column 'when') missing or not an ISO 8601 time",
        "1,10,2022-04-30T10:00:00Z,-3,1,0,h": "negative watch_ms (column 'played')",
        "1,10,2022-04-30T10:00:00Z,1,long,0,i": "duration_ms (column 'length') missing or not a number",
        "1,10,2022-04-30T10:00:00Z,1,1,2,j": "is_like (column 'liked') not 0 or 1",
        "1,10,2022-04-30T10:00:00Z,500000,1000,0,k": "watch_ratio outside [0.0, 100.0]",
    }
    duplicate = "3,10,2022-04-30T11:00:00Z,1,2,0,z"
    content = "\n".join(
        ["uid,vid,when,played,length,liked,note", *valid, *bad, duplicate, duplicate]
    )
    folder_with(tmp_path, CSV_SPEC, {"log.csv": content + "\n"})
    with caplog.at_level(logging.INFO, logger=LOGGER):
        rows = events.read_tables(spark, events.detect(tmp_path), QualityConfig())["interactions"]
    rows = rows.persist()
    assert rows.count() == len(valid) + len(bad) + 2
    assert rows.where(F.col(QUARANTINE_REASON).isNull()).count() == len(valid) + 1
    assert reasons(rows) == Counter({**{why: 1 for why in bad.values()}, "exact duplicate row": 1})
    ok = {
        r.raw_note: (r.event_ts, r.ds, r.watch_ms, r.duration_ms, r.watch_ratio, r.is_like)
        for r in rows.where(F.col(QUARANTINE_REASON).isNull())
        .select("raw_note", utc(), "ds", "watch_ms", "duration_ms", "watch_ratio", "is_like")
        .collect()
    }
    assert ok == {
        "a": ("2022-04-30 10:20:30.792", "2022-04-30", 500, 1000, 0.5, 1),
        "b": ("2022-04-30 10:20:30.000", "2022-04-30", 0, 0, None, 0),
        "c": ("2022-04-30 00:00:00.000", "2022-04-30", 100, 1000, 0.1, 1),
        "d": ("2022-05-01 01:00:00.000", "2022-05-01", 250, 1000, 0.2504, 0),
        "z": ("2022-04-30 11:00:00.000", "2022-04-30", 1, 2, 0.5, 0),
    }
    # Mapped optional columns only; watch_ratio is computed from the two mapped durations.
    unified = [c for c in rows.columns if not c.startswith("raw_")]
    assert unified == [
        "user_id",
        "video_id",
        "event_ts",
        "watch_ms",
        "duration_ms",
        "watch_ratio",
        "is_like",
        "source",
        "ds",
        QUARANTINE_REASON,
    ]
    assert events_logs(caplog) == [
        f"{tmp_path / events.SPEC_NAME}: optional column(s) not mapped, absent downstream: "
        "is_click, is_follow, is_comment, is_share, is_hate "
        "(watch_ratio computed from watch_ms / duration_ms)"
    ]
    rows.unpersist()


def test_epoch_milliseconds_from_several_files_matched_by_a_glob(spark, tmp_path):
    spec = """
format = "csv"
header = false
separator = ";"
files = ["logs/*.csv", "logs/day1.csv"]
columns = ["u", "v", "t", "ratio"]
[mapping]
user_id = "u"
video_id = "v"
event_ts = "t"
[time]
unit = "ms"
[optional]
watch_ratio = "ratio"
"""
    folder_with(
        tmp_path,
        spec,
        {
            "logs/day1.csv": "1;10;1651314030792;0.5\n1;11;1651314030793;\n",
            "logs/day2.csv": (
                "2;10;1651400000000;1.5\n2;11;oops;1\n2;12;1e30;1\n2;13;1651400000001;NaN\n"
            ),
            "logs/notes.txt": "not a log",
        },
    )
    release = events.detect(tmp_path)
    assert release.parts["logs"] == [tmp_path / "logs/day1.csv", tmp_path / "logs/day2.csv"]
    rows = events.read_tables(spark, release, QualityConfig())["interactions"].persist()
    assert rows.count() == 6
    assert reasons(rows) == Counter(
        {
            "watch_ratio (column 'ratio') missing or not a number": 2,
            "event_ts (column 't') missing or not epoch milliseconds": 1,
            "event_ts (column 't') out of range": 1,
        }
    )
    ok = rows.where(F.col(QUARANTINE_REASON).isNull()).select(utc(), "ds", "watch_ratio")
    assert sorted(tuple(r) for r in ok.collect()) == [
        ("2022-04-30 10:20:30.792", "2022-04-30", 0.5),
        ("2022-05-01 10:13:20.000", "2022-05-01", 1.5),
    ]
    assert "watch_ms" not in rows.columns and "duration_ms" not in rows.columns
    rows.unpersist()


def test_parquet_logs_with_a_typed_timestamp_and_boolean_flags(spark, tmp_path):
    frame = spark.createDataFrame(
        [(1, 10, datetime(2022, 4, 30, 10, 20, 30, tzinfo=UTC), True), (2, 11, None, False)],
        "member long, clip long, seen timestamp, liked boolean",
    )
    frame.coalesce(1).write.parquet(str(tmp_path / "parquet"))
    spec = """
format = "parquet"
files = ["parquet/*.parquet"]
[mapping]
user_id = "member"
video_id = "clip"
event_ts = "seen"
[time]
unit = "s"
[optional]
is_like = "liked"
"""
    (tmp_path / events.SPEC_NAME).write_text(spec)
    rows = events.read_tables(spark, events.detect(tmp_path), QualityConfig())["interactions"]
    got = sorted(
        tuple(r)
        for r in rows.select("user_id", utc(), "ds", "is_like", QUARANTINE_REASON).collect()
    )
    assert got == [
        (1, "2022-04-30 10:20:30.000", "2022-04-30", 1, None),
        (2, None, None, 0, "event_ts (column 'seen') missing or not an ISO 8601 time"),
    ]


def test_videos_section_reads_an_item_file(spark, tmp_path):
    spec = (
        MOVIELENS_SPEC.replace('files = ["u.data"]', 'files = ["log.tsv"]')
        + """
[videos]
files = ["items.csv"]
format = "csv"
id = "item"
title = "name"
categories = "genres"
categories_separator = "|"
"""
    )
    folder_with(
        tmp_path,
        spec,
        {
            "log.tsv": "1\t10\t5\t881250949\n",
            "items.csv": 'item,name,genres\n10,Toy Story,3|7\n11, ,\nx,"Bad, id",1\n',
        },
    )
    tables = events.read_tables(spark, events.detect(tmp_path), QualityConfig())
    videos = {r.raw_item: r for r in tables["videos"].collect()}
    assert (videos["10"].video_id, videos["10"].caption) == (10, "Toy Story")
    assert (videos["10"].categories, videos["10"].primary_category) == ([3, 7], 3)
    assert (videos["11"].caption, videos["11"].categories, videos["11"].primary_category) == (
        None,
        [],
        None,
    )
    assert videos["x"][QUARANTINE_REASON] == "video_id (column 'item') missing or not an integer"
    assert videos["10"][QUARANTINE_REASON] is None


# ----------------------------------------------------------------------------- spec faults

MAPPING = '[mapping]\nuser_id = "user"\nvideo_id = "item"\nevent_ts = "ts"\n'
TIME = '[time]\nunit = "s"\n'
HEAD = 'format = "tsv"\nheader = false\nfiles = ["u.data"]\ncolumns = ["user", "item", "rating", "ts"]\n'


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        (
            HEAD.replace('format = "tsv"\n', "") + MAPPING + TIME,
            "missing key(s) ['format'] in the spec",
        ),
        (
            HEAD.replace('format = "tsv"', 'format = "xls"') + MAPPING + TIME,
            "format must be one of ['csv', 'tsv', 'parquet'], got 'xls'",
        ),
        (
            HEAD + 'fromat = "csv"\n' + MAPPING + TIME,
            "unknown key(s) ['fromat'] in the spec; allowed: "
            "['format', 'files', 'header', 'columns', 'separator', 'encoding', 'source', "
            "'mapping', 'time', 'optional', 'videos']",
        ),
        (HEAD + TIME, "missing section [mapping]"),
        (
            HEAD + MAPPING.replace('event_ts = "ts"\n', "") + TIME,
            "[mapping] lacks required unified column(s) ['event_ts']",
        ),
        (
            HEAD + MAPPING + TIME + '[optional]\nrating = "rating"\n',
            "unknown unified column(s) ['rating'] in [optional]; [mapping] takes "
            "['user_id', 'video_id', 'event_ts'], [optional] takes ['watch_ms', 'duration_ms', "
            "'watch_ratio', 'is_click', 'is_like', 'is_follow', 'is_comment', 'is_share', "
            "'is_hate']",
        ),
        (
            HEAD + MAPPING.replace("[mapping]\n", '[mapping]\nwatch_ms = "rating"\n') + TIME,
            "unknown unified column(s) ['watch_ms'] in [mapping]; [mapping] takes "
            "['user_id', 'video_id', 'event_ts'], [optional] takes ['watch_ms', 'duration_ms', "
            "'watch_ratio', 'is_click', 'is_like', 'is_follow', 'is_comment', 'is_share', "
            "'is_hate']",
        ),
        (HEAD + MAPPING, "missing section [time]"),
        (
            HEAD + MAPPING + '[time]\nunit = "sec"\n',
            "bad time unit 'sec': [time] unit must be one of ['s', 'ms', 'iso8601']",
        ),
        (
            HEAD.replace('columns = ["user", "item", "rating", "ts"]\n', "") + MAPPING + TIME,
            "columns is required when header = false",
        ),
        (
            HEAD.replace('"ts"]', '"time"]') + MAPPING + TIME,
            "mapped column(s) 'ts' (event_ts) not in the spec's columns "
            "['user', 'item', 'rating', 'time']",
        ),
        (
            HEAD.replace('["u.data"]', '["logs/*.tsv"]') + MAPPING + TIME,
            "files pattern 'logs/*.tsv' matches no file in {root}",
        ),
        (
            HEAD + MAPPING + TIME + '[videos]\nfiles = ["u.data"]\n',
            "missing key(s) ['id'] in [videos]",
        ),
    ],
    ids=[
        "missing-format",
        "bad-format",
        "unknown-key",
        "missing-mapping",
        "mapping-lacks-event_ts",
        "unknown-optional-column",
        "optional-column-under-mapping",
        "missing-time",
        "bad-unit",
        "columns-required",
        "mapped-column-not-in-columns",
        "pattern-matches-nothing",
        "videos-without-id",
    ],
)
def test_spec_errors_name_the_spec_file_and_the_problem(tmp_path, spec, problem):
    folder_with(tmp_path, spec, {"u.data": "1\t10\t5\t881250949\n"})
    with pytest.raises(InputFileError) as error:
        events.detect(tmp_path)
    assert str(error.value) == f"{tmp_path / events.SPEC_NAME}: {problem.format(root=tmp_path)}"


def test_invalid_toml_is_named(tmp_path):
    folder_with(tmp_path, "format = csv\n", {})
    with pytest.raises(InputFileError) as error:
        events.detect(tmp_path)
    assert str(error.value).startswith(f"{tmp_path / events.SPEC_NAME}: not valid TOML: ")


def test_missing_spec_file_is_named(tmp_path):
    (tmp_path / "u.data").write_text("1\t10\t5\t881250949\n")
    with pytest.raises(InputFileError) as error:
        events.detect(tmp_path)
    assert str(error.value) == (
        f"{tmp_path / events.SPEC_NAME}: file not found: an events folder holds its log files "
        "and reelflow_events.toml describing them (format, files, [mapping], [time]; "
        "see jobs/readers/events.py)"
    )


def test_mapped_column_missing_from_a_file_header_names_the_spec(tmp_path):
    folder_with(tmp_path, CSV_SPEC, {"log.csv": "uid,vid,time,played,length,liked\n"})
    with pytest.raises(InputFileError) as error:
        events.detect(tmp_path)
    assert str(error.value) == (
        f"{tmp_path / events.SPEC_NAME}: mapped column(s) 'when' (event_ts) not in "
        f"{tmp_path / 'log.csv'}, whose header is "
        "['uid', 'vid', 'time', 'played', 'length', 'liked']"
    )


def test_mapped_column_missing_from_a_parquet_file_names_the_spec(spark, tmp_path):
    spark.createDataFrame([(1, 2)], "user long, item long").coalesce(1).write.parquet(
        str(tmp_path / "p")
    )
    spec = HEAD.replace('format = "tsv"\nheader = false\n', 'format = "parquet"\n')
    spec = spec.replace('["u.data"]', '["p/*.parquet"]').replace(
        'columns = ["user", "item", "rating", "ts"]\n', ""
    )
    (tmp_path / events.SPEC_NAME).write_text(spec + MAPPING + TIME)
    with pytest.raises(InputFileError) as error:
        events.detect(tmp_path)  # the parquet schema is read before any Spark session
    parquet = next((tmp_path / "p").glob("*.parquet"))
    assert str(error.value) == (
        f"{tmp_path / events.SPEC_NAME}: mapped column(s) 'ts' (event_ts) not in {parquet}, "
        "whose columns are ['user', 'item']"
    )


def test_a_tab_file_declared_csv_is_a_wrong_separator(tmp_path):
    spec = HEAD.replace('format = "tsv"', 'format = "csv"') + MAPPING + TIME
    folder_with(tmp_path, spec, {"u.data": "196\t242\t3\t881250949\n"})
    with pytest.raises(InputFileError) as error:
        events.detect(tmp_path)
    assert str(error.value) == (
        f"{tmp_path / 'u.data'}: wrong separator: expected ',', the first line uses '\\t'"
    )


def test_a_line_with_the_wrong_number_of_fields_is_named(tmp_path):
    folder_with(tmp_path, HEAD + MAPPING + TIME, {"u.data": "196\t242\t881250949\n"})
    with pytest.raises(InputFileError) as error:
        events.detect(tmp_path)
    assert str(error.value) == (
        f"{tmp_path / 'u.data'}: the first line has 3 field(s), the spec's columns name 4: "
        "['user', 'item', 'rating', 'ts']"
    )


def test_data_subfolder_is_found(tmp_path):
    folder_with(tmp_path / "data", MOVIELENS_SPEC, {"u.data": "1\t10\t5\t881250949\n"})
    release = events.detect(tmp_path)
    assert release.root == tmp_path / "data"
    assert release.options["mapping"] == {"user_id": "user", "video_id": "item", "event_ts": "ts"}
