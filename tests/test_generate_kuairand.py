"""Tests for synthetic.kuairand: native KuaiRand files, manifest counts, learnable structure."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthetic import generate
from synthetic.kuairand import (
    BAD_ROW_KINDS,
    LOG_COLUMNS,
    SCALES,
    build_kuairand_world,
    generate_kuairand,
    log_file_names,
)

SCALE = "tiny"
SEED = 0
REAL_KUAIRAND = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "kuairand"
needs_real = pytest.mark.skipif(
    not REAL_KUAIRAND.is_dir(), reason="real KuaiRand samples not in ../shared/data"
)
LOG_HEADER = ",".join(LOG_COLUMNS)
SIDE_FILES = ("user_features_{v}.csv", "video_features_basic_{v}.csv")


def _generated(tmp_path_factory: pytest.TempPathFactory, variant: str) -> tuple[Path, dict]:
    out_dir = tmp_path_factory.mktemp(f"kuairand_{variant}") / "data"
    return out_dir, generate_kuairand(out_dir, scale=SCALE, seed=SEED, variant=variant)


@pytest.fixture(scope="module")
def pure(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    return _generated(tmp_path_factory, "pure")


@pytest.fixture(scope="module")
def k27(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    return _generated(tmp_path_factory, "27k")


def _read_logs(out_dir: Path, variant: str) -> pd.DataFrame:
    """All log files as text plus numeric columns, the file, the bad kind and the UTC day."""
    frames = []
    for name in log_file_names(variant, SCALE):
        raw = pd.read_csv(out_dir / name, dtype=str, keep_default_na=False)
        table = raw.apply(pd.to_numeric, errors="coerce")
        kind = pd.Series("", index=raw.index)
        kind[table["user_id"].isna()] = "missing_user_id"
        kind[table["play_time_ms"].isna()] = "non_numeric_play_time_ms"
        kind[table["play_time_ms"] < 0] = "negative_play_time_ms"
        kind[table["duration_ms"] < 0] = "negative_duration_ms"
        kind[raw.duplicated(keep="first")] = "duplicate"
        table["bad_kind"] = kind
        table["file"] = name
        frames.append(table)
    logs = pd.concat(frames, ignore_index=True)
    logs["utc_day"] = pd.to_datetime(logs["time_ms"], unit="ms", utc=True).dt.strftime("%Y-%m-%d")
    return logs


@pytest.fixture(scope="module")
def logs(pure: tuple[Path, dict]) -> pd.DataFrame:
    return _read_logs(pure[0], "pure")


@pytest.fixture(scope="module")
def valid(logs: pd.DataFrame) -> pd.DataFrame:
    views = logs[logs["bad_kind"] == ""].copy()
    return views.astype({"user_id": int, "video_id": int, "play_time_ms": int})


# --- determinism and file set ------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_another_seed_differs(
    pure: tuple[Path, dict], tmp_path: Path
) -> None:
    out_dir, manifest = pure
    again = generate("kuairand", tmp_path / "again", scale=SCALE, seed=SEED, variant="pure")
    other = generate_kuairand(tmp_path / "other", scale=SCALE, seed=SEED + 1)
    assert again == manifest
    for name in [*manifest["files"], "reelflow_manifest.json"]:
        assert (tmp_path / "again" / name).read_bytes() == (out_dir / name).read_bytes(), name
    assert other != manifest
    for name in ("log_standard_4_08_to_4_21_pure.csv", "video_features_basic_pure.csv"):
        assert (tmp_path / "other" / name).read_bytes() != (out_dir / name).read_bytes(), name


def test_pure_writes_the_release_files(pure: tuple[Path, dict]) -> None:
    out_dir, manifest = pure
    expected = {
        "log_standard_4_08_to_4_21_pure.csv",
        "log_standard_4_22_to_5_08_pure.csv",
        "log_random_4_22_to_5_08_pure.csv",
        "user_features_pure.csv",
        "video_features_basic_pure.csv",
        "video_features_statistic_pure.csv",
        "reelflow_manifest.json",
    }
    assert {path.name for path in out_dir.iterdir()} == expected
    assert set(manifest["files"]) == expected - {"reelflow_manifest.json"}


def test_27k_standard_logs_come_in_parts_split_at_user_boundaries(k27: tuple[Path, dict]) -> None:
    out_dir, manifest = k27
    names = {path.name for path in out_dir.iterdir()}
    for stem in ("log_standard_4_08_to_4_21_27k", "log_standard_4_22_to_5_08_27k"):
        parts = [f"{stem}_part{k}.csv" for k in (1, 2)]
        assert set(parts) <= names and f"{stem}.csv" not in names
        users = [set(pd.read_csv(out_dir / part)["user_id"].dropna()) for part in parts]
        assert users[0] and users[1] and not users[0] & users[1]
        assert max(users[0]) < min(users[1])
        for part in parts:
            assert (out_dir / part).read_bytes().split(b"\n", 1)[0].decode() == LOG_HEADER
    assert "log_random_4_22_to_5_08_27k.csv" in names
    logs = _read_logs(out_dir, "27k")
    assert sum(manifest["rows"].values()) == len(logs)
    assert (
        manifest["rows_per_day"]
        == logs["utc_day"].value_counts().reindex(manifest["days"], fill_value=0).to_dict()
    )


def test_1k_has_few_users_and_a_wide_catalog(tmp_path: Path) -> None:
    manifest = generate("kuairand", tmp_path, scale=SCALE, seed=SEED, variant="1k")
    dims = SCALES["1k"][SCALE]
    assert (manifest["users"], manifest["videos"]) == (dims.users, dims.videos)
    assert (tmp_path / "log_random_4_22_to_5_08_1k.csv").is_file()
    random_log = pd.read_csv(tmp_path / "log_random_4_22_to_5_08_1k.csv")
    assert random_log["video_id"].max() < dims.random_pool  # random exposures: the pure pool


# --- native formats --------------------------------------------------------------------------


def test_logs_have_the_native_header_and_newlines(pure: tuple[Path, dict]) -> None:
    out_dir, _ = pure
    for name in log_file_names("pure", SCALE):
        data = (out_dir / name).read_bytes()
        assert data.split(b"\n", 1)[0].decode() == LOG_HEADER
        assert data.endswith(b"\n") and b"\r" not in data


@needs_real
def test_headers_equal_the_real_files(pure: tuple[Path, dict]) -> None:
    out_dir, _ = pure
    real_log = (REAL_KUAIRAND / "log_random_4_22_to_5_08_1k.sample40.csv").read_bytes()
    assert real_log.split(b"\n", 1)[0].decode() == LOG_HEADER
    for pattern in SIDE_FILES:
        real = (REAL_KUAIRAND / pattern.format(v="pure")).read_bytes().split(b"\n", 1)[0]
        assert (out_dir / pattern.format(v="pure")).read_bytes().split(b"\n", 1)[0] == real


@needs_real
def test_log_values_look_like_the_real_sample(valid: pd.DataFrame) -> None:
    real = pd.read_csv(REAL_KUAIRAND / "log_random_4_22_to_5_08_1k.sample40.csv")
    ours = valid[valid["is_rand"] == 1]
    for column in LOG_COLUMNS:
        assert pd.api.types.is_integer_dtype(real[column])
        assert ours[column].dropna().mod(1).eq(0).all(), column
    assert set(ours["tab"]) == set(real["tab"])
    assert (
        real["time_ms"].between(1.6e12, 1.7e12).all()
        and ours["time_ms"].between(1.6e12, 1.7e12).all()
    )


def test_side_files_parse_with_native_quirks(pure: tuple[Path, dict], valid: pd.DataFrame) -> None:
    out_dir, manifest = pure
    users = pd.read_csv(out_dir / "user_features_pure.csv")
    assert len(users.columns) == 31 and users["user_id"].tolist() == list(range(manifest["users"]))
    assert set(users["is_live_streamer"]) == {-124, 1}
    assert users["onehot_feat4"].dtype == float and users["onehot_feat4"].isna().any()
    assert users[[f"onehot_feat{i}" for i in range(12, 18)]].isna().all(axis=1).any()

    text = (out_dir / "video_features_basic_pure.csv").read_text()
    assert ',"' in text  # multi-valued tags are quoted: "20,43"
    videos = pd.read_csv(out_dir / "video_features_basic_pure.csv")
    assert len(videos.columns) == 12
    assert videos["video_id"].tolist() == list(range(manifest["videos"]))
    assert videos["video_duration"].dtype == float and videos["video_duration"].isna().any()
    assert pd.to_datetime(videos["upload_dt"], format="%Y-%m-%d").notna().all()
    tags = videos["tag"].dropna().astype(str).str.split(",")
    assert tags.map(len).max() >= 2 and tags.explode().astype(int).between(1, 68).all()
    # Videos without a duration log duration_ms 0 (a real quirk, not a bad row).
    no_duration = set(videos.loc[videos["video_duration"].isna(), "video_id"])
    zero = valid["duration_ms"] == 0
    assert zero.any() and set(valid.loc[zero, "video_id"]) <= no_duration

    stats = pd.read_csv(out_dir / "video_features_statistic_pure.csv")
    assert list(stats.columns[:3]) == ["video_id", "counts", "show_cnt"]
    assert stats["video_id"].tolist() == list(range(manifest["videos"]))
    assert len(stats.columns) > 40 and (stats.drop(columns="video_id") >= 0).all().all()
    popularity = build_kuairand_world(SCALE, SEED).catalog.popularity
    assert np.corrcoef(np.log(popularity), np.log1p(stats["show_cnt"]))[0, 1] > 0.8


def test_date_and_hourmin_are_beijing_time_or_the_next_hour(valid: pd.DataFrame) -> None:
    beijing = pd.to_datetime(valid["time_ms"], unit="ms", utc=True).dt.tz_convert("Asia/Shanghai")
    stamped = pd.to_datetime(
        valid["date"].astype(str) + (valid["hourmin"] // 100).astype(str).str.zfill(2),
        format="%Y%m%d%H",
    ).dt.tz_localize("Asia/Shanghai")
    hour = beijing.dt.floor("h")
    lag = stamped - hour
    assert lag.isin([pd.Timedelta(0), pd.Timedelta(hours=1)]).all()
    assert 0.05 < (lag > pd.Timedelta(0)).mean() < 0.4
    assert (valid["hourmin"] % 100 == 0).all()


def test_logs_are_cut_at_beijing_dates_and_sorted(valid: pd.DataFrame) -> None:
    beijing_date = pd.to_datetime(valid["time_ms"], unit="ms", utc=True).dt.tz_convert(
        "Asia/Shanghai"
    )
    day = beijing_date.dt.strftime("%Y-%m-%d")
    first = valid["file"].str.contains("4_08_to_4_21")
    assert day[first].between("2022-04-08", "2022-04-21").all()
    assert day[~first].between("2022-04-22", "2022-05-08").all()
    assert set(day) == {"2022-04-08", "2022-04-09", "2022-04-22", "2022-04-23"}  # tiny: 2 + 2
    for _, log in valid.groupby("file"):
        users = log["user_id"].to_numpy()
        assert (np.diff(users) >= 0).all()
        same_user = np.diff(users) == 0
        assert (np.diff(log["time_ms"].to_numpy())[same_user] >= 0).all()


def test_random_log_is_flagged_and_uniform(valid: pd.DataFrame) -> None:
    is_random_file = valid["file"].str.startswith("log_random")
    assert (valid.loc[is_random_file, "is_rand"] == 1).all()
    assert (valid.loc[~is_random_file, "is_rand"] == 0).all()

    def dispersion(videos: pd.Series) -> float:
        """Variance / mean of the exposures per video: ~1 for uniform draws."""
        counts = videos.value_counts().reindex(range(SCALES["pure"][SCALE].videos), fill_value=0)
        return float(counts.var() / counts.mean())

    assert dispersion(valid.loc[is_random_file, "video_id"]) < 1.6
    assert dispersion(valid.loc[~is_random_file, "video_id"]) > 5


# --- manifest ----------------------------------------------------------------------------------


def test_manifest_counts_match_the_files(pure: tuple[Path, dict], logs: pd.DataFrame) -> None:
    out_dir, manifest = pure
    assert json.loads((out_dir / "reelflow_manifest.json").read_text()) == manifest
    assert (manifest["dataset"], manifest["variant"]) == ("kuairand", "pure")
    assert (manifest["scale"], manifest["seed"]) == (SCALE, SEED)
    dims = SCALES["pure"][SCALE]
    assert (manifest["users"], manifest["videos"]) == (dims.users, dims.videos)
    for name, rows in manifest["rows"].items():
        assert (logs["file"] == f"{name}.csv").sum() == rows
    days = manifest["days"]
    assert set(logs["utc_day"]) <= set(days) and days == sorted(days)
    counted = logs.groupby("utc_day")["bad_kind"].value_counts().unstack(fill_value=0)
    counted = counted.reindex(index=days, fill_value=0)
    for day in days:
        assert manifest["rows_per_day"][day] == int(counted.loc[day].sum())
        assert manifest["valid_rows_per_day"][day] == int(counted.loc[day].get("", 0))
        bad = {kind: int(counted.loc[day].get(kind, 0)) for kind in BAD_ROW_KINDS}
        assert manifest["bad_rows_per_day"][day] == bad, day
    share = (logs["bad_kind"] != "").mean()
    assert 0.002 < share < 0.012
    assert set(logs["bad_kind"]) == {"", *BAD_ROW_KINDS}


# --- learnable structure -----------------------------------------------------------------------


def _affinity(valid: pd.DataFrame) -> np.ndarray:
    world = build_kuairand_world(SCALE, SEED)
    taste = world.audience.taste / world.audience.taste.max(axis=1, keepdims=True)
    category = world.catalog.primary_category[valid["video_id"].to_numpy()]
    return taste[valid["user_id"].to_numpy(), category]


def test_popularity_is_skewed_in_the_standard_log(valid: pd.DataFrame) -> None:
    standard = valid[valid["is_rand"] == 0]
    per_video = standard["video_id"].value_counts()
    top = per_video.iloc[: SCALES["pure"][SCALE].videos // 10].sum()
    assert top / len(standard) > 0.3


def test_engagement_rises_with_taste_in_the_unbiased_random_log(valid: pd.DataFrame) -> None:
    affinity = _affinity(valid)
    random_rows = (valid["is_rand"] == 1).to_numpy()
    click = valid["is_click"].to_numpy()
    liked = random_rows & (affinity > 0.5)
    disliked = random_rows & (affinity < 0.1)
    assert click[liked].mean() > 2 * click[disliked].mean()
    # The feed favours liked categories, so its click rate beats the random slice's.
    assert click[~random_rows].mean() > click[random_rows].mean() + 0.05
    # Flags are consistent: actions and long views only on clicks; no click, short preview.
    clicked = valid["is_click"] == 1
    for flag in ("is_like", "is_follow", "is_comment", "is_forward", "long_view"):
        assert (valid.loc[~clicked, flag] == 0).all(), flag
    assert valid.loc[~clicked, "play_time_ms"].median() < 5_000
    assert (valid["profile_stay_time"] > 0).eq(valid["is_profile_enter"] == 1).all()
    assert (valid.loc[valid["is_comment"] == 1, "comment_stay_time"] > 0).all()
    assert valid["is_like"].sum() > 0 and valid["long_view"].mean() > 0.1


def test_category_lift_beats_global_popularity_on_the_last_day(valid: pd.DataFrame) -> None:
    """Popularity times the user's category lift (their category share, shrunk toward the
    global share, over the global share) finds more of the last day's views than popularity."""
    world = build_kuairand_world(SCALE, SEED)
    standard = valid[valid["is_rand"] == 0]
    beijing_day = pd.to_datetime(standard["time_ms"] + 8 * 3_600_000, unit="ms").dt.day
    last = beijing_day == beijing_day.max()
    train, test = standard[~last], standard[last]
    counts = np.bincount(train["video_id"], minlength=world.scale.videos).astype(float)
    category = world.catalog.primary_category
    n_categories = world.platform.categories
    global_share = (np.bincount(category[train["video_id"]], minlength=n_categories) + 1) / (
        len(train) + n_categories
    )
    k, shrink = 20, 5.0
    hits = {"popularity": 0, "category_lift": 0}
    for user, user_test in test.groupby("user_id"):
        history = train.loc[train["user_id"] == user, "video_id"].to_numpy()
        own = np.bincount(category[history], minlength=n_categories)
        lift = (own + shrink * global_share) / (history.size + shrink) / global_share
        scores = {"popularity": counts.copy(), "category_lift": counts * lift[category]}
        for name, score in scores.items():
            score[history] = -1.0  # recommend unseen videos only
            top_k = np.argpartition(-score, k)[:k]
            hits[name] += int(user_test["video_id"].isin(top_k).sum())
    assert hits["category_lift"] > 1.1 * hits["popularity"]


def test_unknown_variant_and_scale_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown KuaiRand variant"):
        generate_kuairand(tmp_path, scale=SCALE, variant="2k")
    with pytest.raises(ValueError, match="unknown scale"):
        generate("kuairand", tmp_path, scale="huge")
    for bad in ("tiny/0", "tiny/x", "huge/2"):
        with pytest.raises(ValueError, match="unknown scale"):
            generate("kuairand", tmp_path, scale=bad)


def test_a_fraction_divides_users_and_catalog(tmp_path: Path) -> None:
    """ "S/N" (the KuaiRand-27K plan's runs at 1/256 .. 1/64): 1/N of the users and of the
    videos, the same days and rows per user-day, the random pool inside the catalog."""
    manifest = generate("kuairand", tmp_path, scale="tiny/4", seed=SEED, variant="27k")
    dims = SCALES["27k"]["tiny"]
    assert (manifest["users"], manifest["videos"]) == (dims.users // 4, dims.videos // 4)
    whole = generate("kuairand", tmp_path / "whole", scale="tiny", seed=SEED, variant="27k")
    assert manifest["days"] == whole["days"]
    rows, whole_rows = sum(manifest["rows_per_day"].values()), sum(whole["rows_per_day"].values())
    assert 0.15 < rows / whole_rows < 0.35  # about a quarter of the rows
    logs = pd.concat(pd.read_csv(tmp_path / name) for name in log_file_names("27k", "tiny/4"))
    ids = pd.to_numeric(logs["video_id"], errors="coerce").dropna()
    assert ids.max() < dims.videos // 4  # every logged video is in the smaller catalog
