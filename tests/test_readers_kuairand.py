"""KuaiRand reader: Pure / 1K / 27K files as released; bad rows quarantined with a reason."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs.readers import kuairand
from jobs.readers.native import KUAISHOU_USER_COLUMNS, InputFileError
from lake.schema import QUARANTINE_REASON
from reelflow.config import QualityConfig
from tests.conftest import SHARED_DATA

REAL = SHARED_DATA / "kuairand"
SAMPLE_LOG = REAL / "log_random_4_22_to_5_08_1k.sample40.csv"
BASIC_PURE = REAL / "video_features_basic_pure.csv"
USERS_PURE = REAL / "user_features_pure.csv"

DEFAULT_ROW = {
    "user_id": "1",
    "video_id": "10",
    "date": "20220430",
    "hourmin": "1800",
    "time_ms": "1651314030792",
    "is_click": "0",
    "is_like": "0",
    "is_follow": "0",
    "is_comment": "0",
    "is_forward": "0",
    "is_hate": "0",
    "long_view": "0",
    "play_time_ms": "863",
    "duration_ms": "30066",
    "profile_stay_time": "0",
    "comment_stay_time": "0",
    "is_profile_enter": "0",
    "is_rand": "0",
    "tab": "1",
}
HEADER = ",".join(kuairand.LOG_COLUMNS)


def log_line(**values: str) -> str:
    row = {**DEFAULT_ROW, **values}
    return ",".join(row[c] for c in kuairand.LOG_COLUMNS)


def write_log(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return path


def strings(df, column: str) -> list:
    return [r[0] for r in df.select(column).collect()]


def reasons(df) -> Counter:
    return Counter(
        r[0]
        for r in df.where(F.col(QUARANTINE_REASON).isNotNull()).select(QUARANTINE_REASON).collect()
    )


def utc(column: str = "event_ts"):
    return F.date_format(column, "yyyy-MM-dd HH:mm:ss.SSS").alias(column)


# ----------------------------------------------------------------------------- real files


@pytest.mark.skipif(not SAMPLE_LOG.exists(), reason="../shared/data/kuairand sample log is absent")
def test_real_log_sample_reads_all_40_rows_with_time_ms_as_the_utc_instant(spark):
    rows = kuairand.read_interactions(spark, [SAMPLE_LOG], QualityConfig())
    assert rows.count() == 40
    assert rows.where(F.col(QUARANTINE_REASON).isNotNull()).count() == 0
    first = rows.where("raw_time_ms = '1651314030792'").select(utc(), "ds", "raw_hourmin").first()
    # date/hourmin say 20220430 18:00 in UTC+8; time_ms is the instant.
    assert first.event_ts == "2022-04-30 10:20:30.792"
    assert first.ds == "2022-04-30" and first.raw_hourmin == "1800"
    second = rows.where("raw_time_ms = '1651466607423'").select(utc(), "ds").first()
    assert (second.event_ts, second.ds) == ("2022-05-02 04:43:27.423", "2022-05-02")
    # The random-exposure log: every row keeps is_rand = 1 for unbiased evaluation.
    assert set(strings(rows, "is_rand")) == {1}
    # One real row has duration_ms 0: kept, with no watch ratio (not infinity).
    zero = rows.where("watch_ratio is null").collect()
    assert [(r.video_id, r.duration_ms, r.watch_ms) for r in zero] == [(6614, 0, 1141)]


@pytest.mark.skipif(
    not BASIC_PURE.exists(), reason="../shared/data/kuairand basic video file is absent"
)
def test_real_basic_video_features_with_quoted_tags_and_blank_durations(spark):
    videos = kuairand.read_videos(spark, [BASIC_PURE])
    assert videos.count() == 7_583
    assert videos.where(F.col(QUARANTINE_REASON).isNotNull()).count() == 0
    five = (
        videos.where("video_id = 5")
        .select("categories", "primary_category", "duration_ms", "author_id", utc("upload_ts"))
        .first()
    )
    assert five.categories == [20, 43] and five.primary_category == 20
    assert five.duration_ms == 358_016 and five.author_id == 8_367_059
    assert five.upload_ts == "2022-04-10 00:00:00.000"  # UTC midnight of upload_dt
    # 239 blank video_duration: no duration, row kept; 96 without a tag: no category.
    assert videos.where("duration_ms is null").count() == 239
    assert videos.where("size(categories) = 0 and primary_category is null").count() == 96
    assert "caption" not in videos.columns  # KuaiRand has no captions: absent, not invented


@pytest.mark.skipif(not USERS_PURE.exists(), reason="../shared/data/kuairand user file is absent")
def test_real_user_features_with_minus_124_as_null(spark):
    users = kuairand.read_users(spark, [USERS_PURE])
    assert users.count() == 27_285
    assert users.where(F.col(QUARANTINE_REASON).isNotNull()).count() == 0
    assert users.where("is_live_streamer is null").count() == 21_127  # every -124
    assert set(strings(users, "is_live_streamer")) == {None, 1}
    assert users.where("user_active_degree is null").count() == 6  # UNKNOWN
    first = users.where("user_id = 0").first()
    assert (first.follow_user_num, first.fans_user_num, first.register_days) == (514, 150, 799)


# ----------------------------------------------------------------------------- row rules


def test_malformed_log_rows_are_quarantined_with_their_reason(spark, tmp_path):
    valid = [
        log_line(),
        log_line(time_ms="1651314031792"),  # a repeat view of the same video: kept
        log_line(video_id="11", duration_ms="0"),  # zero duration: kept, ratio null
        log_line(video_id="12", is_forward="1", is_like="1"),
        log_line(video_id="13", user_id="2", play_time_ms="1250.0", duration_ms="1000.0"),
        log_line(video_id="14", is_rand="1", tab="4", profile_stay_time="35"),
    ]
    duplicate = log_line(video_id="15")
    bad = {
        log_line(user_id="abc"): "user_id missing or not an integer",
        log_line(video_id=""): "video_id missing or not an integer",
        log_line(time_ms="soon"): "time_ms missing or not a number",
        log_line(time_ms="1e30"): "time_ms out of range",
        log_line(time_ms="-1000"): "time_ms before 1990-01-01 (quality.min_event_time)",
        log_line(play_time_ms="NaN"): "play_time_ms missing or not a number",
        log_line(play_time_ms="1e30", video_id="16"): "play_time_ms out of range",
        log_line(play_time_ms="fast"): "play_time_ms missing or not a number",
        log_line(play_time_ms="-5"): "negative play_time_ms",
        log_line(duration_ms="-1"): "negative duration_ms",
        log_line(is_like="2"): "is_like not 0 or 1",
        log_line(is_forward=""): "is_forward not 0 or 1",
        log_line(tab="main"): "tab missing or not an integer",
        log_line(play_time_ms="1000000", duration_ms="1000"): "watch_ratio outside [0.0, 100.0]",
    }
    path = write_log(tmp_path / "log.csv", [*valid, duplicate, duplicate, duplicate, *bad])
    rows = kuairand.read_interactions(spark, [path], QualityConfig()).persist()
    assert rows.count() == len(valid) + 3 + len(bad)
    assert rows.where(F.col(QUARANTINE_REASON).isNull()).count() == len(valid) + 1
    assert reasons(rows) == Counter({**Counter(bad.values()), "exact duplicate row": 2})
    assert rows.where("video_id = 16").first().watch_ms is None  # too big for a long
    zero = rows.where("video_id = 11").first()
    assert zero[QUARANTINE_REASON] is None and zero.duration_ms == 0 and zero.watch_ratio is None
    shared = rows.where("video_id = 12").first()
    assert (shared.is_share, shared.is_like) == (1, 1)
    assert "is_forward" not in rows.columns and shared.raw_is_forward == "1"
    ratio = rows.where("video_id = 13").first()
    assert (ratio.watch_ms, ratio.duration_ms, ratio.watch_ratio) == (1250, 1000, 1.25)
    extras = rows.where("video_id = 14").first()
    assert (extras.is_rand, extras.tab, extras.profile_stay_ms) == (1, 4, 35)
    rows.unpersist()


# ----------------------------------------------------------------------------- detection


def make_release(folder: Path, variant: str, split: tuple[str, ...] = ()) -> dict[str, list[Path]]:
    """Tiny but complete release files; names in `split` become _part1, _part2, _part10."""
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, list[Path]] = {}
    for name in (*kuairand.REQUIRED, *kuairand.OPTIONAL):
        names = (
            [f"{name}_{variant}_part{n}.csv" for n in (1, 2, 10)]
            if name in split
            else [f"{name}_{variant}.csv"]
        )
        made[name] = [folder / n for n in names]
    for i, path in enumerate(made[kuairand.LOGS[0]] + made[kuairand.LOGS[1]]):
        write_log(
            path, [log_line(video_id=str(i)), log_line(video_id=str(i), time_ms="1651314099000")]
        )
    write_log(made[kuairand.LOGS[2]][0], [log_line(is_rand="1")])
    made["user_features"][0].write_text(
        ",".join(KUAISHOU_USER_COLUMNS) + "\n0,full_active,-124,1,5,6,7,8\n1,UNKNOWN,1,0,1,2,3,4\n"
    )
    made["video_features_basic"][0].write_text(
        "video_id,author_id,video_type,upload_dt,upload_type,visible_status,video_duration,"
        "server_width,server_height,music_id,music_type,tag\n"
        '0,7,NORMAL,2022-04-10,Web,0.0,87433.0,720.0,1280.0,9,9.0,"20,43"\n'
        "1,8,AD,2022-04-09,Web,0.0,,720.0,1280.0,0,,\n"
    )
    for n, path in enumerate(made["video_features_statistic"]):
        path.write_text(f"video_id,counts,show_cnt\n{n},66,75.25\n")
    return made


def test_detects_pure_and_1k_from_file_names_in_the_data_folder(tmp_path):
    for variant in ("pure", "1k"):
        made = make_release(tmp_path / variant / "data", variant)
        release = kuairand.detect(tmp_path / variant)
        assert (release.dataset, release.variant) == ("kuairand", variant)
        assert release.root == tmp_path / variant / "data"
        assert kuairand.release_paths(release, "user_features") == made["user_features"]
        assert release.parts == {}


def test_detects_27k_with_every_part_in_part_order(spark, tmp_path):
    split = (*kuairand.LOGS[:2], "video_features_statistic")
    made = make_release(tmp_path, "27k", split)
    release = kuairand.detect(tmp_path)
    assert release.variant == "27k"
    for name in split:
        assert kuairand.release_paths(release, name) == made[name]  # part1, part2, part10
    assert len(release.all_files()) == 3 + 3 + 1 + 1 + 1 + 3
    tables = kuairand.read_tables(spark, release, QualityConfig())
    assert set(tables) == {"interactions", "videos", "users"}
    interactions = tables["interactions"]
    assert interactions.count() == 6 * 2 + 1  # every part of both standard logs + random log
    assert interactions.where("is_rand = 1").count() == 1
    videos = tables["videos"]
    assert {"stat_counts", "stat_show_cnt"} <= set(videos.columns)
    assert dict(videos.dtypes)["stat_show_cnt"] == "double"
    stats = {r.video_id: (r.stat_counts, r.stat_show_cnt) for r in videos.collect()}
    assert stats == {0: (66.0, 75.25), 1: (66.0, 75.25)}  # from part1 and part2
    users = {r.user_id: r for r in tables["users"].collect()}
    assert users[0].is_live_streamer is None and users[1].user_active_degree is None


def test_a_folder_that_matches_nothing_lists_the_expected_files(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputFileError) as error:
        kuairand.detect(tmp_path)
    assert str(error.value) == (
        f"{tmp_path}: not a KuaiRand release: expected log_standard_4_08_to_4_21_<v>.csv, "
        "log_standard_4_22_to_5_08_<v>.csv, log_random_4_22_to_5_08_<v>.csv, "
        "user_features_<v>.csv, video_features_basic_<v>.csv "
        "(optional: video_features_statistic_<v>.csv) with <v> one of pure, 1k, 27k; "
        "27K splits files into <name>_27k_part1.csv, _part2.csv, ...; found ['notes.txt']"
    )


def test_a_release_missing_a_required_file_names_it(tmp_path):
    made = make_release(tmp_path, "pure")
    made["log_random_4_22_to_5_08"][0].unlink()
    with pytest.raises(InputFileError) as error:
        kuairand.detect(tmp_path)
    assert str(error.value).startswith(
        f"{tmp_path}: KuaiRand-pure release is missing ['log_random_4_22_to_5_08_pure.csv']; "
        "expected log_standard_4_08_to_4_21_<v>.csv"
    )


def test_two_variants_in_one_folder_are_refused(tmp_path):
    make_release(tmp_path, "pure")
    (tmp_path / "user_features_1k.csv").write_text("user_id\n")
    with pytest.raises(InputFileError) as error:
        kuairand.detect(tmp_path)
    assert str(error.value) == (
        f"{tmp_path}: holds files of several KuaiRand variants ['pure', '1k']: keep one per folder"
    )


# ----------------------------------------------------------------------------- file faults


def test_missing_log_file_is_named(spark, tmp_path):
    path = tmp_path / "log_random_4_22_to_5_08_pure.csv"
    with pytest.raises(InputFileError) as error:
        kuairand.read_interactions(spark, [path], QualityConfig())
    assert str(error.value) == f"{path}: file not found"


def test_missing_column_names_the_file_and_the_column(spark, tmp_path):
    path = tmp_path / "log.csv"
    columns = [c for c in kuairand.LOG_COLUMNS if c != "tab"]
    path.write_text(",".join(columns) + "\n")
    with pytest.raises(InputFileError) as error:
        kuairand.read_interactions(spark, [path], QualityConfig())
    assert str(error.value) == f"{path}: missing column(s) ['tab']; header is {columns}"


def test_wrong_separator_is_named(spark, tmp_path):
    path = tmp_path / "user_features_pure.csv"
    path.write_text("\t".join(KUAISHOU_USER_COLUMNS) + "\n")
    with pytest.raises(InputFileError) as error:
        kuairand.read_users(spark, [path])
    assert str(error.value) == f"{path}: wrong separator: expected ',', the header uses '\\t'"
