"""Issue 12 (real-world input: no crash, every row accounted for): the MicroLens and events
readers. Each finding is reproduced here first; the rule and its exact reason string follow
the contract in README "Row rules"."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs.readers import events, microlens
from jobs.readers.native import InputFileError, pinned_now
from lake.schema import QUARANTINE_REASON
from reelflow.config import QualityConfig
from tests.test_readers_events import reasons

NOW = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
PREFIX = "MicroLens-100k_"
MALFORMED = "malformed row: wrong number of fields"

SPEC = """
format = "csv"
files = ["log.csv"]
[mapping]
user_id = "uid"
video_id = "vid"
event_ts = "t"
[time]
unit = "ms"
[optional]
watch_ms = "w"
is_like = "l"
"""
TSV_SPEC = """
format = "tsv"
header = false
files = ["u.data"]
columns = ["user", "item", "rating", "ts"]
[mapping]
user_id = "user"
video_id = "item"
event_ts = "ts"
[time]
unit = "s"
"""


def events_folder(tmp_path: Path, spec: str, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    (tmp_path / events.SPEC_NAME).write_text(spec)
    return tmp_path


def read_events(spark, folder: Path, quality: QualityConfig | None = None):
    with pinned_now(NOW):
        release = events.detect(folder)
        return events.read_tables(spark, release, quality or QualityConfig())["interactions"]


def pairs_folder(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / f"{PREFIX}pairs.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return tmp_path


def read_pairs(spark, folder: Path):
    with pinned_now(NOW):
        release = microlens.detect(folder)
        return microlens.read_tables(spark, release, QualityConfig())["interactions"]


# ----------------------------------------------------------------------------- row 11


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_row11_spec_patterns_may_not_leave_the_release_folder(tmp_path, kind):
    other = tmp_path / "other"
    other.mkdir()
    (other / "big_matrix.csv").write_text("user,item,ts\n1,2,881250949\n")
    folder = tmp_path / "events"
    folder.mkdir()
    pattern = {
        "dotdot": "../other/big_matrix.csv",
        "absolute": str(other / "big_matrix.csv"),
        "symlink": "linked/*.csv",
    }[kind]
    if kind == "symlink":
        (folder / "linked").symlink_to(other)
    spec = TSV_SPEC.replace('format = "tsv"\nheader = false\n', 'format = "csv"\n')
    spec = spec.replace('columns = ["user", "item", "rating", "ts"]\n', "")
    spec = spec.replace('["u.data"]', f"[{pattern!r}]".replace("'", '"'))
    (folder / events.SPEC_NAME).write_text(spec)
    with pytest.raises(InputFileError) as error:
        events.detect(folder)
    message = str(error.value)
    assert message.startswith(f"{folder / events.SPEC_NAME}: files pattern {pattern!r} ")
    assert "\n" not in message


# ----------------------------------------------------------------------------- field counts


def test_events_row_with_the_wrong_number_of_fields_is_quarantined(spark, tmp_path):
    log = (
        "uid,vid,t,w,l\n1,10,1651314030792,5,1\n1,11,1651314030792,5,1,extra\n1,12,1651314030792\n"
    )
    rows = read_events(spark, events_folder(tmp_path, SPEC, {"log.csv": log}))
    assert rows.count() == 3
    assert reasons(rows) == Counter({MALFORMED: 2})


def test_events_headerless_row_with_the_wrong_number_of_fields_is_quarantined(spark, tmp_path):
    log = "1\t10\t5\t881250949\n1\t11\t5\t881250949\t9\n2\t12\t881250949\n"
    rows = read_events(spark, events_folder(tmp_path, TSV_SPEC, {"u.data": log}))
    assert rows.count() == 3
    assert reasons(rows) == Counter({MALFORMED: 2})


def test_microlens_pair_with_the_wrong_number_of_fields_is_quarantined(spark, tmp_path):
    log = "user,item,timestamp\n1,10,1651314030792\n1,11,1651314030792,7\n1,12\n"
    rows = read_pairs(spark, pairs_folder(tmp_path, log))
    assert rows.count() == 3
    assert reasons(rows) == Counter({MALFORMED: 2})


# ----------------------------------------------------------------------------- numbers


def test_events_numbers_follow_the_grammar_and_ids_are_64_bit(spark, tmp_path):
    ok = "1651314030792"
    lines = {
        f"-7,10,{ok},5,1": None,  # negative ids are valid
        f"9223372036854775807,10,{ok},5,0": None,
        f"1,10,{ok}, 2.5e1 ,true": None,
        f"9223372036854775808,10,{ok},5,1": "user_id (column 'uid') missing or not an integer",
        f"1.0,10,{ok},5,1": "user_id (column 'uid') missing or not an integer",
        f"1,1e3,{ok},5,1": "video_id (column 'vid') missing or not an integer",
        f"1,10,{ok},1d,1": "watch_ms (column 'w') missing or not a number",
        f"1,10,{ok},0x1p3,1": "watch_ms (column 'w') missing or not a number",
        f"1,10,{ok},NaN,1": "watch_ms (column 'w') missing or not a number",
        f"1,10,{ok},Infinity,1": "watch_ms (column 'w') missing or not a number",
        f"1,10,{ok},1e400,1": "watch_ms (column 'w') out of range",
        f"1,10,{ok},1e19,1": "watch_ms (column 'w') out of range",
        "1,10,1e30,5,1": "event_ts (column 't') out of range",
        "1,10,NaN,5,1": "event_ts (column 't') missing or not epoch milliseconds",
        f"1,10,{ok},5,1.5": "is_like (column 'l') not 0 or 1",
        f"1,10,{ok},5,1.0": "is_like (column 'l') not 0 or 1",
        f"1,10,{ok},-5,1": "negative watch_ms (column 'w')",
        f"1,10,{ok},-1e400,1": "watch_ms (column 'w') out of range",  # not finite
    }
    log = "uid,vid,t,w,l\n" + "\n".join(lines) + "\n"
    rows = read_events(spark, events_folder(tmp_path, SPEC, {"log.csv": log})).persist()
    got = {
        r.raw_uid + "," + (r.raw_vid or "") + "," + r.raw_t + "," + r.raw_w + "," + r.raw_l: r[
            QUARANTINE_REASON
        ]
        for r in rows.collect()
    }
    assert got == lines
    kept = {r.user_id: r.watch_ms for r in rows.where(F.col(QUARANTINE_REASON).isNull()).collect()}
    assert kept == {-7: 5, 9223372036854775807: 5, 1: 25}
    rows.unpersist()


def test_microlens_numbers_follow_the_grammar(spark, tmp_path):
    lines = {
        "-1,10,1651314030792": None,
        "1,10,1651314030792.5": None,  # HALF_UP: ...793
        "1,10,1e30": "timestamp out of range",
        "1,10,Infinity": "timestamp missing or not a number",
        "1,10,1d": "timestamp missing or not a number",
        "1.0,10,1651314030792": "user missing or not an integer",
        "1,99999999999999999999,1651314030792": "item missing or not an integer",
    }
    rows = read_pairs(spark, pairs_folder(tmp_path, "user,item,timestamp\n" + "\n".join(lines)))
    got = {
        f"{r.raw_user},{r.raw_item},{r.raw_timestamp}": r[QUARANTINE_REASON] for r in rows.collect()
    }
    assert got == lines
    stamp = rows.where("raw_timestamp = '1651314030792.5'").select(
        F.unix_millis("event_ts").alias("ms")
    )
    assert stamp.first().ms == 1651314030793


# ----------------------------------------------------------------------------- plausible time


def test_events_implausible_times_are_quarantined(spark, tmp_path):
    log = "1\t10\t5\t881250949\n1\t11\t5\t0\n1\t12\t5\t4102444800\n"
    rows = read_events(spark, events_folder(tmp_path, TSV_SPEC, {"u.data": log}))
    assert reasons(rows) == Counter(
        {
            "event_ts (column 'ts') before 1990-01-01 (quality.min_event_time)": 1,
            "event_ts (column 'ts') after 2026-01-02T00:00:00.000Z (quality.max_future_days)": 1,
        }
    )
    assert rows.where(F.col(QUARANTINE_REASON).isNotNull() & F.col("ds").isNotNull()).count() == 0


def test_events_spec_may_lower_min_event_time(spark, tmp_path):
    spec = TSV_SPEC.replace('unit = "s"', 'unit = "s"\nmin_event_time = "1960-01-01"')
    log = "1\t10\t5\t0\n1\t11\t5\t-315619201\n"  # 1970-01-01; 1959-12-31 23:59:59
    rows = read_events(spark, events_folder(tmp_path, spec, {"u.data": log}))
    assert reasons(rows) == Counter(
        {"event_ts (column 'ts') before 1960-01-01 (quality.min_event_time)": 1}
    )


def test_events_spec_min_event_time_is_validated(tmp_path):
    spec = TSV_SPEC.replace('unit = "s"', 'unit = "s"\nmin_event_time = "1960-13-01"')
    events_folder(tmp_path, spec, {"u.data": "1\t10\t5\t881250949\n"})
    with pytest.raises(InputFileError) as error:
        events.detect(tmp_path)
    assert str(error.value) == (
        f"{tmp_path / events.SPEC_NAME}: [time] min_event_time must be a day "
        "\"YYYY-MM-DD\", got '1960-13-01'"
    )


def test_microlens_implausible_times_are_quarantined(spark, tmp_path):
    log = "user,item,timestamp\n1,10,1651314030792\n1,11,5\n1,12,4102444800000\n"
    rows = read_pairs(spark, pairs_folder(tmp_path, log))
    assert reasons(rows) == Counter(
        {
            "timestamp before 1990-01-01 (quality.min_event_time)": 1,
            "timestamp after 2026-01-02T00:00:00.000Z (quality.max_future_days)": 1,
        }
    )


# ----------------------------------------------------------------------------- BOM, CRLF, quotes


def test_events_bom_crlf_and_quoted_separators(spark, tmp_path):
    log = '\ufeffuid,vid,t,w,l\r\n1,10,1651314030792,5,1\r\n"2",11,1651314030792,"6",0\r\n'
    spec = SPEC
    rows = read_events(spark, events_folder(tmp_path, spec, {"log.csv": log}))
    assert reasons(rows) == Counter()
    assert sorted((r.user_id, r.watch_ms, r.is_like) for r in rows.collect()) == [
        (1, 5, 1),
        (2, 6, 0),
    ]


def test_events_headerless_file_with_a_bom(spark, tmp_path):
    log = "\ufeff1\t10\t5\t881250949\r\n2\t11\t5\t881250949\r\n"
    rows = read_events(spark, events_folder(tmp_path, TSV_SPEC, {"u.data": log}))
    assert reasons(rows) == Counter()
    assert sorted(r.user_id for r in rows.collect()) == [1, 2]


def test_events_quoted_field_holding_the_separator(spark, tmp_path):
    spec = SPEC.replace("[optional]", '[optional]\nwatch_ratio = "note"')
    spec = spec.replace('is_like = "l"\n', "")
    log = 'uid,vid,t,w,note,l\r\n1,10,1651314030792,5,"0,5",1\r\n1,11,1651314030792,5,"0.5",1\r\n'
    rows = read_events(spark, events_folder(tmp_path, spec, {"log.csv": log}))
    assert reasons(rows) == Counter({"watch_ratio (column 'note') missing or not a number": 1})


def test_microlens_bom_and_crlf(spark, tmp_path):
    log = "\ufeffuser,item,timestamp\r\n1,10,1651314030792\r\n2,11,1651314030792\r\n"
    rows = read_pairs(spark, pairs_folder(tmp_path, log))
    assert reasons(rows) == Counter()
    assert sorted(r.user_id for r in rows.collect()) == [1, 2]


# ----------------------------------------------------------------------------- before the JVM


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("uid,vid,t,w,l\n", "holds a header but no rows"),
        ("", "is empty (expected a header and rows)"),
        ("\n\n", "is empty (expected a header and rows)"),
    ],
)
def test_events_header_only_or_empty_file_fails_before_spark(tmp_path, content, problem):
    folder = events_folder(tmp_path, SPEC, {"log.csv": "uid,vid,t,w,l\n1,10,1651314030792,5,1\n"})
    release = events.detect(folder)
    (folder / "log.csv").write_text(content)
    with pytest.raises(InputFileError) as error:
        events.check(release)  # what landing runs before the Spark session starts
    assert str(error.value) == f"{folder / 'log.csv'}: {problem}"
    with pytest.raises(InputFileError) as error:
        events.detect(folder)
    assert str(error.value) == f"{folder / 'log.csv'}: {problem}"


def test_events_headerless_empty_file_fails_before_spark(tmp_path):
    folder = events_folder(tmp_path, TSV_SPEC, {"u.data": ""})
    with pytest.raises(InputFileError) as error:
        events.check(events.detect(folder))
    assert str(error.value) == f"{folder / 'u.data'}: is empty"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("user,item,timestamp\r\n", "holds a header but no rows"),
        ("\ufeffuser,item,timestamp\n\n", "holds a header but no rows"),
        ("", "is empty (expected a header and rows)"),
        ("\n \n", "is empty (expected a header and rows)"),
    ],
)
def test_microlens_header_only_or_empty_pairs_fail_before_spark(tmp_path, content, problem):
    folder = pairs_folder(tmp_path, content)
    with pytest.raises(InputFileError) as error:
        microlens.check(microlens.detect(folder))
    assert str(error.value) == f"{folder / (PREFIX + 'pairs.csv')}: {problem}"


def test_microlens_check_names_a_bad_likes_file_without_spark(tmp_path):
    folder = pairs_folder(tmp_path, "user,item,timestamp\n1,10,1651314030792\n")
    likes = folder / f"{PREFIX}likes_and_views.txt"
    likes.write_text("1,10,100\n")
    with pytest.raises(InputFileError) as error:
        microlens.check(microlens.detect(folder))
    assert str(error.value) == f"{likes}: wrong separator: expected '\\t', the first line uses ','"


# ----------------------------------------------------------------------------- invalid UTF-8


def test_events_invalid_utf8_line_is_quarantined_with_its_line_number(spark, tmp_path):
    log = b"uid,vid,t,w,l\n1,10,1651314030792,5,1\n1,11,\xff1651314030792,5,1\n"
    rows = read_events(spark, events_folder(tmp_path, SPEC, {"log.csv": log}))
    assert reasons(rows) == Counter({"invalid UTF-8 on line 3": 1})
    assert "_bad_line" not in rows.columns


def test_microlens_invalid_utf8_line_is_quarantined_with_its_line_number(spark, tmp_path):
    log = b"user,item,timestamp\n1,\xc3\x28,1651314030792\n1,10,1651314030792\n"
    rows = read_pairs(spark, pairs_folder(tmp_path, log))
    assert reasons(rows) == Counter({"invalid UTF-8 on line 2": 1})


def test_row11_videos_patterns_may_not_leave_the_release_folder(tmp_path):
    folder = tmp_path / "events"
    (tmp_path / "items.csv").write_text("item,name\n1,x\n")
    spec = TSV_SPEC + '[videos]\nfiles = ["../items.csv"]\nformat = "csv"\nid = "item"\n'
    events_folder(folder, spec, {"u.data": "1\t10\t5\t881250949\n"})
    with pytest.raises(InputFileError) as error:
        events.detect(folder)
    assert str(error.value) == (
        f"{folder / events.SPEC_NAME}: files pattern '../items.csv' leaves the folder "
        f"{folder} ('..')"
    )


def test_events_latin1_row_with_the_wrong_number_of_fields_is_quarantined(spark, tmp_path):
    spec = TSV_SPEC.replace("header = false\n", 'header = false\nencoding = "latin-1"\n')
    log = "1\t10\t5\t881250949\n1\t11\t5\t881250949\t\xe9\n2\t12\t881250949\n".encode("latin-1")
    rows = read_events(spark, events_folder(tmp_path, spec, {"u.data": log}))
    assert rows.count() == 3
    assert reasons(rows) == Counter({MALFORMED: 2})


def test_events_unsupported_encoding_is_a_spec_error(tmp_path):
    spec = TSV_SPEC.replace("header = false\n", 'header = false\nencoding = "cp1252"\n')
    events_folder(tmp_path, spec, {"u.data": "1\t10\t5\t881250949\n"})
    with pytest.raises(InputFileError) as error:
        events.detect(tmp_path)
    assert str(error.value) == (
        f"{tmp_path / events.SPEC_NAME}: encoding 'cp1252' is not supported; use one of "
        "['iso-8859-1', 'us-ascii', 'utf-16', 'utf-16be', 'utf-16le', 'utf-32', 'utf-8']"
    )


def test_microlens_likes_with_a_bom_and_a_short_line(spark, tmp_path):
    likes = tmp_path / f"{PREFIX}likes_and_views.txt"
    likes.write_bytes(b"\xef\xbb\xbf1\t10\t100\r\n2\t20\r\n3\t1.0\t5\r\n")
    videos = microlens.read_videos(spark, None, likes)
    got = {r.raw_item: (r.video_id, r.likes, r[QUARANTINE_REASON]) for r in videos.collect()}
    assert got == {
        "1": (1, 10, None),
        "2": (2, 20, MALFORMED),
        "3": (3, None, "likes missing or not an integer"),
    }


def test_microlens_pairs_tsv_line_without_a_tab_does_not_crash(spark, tmp_path):
    folder = pairs_folder(tmp_path, "user,item,timestamp\n1,10,1651314030792\n2,11,1651314030792\n")
    (folder / f"{PREFIX}pairs.tsv").write_text("1\t10\n2\n")
    with pytest.raises(InputFileError) as error:
        read_pairs(spark, folder)
    assert "1 (user, item) pair(s) occur a different number of times" in str(error.value)
