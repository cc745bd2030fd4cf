"""Tests for synthetic.kuairec and synthetic.generate: native KuaiRec formats, manifest counts and learnable structure."""

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reelflow.names import DATASETS
from synthetic import GENERATORS, generate
from synthetic.kuairec import BAD_ROW_KINDS, SCALES, build_kuairec_world, generate_kuairec
from synthetic.world import Scale

SCALE = "tiny"
SEED = 0
REAL_KUAIREC = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "kuairec"

HEADERS = {
    "big_matrix.csv": "user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio",
    "small_matrix.csv": "user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio",
    "item_categories.csv": "video_id,feat",
    "user_features.csv": (
        "user_id,user_active_degree,is_lowactive_period,is_live_streamer,is_video_author,"
        "follow_user_num,follow_user_num_range,fans_user_num,fans_user_num_range,"
        "friend_user_num,friend_user_num_range,register_days,register_days_range,"
        + ",".join(f"onehot_feat{i}" for i in range(18))
    ),
    "kuairec_caption_category.csv": (
        "video_id,manual_cover_text,caption,topic_tag,first_level_category_id,"
        "first_level_category_name,second_level_category_id,second_level_category_name,"
        "third_level_category_id,third_level_category_name"
    ),
}
OUTPUT_FILES = [*HEADERS, "reelflow_manifest.json"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out_dir = tmp_path_factory.mktemp("kuairec") / "raw"  # does not exist yet: created
    manifest = generate_kuairec(out_dir, scale=SCALE, seed=SEED)
    return out_dir, manifest


@pytest.fixture(scope="module")
def big_matrix(generated: tuple[Path, dict]) -> pd.DataFrame:
    """big_matrix.csv as text plus numeric views of its columns and the bad-row kind per row."""
    out_dir, _ = generated
    raw = pd.read_csv(out_dir / "big_matrix.csv", dtype=str, keep_default_na=False)
    table = raw.copy()
    for column in ("user_id", "video_id", "play_duration", "video_duration", "date"):
        table[column] = pd.to_numeric(raw[column], errors="coerce")
    table["timestamp"] = pd.to_numeric(raw["timestamp"])  # valid on every row, bad ones too
    table["watch_ratio"] = pd.to_numeric(raw["watch_ratio"])
    kind = pd.Series("", index=raw.index)
    kind[table["user_id"].isna()] = "missing_user_id"
    kind[table["play_duration"].isna()] = "non_numeric_play_duration"
    kind[table["video_duration"] < 0] = "negative_video_duration"
    kind[table["watch_ratio"] > 1e5] = "watch_ratio_out_of_range"
    kind[raw.duplicated(keep="first")] = "duplicate"
    table["bad_kind"] = kind
    start = pd.Timestamp("2020-07-05", tz="UTC").timestamp()
    table["day"] = ((table["timestamp"] - start) // 86_400).astype(int)
    return table


@pytest.fixture(scope="module")
def valid_views(big_matrix: pd.DataFrame) -> pd.DataFrame:
    views = big_matrix[big_matrix["bad_kind"] == ""].copy()
    return views.astype({"user_id": int, "video_id": int, "play_duration": int})


# --- determinism -----------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_another_seed_differs(
    generated: tuple[Path, dict], tmp_path: Path
) -> None:
    out_dir, manifest = generated
    again = generate_kuairec(tmp_path / "again", scale=SCALE, seed=SEED)
    other = generate_kuairec(tmp_path / "other", scale=SCALE, seed=SEED + 1)

    assert again == manifest
    for name in OUTPUT_FILES:
        assert (tmp_path / "again" / name).read_bytes() == (out_dir / name).read_bytes(), name
    assert other != manifest
    for name in ("big_matrix.csv", "small_matrix.csv", "item_categories.csv"):
        assert (tmp_path / "other" / name).read_bytes() != (out_dir / name).read_bytes(), name


# --- native formats --------------------------------------------------------------------------


def test_files_have_the_native_headers_and_newline_endings(generated: tuple[Path, dict]) -> None:
    out_dir, _ = generated
    for name, header in HEADERS.items():
        data = (out_dir / name).read_bytes()
        assert data.split(b"\n", 1)[0].decode("utf-8") == header, name
        assert data.endswith(b"\n") and b"\r\n" not in data, name


@pytest.mark.skipif(not REAL_KUAIREC.is_dir(), reason="real KuaiRec samples not in ../shared/data")
@pytest.mark.parametrize(
    "name", ["item_categories.csv", "user_features.csv", "kuairec_caption_category.csv"]
)
def test_headers_equal_the_real_kuairec_files(generated: tuple[Path, dict], name: str) -> None:
    out_dir, _ = generated
    real_header = (REAL_KUAIREC / name).read_bytes().split(b"\n", 1)[0]
    assert (out_dir / name).read_bytes().split(b"\n", 1)[0] == real_header


def test_files_parse_with_pandas(generated: tuple[Path, dict]) -> None:
    out_dir, manifest = generated
    scale = SCALES[SCALE]

    users = pd.read_csv(out_dir / "user_features.csv")
    assert users["user_id"].tolist() == list(range(scale.users))
    assert set(users["user_active_degree"]) <= {
        "high_active",
        "full_active",
        "middle_active",
        "UNKNOWN",
    }
    assert users["onehot_feat4"].isna().any()
    assert users[[f"onehot_feat{i}" for i in range(12, 18)]].isna().all(axis=1).any()
    assert users["onehot_feat0"].notna().all()

    items = pd.read_csv(out_dir / "item_categories.csv")
    assert items["video_id"].tolist() == list(range(scale.videos))

    small = pd.read_csv(out_dir / "small_matrix.csv")
    assert len(small) == manifest["small_matrix_rows"]
    assert len(small) == scale.small_matrix_users * scale.small_matrix_videos
    assert not small.duplicated(["user_id", "video_id"]).any()
    assert small["user_id"].nunique() == scale.small_matrix_users
    assert small["video_id"].nunique() == scale.small_matrix_videos
    missing_time = small["timestamp"].isna()
    assert missing_time.any() and missing_time.mean() < 0.02
    assert (small["time"].isna() == missing_time).all()
    assert (small["date"].isna() == missing_time).all()
    assert np.allclose(small["watch_ratio"], small["play_duration"] / small["video_duration"])


def test_time_and_date_are_beijing_time_of_the_utc_timestamp(big_matrix: pd.DataFrame) -> None:
    instant = pd.to_datetime(big_matrix["timestamp"], unit="s", utc=True).dt.round("ms")
    beijing = instant.dt.tz_convert("Asia/Shanghai").dt.tz_localize(None)
    assert (pd.to_datetime(big_matrix["time"], format="ISO8601") == beijing).all()
    assert (big_matrix["date"] == beijing.dt.strftime("%Y%m%d").astype(int)).all()
    assert big_matrix["time"].str.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{1,3}").all()
    # Rows are sorted by (user_id, timestamp), like the real file.
    valid = big_matrix[big_matrix["user_id"].notna()]
    same_user = np.diff(valid["user_id"].to_numpy()) == 0
    assert (np.diff(valid["user_id"].to_numpy()) >= 0).all()
    assert (np.diff(valid["timestamp"].to_numpy())[same_user] >= 0).all()


def test_multi_tag_item_categories_are_quoted_python_lists(generated: tuple[Path, dict]) -> None:
    out_dir, _ = generated
    lines = (out_dir / "item_categories.csv").read_text(encoding="utf-8").splitlines()[1:]
    multi = [line for line in lines if "," in line.split(",", 1)[1]]
    single = [line for line in lines if line not in multi]
    assert multi and single
    assert all(re.fullmatch(r'\d+,"\[\d+(, \d+){1,2}\]"', line) for line in multi)
    assert all(re.fullmatch(r"\d+,\[\d+\]", line) for line in single)

    items = pd.read_csv(out_dir / "item_categories.csv")
    tags = items["feat"].map(json.loads)  # "[27, 9]" is also valid JSON
    assert all(1 <= len(t) <= 3 and len(set(t)) == len(t) for t in tags)
    assert all(0 <= tag <= 30 for t in tags for tag in t)
    captions = pd.read_csv(out_dir / "kuairec_caption_category.csv", lineterminator="\n")
    assert (captions["first_level_category_id"] == tags.map(lambda t: t[0])).all()
    assert (captions["first_level_category_name"] == "cat" + tags.map(lambda t: str(t[0]))).all()


def test_caption_file_with_bare_carriage_returns_reads_on_newlines_only(
    generated: tuple[Path, dict],
) -> None:
    out_dir, _ = generated
    path = out_dir / "kuairec_caption_category.csv"
    assert b"\r" in path.read_bytes()

    captions = pd.read_csv(path, lineterminator="\n")
    assert captions["video_id"].tolist() == list(range(SCALES[SCALE].videos))
    assert captions["caption"].str.contains("\r", regex=False, na=False).sum() >= 1
    assert captions["caption"].isna().any()  # some empty captions
    assert (captions["manual_cover_text"] == "UNKNOWN").mean() > 0.5
    assert (captions["second_level_category_id"] == -124).any()
    assert (captions["third_level_category_name"] == "UNKNOWN").any()
    topic_tags = captions["topic_tag"]
    assert (topic_tags == "[]").any()
    assert topic_tags.str.fullmatch(r"\[([a-z]+(,[a-z]+)*)?\]").all()  # no quotes inside


# --- manifest ----------------------------------------------------------------------------------


def test_manifest_counts_match_the_files(
    generated: tuple[Path, dict], big_matrix: pd.DataFrame
) -> None:
    out_dir, manifest = generated
    assert json.loads((out_dir / "reelflow_manifest.json").read_text()) == manifest
    assert manifest["dataset"] == "kuairec"
    assert manifest["scale"] == SCALE and manifest["seed"] == SEED
    assert manifest["days"] == ["2020-07-05", "2020-07-06", "2020-07-07", "2020-07-08"]
    assert manifest["users"] == SCALES[SCALE].users
    assert manifest["videos"] == SCALES[SCALE].videos
    assert manifest["rows"]["big_matrix"] == len(big_matrix)

    assert big_matrix["day"].between(0, len(manifest["days"]) - 1).all()
    days = pd.Series(manifest["days"])[big_matrix["day"].to_numpy()].to_numpy()
    rows_per_day = pd.Series(days).value_counts().to_dict()
    assert manifest["rows_per_day"] == {ds: rows_per_day.get(ds, 0) for ds in manifest["days"]}

    is_bad = (big_matrix["bad_kind"] != "").to_numpy()
    for ds in manifest["days"]:
        on_day = days == ds
        bad = manifest["bad_rows_per_day"][ds]
        assert set(bad) == set(BAD_ROW_KINDS)
        counted = big_matrix.loc[on_day, "bad_kind"].value_counts().to_dict()
        assert bad == {kind: counted.get(kind, 0) for kind in BAD_ROW_KINDS}, ds
        assert manifest["valid_rows_per_day"][ds] == manifest["rows_per_day"][ds] - sum(
            bad.values()
        )
        assert manifest["valid_rows_per_day"][ds] == int((on_day & ~is_bad).sum())

    total_bad = is_bad.sum()
    assert 0.002 < total_bad / len(big_matrix) < 0.01
    assert (big_matrix["bad_kind"].value_counts() > 0).all()
    assert set(big_matrix["bad_kind"]) == {"", *BAD_ROW_KINDS}


def test_duplicate_rows_sit_right_after_their_original(big_matrix: pd.DataFrame) -> None:
    text_columns = [c for c in big_matrix.columns if c not in ("bad_kind", "day")]
    for index in np.flatnonzero(big_matrix["bad_kind"] == "duplicate"):
        copy, original = big_matrix.iloc[index], big_matrix.iloc[index - 1]
        assert original["bad_kind"] == ""
        assert copy[text_columns].equals(original[text_columns])


# --- learnable structure -----------------------------------------------------------------------


def test_popularity_is_skewed(valid_views: pd.DataFrame) -> None:
    views_per_video = valid_views["video_id"].value_counts()
    top = views_per_video.iloc[: SCALES[SCALE].videos // 10].sum()
    assert top / len(valid_views) > 0.30


def test_users_concentrate_on_their_favourite_categories(valid_views: pd.DataFrame) -> None:
    world = build_kuairec_world(SCALE, SEED)
    category = world.catalog.primary_category[valid_views["video_id"].to_numpy()]
    favourite = world.audience.taste.argmax(axis=1)[valid_views["user_id"].to_numpy()]
    global_share = np.bincount(category, minlength=31) / category.size
    share_in_favourite = (category == favourite).mean()
    assert share_in_favourite > 2.5 * global_share[favourite].mean()


def test_watch_ratio_rises_with_taste(valid_views: pd.DataFrame) -> None:
    world = build_kuairec_world(SCALE, SEED)
    taste = world.audience.taste
    affinity = (taste / taste.max(axis=1, keepdims=True))[
        valid_views["user_id"].to_numpy(),
        world.catalog.primary_category[valid_views["video_id"].to_numpy()],
    ]
    watch_ratio = valid_views["watch_ratio"].to_numpy()
    assert np.median(watch_ratio[affinity > 0.5]) > 1.5 * np.median(watch_ratio[affinity < 0.1])
    assert np.allclose(watch_ratio, valid_views["play_duration"] / valid_views["video_duration"])
    assert (watch_ratio > 5).any()  # rewatch loops


def test_personalised_popularity_beats_global_popularity_on_the_last_day(
    valid_views: pd.DataFrame,
) -> None:
    world = build_kuairec_world(SCALE, SEED)
    last_day = valid_views["day"].max()
    train, test = (
        valid_views[valid_views["day"] < last_day],
        valid_views[valid_views["day"] == last_day],
    )
    counts = np.bincount(train["video_id"], minlength=SCALES[SCALE].videos).astype(float)
    category = world.catalog.primary_category
    k = 20
    hits = {"popularity": 0, "personalised": 0}
    for user, user_test in test.groupby("user_id"):
        history = train.loc[train["user_id"] == user, "video_id"].to_numpy()
        category_share = (np.bincount(category[history], minlength=31) + 0.5) / (
            history.size + 15.5
        )
        scores = {"popularity": counts.copy(), "personalised": counts * category_share[category]}
        for name, score in scores.items():
            score[history] = -1.0  # recommend unseen videos only
            top_k = np.argpartition(-score, k)[:k]
            hits[name] += int(user_test["video_id"].isin(top_k).sum())
    assert hits["personalised"] > hits["popularity"]


def test_repeat_views_of_the_same_video_exist(valid_views: pd.DataFrame) -> None:
    pairs = valid_views.groupby(["user_id", "video_id"])["timestamp"]
    repeat_share = (len(valid_views) - pairs.ngroups) / len(valid_views)
    assert 0.005 < repeat_share < 0.15
    assert (pairs.nunique() == pairs.size()).all()  # repeats happen at different times


def test_new_videos_have_no_views_before_their_upload_day(valid_views: pd.DataFrame) -> None:
    upload_day = build_kuairec_world(SCALE, SEED).catalog.upload_day
    assert 0.05 < (upload_day > 0).mean() < 0.3
    view_upload_day = upload_day[valid_views["video_id"].to_numpy()]
    assert (valid_views["day"].to_numpy() >= view_upload_day).all()
    assert (view_upload_day > 0).any()  # new videos do get views once uploaded


def test_small_matrix_pairs_are_kept_out_of_big_matrix(
    generated: tuple[Path, dict], valid_views: pd.DataFrame
) -> None:
    out_dir, _ = generated
    small = pd.read_csv(out_dir / "small_matrix.csv", usecols=["user_id", "video_id"])
    overlap = valid_views.merge(small, on=["user_id", "video_id"])
    assert overlap.empty
    assert valid_views["user_id"].isin(small["user_id"]).any()
    assert valid_views["video_id"].isin(small["video_id"]).any()


def test_unknown_scale_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown scale"):
        generate_kuairec(tmp_path, scale="huge")


# --- scales, dispatcher and stability of the output ------------------------------------------

# sha256 of generate_kuairec(scale="tiny", seed=0): the KuaiRec demo's published numbers depend
# on the data, so no change may move a byte unnoticed. big_matrix.csv changed once on purpose,
# when sessions got their order (synthetic.world.SessionOrder); the other files did not.
TINY_SEED_0_SHA256 = {
    "big_matrix.csv": "1e0cd5483e1179e3f0467ac57313fbc0a0394c11b2de3d7ddda85351fe5b860f",
    "item_categories.csv": "28b5f2acc9333be2aea6eb89d0d3452c8211292f354d0d9c0935f63f02e17ff2",
    "kuairec_caption_category.csv": (
        "8d7b03d0915138ea5b96bb7af9bee470bffc000ea52143edf407fc60216eab4d"
    ),
    "reelflow_manifest.json": "ecd3d16153515ec364dd717b9fba7a9680af1b81c4eb1fc04ac86252ade32e70",
    "small_matrix.csv": "1199a2a02a01744cef5339230f4c934a879ce8f076b88280f3bc95dbd1ef34a6",
    "user_features.csv": "9b86d4e70fdb5ccea9a07a05672151477b7a463e55cfdb38227e4c437678d211",
}


def test_tiny_output_is_byte_stable(generated: tuple[Path, dict]) -> None:
    out_dir, _ = generated
    assert SCALE == "tiny" and SEED == 0
    for name, digest in TINY_SEED_0_SHA256.items():
        assert hashlib.sha256((out_dir / name).read_bytes()).hexdigest() == digest, name


def test_demo_is_the_former_small_and_small_has_about_a_million_rows() -> None:
    assert SCALES["demo"] == Scale(800, 2000, 7, 20, 150, 300)
    small = SCALES["small"]
    assert 0.8e6 < small.users * small.days * small.views_per_user_day < 1.2e6
    assert list(SCALES) == ["tiny", "demo", "small", "full"]


def test_dispatcher_writes_the_same_kuairec_files(
    generated: tuple[Path, dict], tmp_path: Path
) -> None:
    out_dir, manifest = generated
    assert tuple(GENERATORS) == ("kuairec", "kuairand", "microlens")
    assert generate("kuairec", tmp_path, scale=SCALE, seed=SEED) == manifest
    for name in OUTPUT_FILES:
        assert (tmp_path / name).read_bytes() == (out_dir / name).read_bytes(), name
    with pytest.raises(ValueError, match="no variants"):
        generate("kuairec", tmp_path, scale=SCALE, variant="1k")
    with pytest.raises(ValueError, match="unknown dataset"):
        generate("movielens", tmp_path, scale=SCALE)


def test_every_generator_writes_a_dataset_reelflow_reads() -> None:
    assert set(GENERATORS) <= set(DATASETS)
