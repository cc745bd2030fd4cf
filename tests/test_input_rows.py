"""Issue 12, "Real-world input: no crash, every row accounted for": one test per row of the
issue's table that the KuaiRec/KuaiRand readers and the landing own (rows 1, 2, 3, 4, 9, 13 and
the atomic `_landed.json`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reelflow.config import QualityConfig

REPO = Path(__file__).resolve().parents[1]
MATRIX_HEADER = "user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio"
NOW = "2026-01-01T00:00:00Z"
CUTOFF = "2026-01-02T00:00:00.000Z"  # NOW plus quality.max_future_days (1.0)


def good_row(user: int, video: int = 7, ts: str = "1593940961.657") -> str:
    return f"{user},{video},12882,11182,2020-07-05 17:22:41.657,20200705,{ts},1.15"


def write_matrix(path: Path, rows: list[str], head: str = MATRIX_HEADER) -> Path:
    path.write_text("\n".join([head, *rows]) + "\n", encoding="utf-8")
    return path


def reasons_by_user(frame) -> dict:
    rows = frame.select("raw_user_id", "quarantine_reason").collect()
    return {r["raw_user_id"]: r["quarantine_reason"] for r in rows}


@pytest.fixture()
def kuairec_copy(tiny_raw, tmp_path) -> Path:
    """The tiny KuaiRec release, copied so that a test can change its files (small_matrix
    dropped and big_matrix cut to 299 rows: they only slow landing)."""
    folder = tmp_path / "KuaiRec 2.0" / "data"
    shutil.copytree(tiny_raw[0], folder)
    (folder / "small_matrix.csv").unlink(missing_ok=True)
    matrix = folder / "big_matrix.csv"
    matrix.write_text("".join(matrix.read_text().splitlines(keepends=True)[:300]))
    return folder


@pytest.fixture()
def now(monkeypatch):
    monkeypatch.setenv("REELFLOW_NOW", NOW)
    return NOW


# ---- row 1: NaN, Infinity, 1e20 in KuaiRec's numeric columns


def test_row1_non_finite_numbers_are_quarantined_naming_the_column(spark, tmp_path, now):
    from jobs.readers.kuairec import read_interactions

    def row(user, play="12882", video="11182", ts="1593940961.657"):
        return f"{user},7,{play},{video},2020-07-05 17:22:41.657,20200705,{ts},1.15"

    rows = [
        row(1),
        row(2, ts="NaN"),
        row(3, ts="Infinity"),
        row(4, ts="1e20"),
        row(5, play="NaN"),
        row(6, play="Infinity"),
        row(7, play="1e20"),
        row(8, video="NaN"),
        row(9, video="-Infinity"),
        row(10, video="1e20"),
        row(11, play="1d"),
        row(12, ts="0x1p3"),
    ]
    path = write_matrix(tmp_path / "big_matrix.csv", rows)
    got = reasons_by_user(read_interactions(spark, tmp_path, QualityConfig(), path.name))
    assert got == {
        "1": None,
        "2": "timestamp missing or not a number",
        "3": "timestamp missing or not a number",
        "4": "timestamp out of range",
        "5": "play_duration missing or not a number",
        "6": "play_duration missing or not a number",
        "7": "play_duration out of range",
        "8": "video_duration missing or not a number",
        "9": "video_duration missing or not a number",
        "10": "video_duration out of range",
        "11": "play_duration missing or not a number",
        "12": "timestamp missing or not a number",
    }


# ---- row 2: implausible times (epoch 0, year 2100)


def test_row2_kuairec_implausible_times_are_quarantined(spark, tmp_path, now):
    from jobs.readers.kuairec import read_interactions

    rows = [good_row(1), good_row(2, ts="0"), good_row(3, ts="4102444800"), good_row(4, ts="-1")]
    path = write_matrix(tmp_path / "big_matrix.csv", rows)
    frame = read_interactions(spark, tmp_path, QualityConfig(), path.name)
    assert reasons_by_user(frame) == {
        "1": None,
        "2": "timestamp before 1990-01-01 (quality.min_event_time)",
        "3": f"timestamp after {CUTOFF} (quality.max_future_days)",
        "4": "timestamp before 1990-01-01 (quality.min_event_time)",
    }
    # A time at the cutoff itself is still valid; one millisecond later is not.
    edge = write_matrix(
        tmp_path / "edge.csv", [good_row(5, ts="1767312000"), good_row(6, ts="1767312000.001")]
    )
    assert reasons_by_user(read_interactions(spark, tmp_path, QualityConfig(), edge.name)) == {
        "5": None,
        "6": f"timestamp after {CUTOFF} (quality.max_future_days)",
    }


KUAIRAND_HEADER = (
    "user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,is_forward,"
    "is_hate,long_view,play_time_ms,duration_ms,profile_stay_time,comment_stay_time,"
    "is_profile_enter,is_rand,tab"
)


def kuairand_row(user: int, time_ms: str = "1649423019339", extra: str = "") -> str:
    return f"{user},9,20220408,2000,{time_ms},1,0,0,0,0,0,0,5000,10000,0,0,0,0,1{extra}"


def test_row2_kuairand_implausible_times_are_quarantined(spark, tmp_path, now):
    from jobs.readers.kuairand import read_interactions

    rows = [kuairand_row(1), kuairand_row(2, "0"), kuairand_row(3, "4102444800000")]
    path = write_matrix(tmp_path / "log.csv", rows, KUAIRAND_HEADER)
    frame = read_interactions(spark, [path], QualityConfig())
    assert reasons_by_user(frame) == {
        "1": None,
        "2": "time_ms before 1990-01-01 (quality.min_event_time)",
        "3": f"time_ms after {CUTOFF} (quality.max_future_days)",
    }


def test_row2_landing_records_its_time_cutoff_and_relands_identically(kuairec_copy, home, now):
    from jobs.landing import land

    first = land("kuairec", kuairec_copy)
    assert first["time_cutoff"] == CUTOFF
    marker = (home.landing / "_landed.json").read_text()
    again = land("kuairec", kuairec_copy)
    assert again["skipped"] and again["fingerprint"] == first["fingerprint"]
    assert (home.landing / "_landed.json").read_text() == marker


# ---- row 3: invalid UTF-8 after the first 8 KB


def _with_bad_utf8(path: Path, good: int, bad_at: int) -> None:
    lines = [MATRIX_HEADER.encode()] + [good_row(u).encode() for u in range(good)]
    lines.insert(bad_at, b"999,7,12882,11182,2020-07-05 17:22:41.657,2020\xff0705,1593940961.6,1")
    path.write_bytes(b"\n".join(lines) + b"\n")


@pytest.mark.parametrize("bad_at", [300, 1])  # ~22 KB in; the line after the header
def test_row3_invalid_utf8_line_is_quarantined_with_its_line_number(spark, tmp_path, now, bad_at):
    from jobs.readers.kuairec import MATRIX_COLUMNS, read_interactions
    from jobs.readers.native import check_file

    path = tmp_path / "big_matrix.csv"
    _with_bad_utf8(path, good=400, bad_at=bad_at)
    check_file(path, MATRIX_COLUMNS)  # the header check reads bytes: the bad row is no fault
    frame = read_interactions(spark, tmp_path, QualityConfig(), path.name)
    reasons = [r[0] for r in frame.select("quarantine_reason").collect()]
    assert len(reasons) == 401  # every row accounted for
    assert [r for r in reasons if r is not None] == [f"invalid UTF-8 on line {bad_at + 1}"]


def test_row3_line_numbers_hold_across_byte_ranges(spark, tmp_path):
    from jobs.readers.arrow_csv import BAD_LINE, CORRUPT, read_arrow_csv
    from jobs.readers.kuairec import MATRIX_COLUMNS

    path = tmp_path / "big_matrix.csv"
    _with_bad_utf8(path, good=400, bad_at=350)
    frame = read_arrow_csv(spark, [path], MATRIX_COLUMNS, chunk_mb=4096 / (1 << 20))
    assert frame.rdd.getNumPartitions() > 3
    rows = frame.collect()
    assert len(rows) == 401
    bad = [r for r in rows if r[BAD_LINE] is not None]
    assert [r[BAD_LINE] for r in bad] == ["invalid UTF-8 on line 351"]
    assert bad[0][CORRUPT].startswith("999,7,")
    assert sorted(int(r["user_id"]) for r in rows if r["user_id"]) == list(range(400))


# ---- row 4: header-only and empty files


@pytest.mark.parametrize(
    "content,problem", [(MATRIX_HEADER + "\n", "holds a header but no rows"), ("", "is empty")]
)
def test_row4_header_only_or_empty_file_fails_naming_it(kuairec_copy, home, content, problem):
    from jobs.landing import land
    from jobs.readers.native import InputFileError

    (kuairec_copy / "big_matrix.csv").write_text(content)
    with pytest.raises(InputFileError) as failure:
        land("kuairec", kuairec_copy)
    message = str(failure.value)
    assert "big_matrix.csv" in message and problem in message
    assert "\n" not in message


# ---- row 9: a UTF-8 byte-order mark before the header


def test_row9_byte_order_mark_is_accepted(spark, tmp_path, now):
    from jobs.readers.kuairec import read_interactions, read_users

    path = write_matrix(tmp_path / "big_matrix.csv", [good_row(1), good_row(2)])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    frame = read_interactions(spark, tmp_path, QualityConfig(), path.name)
    assert reasons_by_user(frame) == {"1": None, "2": None}
    users = tmp_path / "user_features.csv"
    users.write_bytes(
        b"\xef\xbb\xbfuser_id,user_active_degree,is_live_streamer,is_video_author,"
        b"follow_user_num,fans_user_num,friend_user_num,register_days\n"
        b"5,full_active,0,0,1,2,3,4\n"
    )
    got = read_users(spark, tmp_path).collect()
    assert [(r["raw_user_id"], r["user_id"], r["quarantine_reason"]) for r in got] == [
        ("5", 5, None)
    ]


# ---- row 13: a wrong header fails before any JVM starts


def _wrong_header(kuairec_copy: Path) -> Path:
    path = kuairec_copy / "big_matrix.csv"
    text = path.read_text()
    path.write_text(text.replace("user_id,", "uid,", 1))
    return path


def test_row13_wrong_header_fails_fast_from_the_cli(kuairec_copy, tmp_path):
    path = _wrong_header(kuairec_copy)
    env = {**os.environ, "REELFLOW_HOME": str(tmp_path / "fresh-home")}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "reelflow.cli", "normalize", "--dataset", "kuairec", "--raw",
         str(kuairec_copy)],
        env=env, capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert done.returncode != 0
    assert str(path) in done.stderr and "user_id" in done.stderr, done.stderr
    assert elapsed < 5, f"took {elapsed:.1f}s"


NO_JVM_SCRIPT = """
import sys
import psutil, pyspark
from jobs.landing import land
from jobs.readers.native import InputFileError
try:
    land("kuairec", sys.argv[1])
except InputFileError as exc:
    print("refused:", exc)
else:
    sys.exit("landed a release with a wrong header")
assert pyspark.SparkContext._active_spark_context is None, "a SparkContext was created"
java = [p.name() for p in psutil.Process().children(recursive=True) if "java" in p.name()]
assert not java, f"java started: {java}"
"""


def test_row13_wrong_header_starts_no_spark(kuairec_copy, tmp_path):
    _wrong_header(kuairec_copy)
    env = {**os.environ, "REELFLOW_HOME": str(tmp_path / "fresh-home")}
    done = subprocess.run(
        [sys.executable, "-c", NO_JVM_SCRIPT, str(kuairec_copy)],
        env=env, capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "missing column(s) ['user_id']" in done.stdout


# ---- also found by reading: _landed.json is written in place


def test_landed_marker_is_replaced_atomically(kuairec_copy, home, now, monkeypatch):
    import jobs.landing

    replaced = []
    real_replace = os.replace

    def recording_replace(src, dst):
        replaced.append((Path(src), Path(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(jobs.landing.os, "replace", recording_replace)
    jobs.landing.land("kuairec", kuairec_copy)
    marker = home.landing / "_landed.json"
    sources = [src for src, dst in replaced if dst == marker]
    assert len(sources) == 1 and sources[0].parent == marker.parent
    assert json.loads(marker.read_text())["dataset"] == "kuairec"
    assert not [p for p in marker.parent.iterdir() if p.name.startswith("._landed")]


# ---- in scope: KuaiRand logs with the wrong number of fields, CRLF and quoted separators


def test_kuairand_row_with_wrong_field_count_is_quarantined(spark, tmp_path, now):
    from jobs.readers.kuairand import read_interactions

    rows = [kuairand_row(1), kuairand_row(2, extra=",surplus"), "3,9,20220408"]
    path = write_matrix(tmp_path / "log.csv", rows, KUAIRAND_HEADER)
    frame = read_interactions(spark, [path], QualityConfig())
    got = {
        r["raw__corrupt_record"] or r["raw_user_id"]: r["quarantine_reason"]
        for r in frame.collect()
    }
    assert got == {
        "1": None,
        kuairand_row(2, extra=",surplus"): "malformed row: wrong number of fields",
        "3,9,20220408": "malformed row: wrong number of fields",
    }


def test_crlf_and_quoted_separators_parse(spark, tmp_path, now):
    from jobs.readers.kuairec import read_interactions

    rows = [good_row(1), '2,7,12882,11182,"2020-07-05, 17:22:41.657",20200705,1593940961.657,1.5']
    path = tmp_path / "big_matrix.csv"
    path.write_bytes(("\r\n".join([MATRIX_HEADER, *rows]) + "\r\n").encode())
    frame = read_interactions(spark, tmp_path, QualityConfig(), path.name)
    got = {
        r["raw_user_id"]: (r["raw_watch_ratio"], r["quarantine_reason"]) for r in frame.collect()
    }
    assert got == {"1": ("1.15", None), "2": ("1.5", None)}


def test_kuairand_check_allows_an_empty_log_but_not_all_of_them(tmp_path):
    from jobs.readers import kuairand
    from jobs.readers.native import KUAISHOU_USER_COLUMNS, InputFileError

    for name in kuairand.LOGS:
        (tmp_path / f"{name}_pure.csv").write_text(KUAIRAND_HEADER + "\n")
    (tmp_path / "user_features_pure.csv").write_text(
        ",".join(KUAISHOU_USER_COLUMNS) + "\n0,full_active,-124,1,5,6,7,8\n"
    )
    (tmp_path / "video_features_basic_pure.csv").write_text(
        "video_id,author_id,video_type,upload_dt,video_duration,tag\n0,7,NORMAL,2022-04-10,1.0,\n"
    )
    release = kuairand.detect(tmp_path)
    with pytest.raises(InputFileError, match="every log holds a header but no rows"):
        kuairand.check(release)
    write_matrix(tmp_path / f"{kuairand.LOGS[0]}_pure.csv", [kuairand_row(1)], KUAIRAND_HEADER)
    kuairand.check(release)
    (tmp_path / "user_features_pure.csv").write_text("")
    with pytest.raises(InputFileError, match=r"user_features_pure\.csv: is empty"):
        kuairand.check(release)
