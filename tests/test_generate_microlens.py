"""Tests for synthetic.microlens: native MicroLens files, manifest counts, learnable
structure."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthetic import generate
from synthetic.microlens import (
    BAD_ROW_KINDS,
    MIN_PER_USER,
    SCALES,
    build_microlens_world,
    generate_microlens,
)

SCALE = "tiny"
SEED = 0
REAL_TITLES = (
    Path(__file__).resolve().parents[1]
    / ".."
    / "shared"
    / "data"
    / "microlens"
    / "MicroLens-100k_title_en.csv"
)
FILES_100K = (
    "MicroLens-100k_pairs.csv",
    "MicroLens-100k_pairs.tsv",
    "MicroLens-100k_title_en.csv",
    "MicroLens-100k_likes_and_views.txt",
)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out_dir = tmp_path_factory.mktemp("microlens") / "MicroLens-100k"
    return out_dir, generate_microlens(out_dir, scale=SCALE, seed=SEED)


@pytest.fixture(scope="module")
def pairs(generated: tuple[Path, dict]) -> pd.DataFrame:
    """pairs.csv as text plus numeric columns, the bad kind and the UTC day of each row."""
    out_dir, _ = generated
    raw = pd.read_csv(out_dir / "MicroLens-100k_pairs.csv", dtype=str, keep_default_na=False)
    table = raw.apply(pd.to_numeric, errors="coerce")
    kind = pd.Series("", index=raw.index)
    kind[table["user"].isna()] = "missing_user"
    kind[table["item"].isna()] = "non_numeric_item"
    kind[raw.duplicated(keep="first")] = "duplicate"
    table["bad_kind"] = kind
    table["utc_day"] = pd.to_datetime(table["timestamp"], unit="ms", utc=True).dt.strftime(
        "%Y-%m-%d"
    )
    return table


@pytest.fixture(scope="module")
def valid(pairs: pd.DataFrame) -> pd.DataFrame:
    return pairs[pairs["bad_kind"] == ""].astype({"user": int, "item": int})


# --- determinism and file set ------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_another_seed_differs(
    generated: tuple[Path, dict], tmp_path: Path
) -> None:
    out_dir, manifest = generated
    again = generate("microlens", tmp_path / "again", scale=SCALE, seed=SEED)
    other = generate_microlens(tmp_path / "other", scale=SCALE, seed=SEED + 1)
    assert again == manifest
    for name in [*FILES_100K, "reelflow_manifest.json"]:
        assert (tmp_path / "again" / name).read_bytes() == (out_dir / name).read_bytes(), name
    assert other != manifest
    for name in FILES_100K:
        assert (tmp_path / "other" / name).read_bytes() != (out_dir / name).read_bytes(), name


def test_100k_writes_the_release_files(generated: tuple[Path, dict]) -> None:
    out_dir, manifest = generated
    assert {path.name for path in out_dir.iterdir()} == {*FILES_100K, "reelflow_manifest.json"}
    assert manifest["files"] == list(FILES_100K)


# --- native formats --------------------------------------------------------------------------


def test_pairs_csv_has_its_header_and_epoch_ms(
    generated: tuple[Path, dict], pairs: pd.DataFrame
) -> None:
    out_dir, manifest = generated
    data = (out_dir / "MicroLens-100k_pairs.csv").read_bytes()
    assert data.split(b"\n", 1)[0] == b"user,item,timestamp"
    assert data.endswith(b"\n") and b"\r" not in data
    assert pairs["timestamp"].between(1.5e12, 1.8e12).all()
    valid = pairs[pairs["bad_kind"] == ""]
    assert valid["user"].min() == 1 and valid["user"].max() <= manifest["users"]
    assert valid["item"].min() >= 1 and valid["item"].max() <= manifest["videos"]


def test_title_file_has_no_header_crlf_and_a_space_after_the_comma(
    generated: tuple[Path, dict],
) -> None:
    out_dir, manifest = generated
    data = (out_dir / "MicroLens-100k_title_en.csv").read_bytes()
    assert data.endswith(b"\r\n")
    assert data.count(b"\n") == data.count(b"\r\n") == data.count(b"\r") == manifest["videos"]
    lines = data.decode("utf-8").split("\r\n")[:-1]
    assert [int(line.split(",", 1)[0]) for line in lines] == list(range(1, len(lines) + 1))
    assert all(re.fullmatch(r"\d+, [^,\"]*", line) for line in lines)  # no header, no comma
    titles = [line.split(", ", 1)[1] for line in lines]
    assert "" in titles  # empty titles are written as "7, "
    assert any(title.endswith(" ") for title in titles)
    titles_read = pd.read_csv(
        out_dir / "MicroLens-100k_title_en.csv", header=None, names=["item", "title"]
    )
    assert len(titles_read) == manifest["videos"]


@pytest.mark.skipif(not REAL_TITLES.is_file(), reason="real MicroLens titles not in ../shared/data")
def test_title_file_is_formatted_like_the_real_one(generated: tuple[Path, dict]) -> None:
    out_dir, _ = generated

    def shape(path: Path) -> tuple:
        data = path.read_bytes()
        first = data.split(b"\r\n", 1)[0]
        lines = data.split(b"\r\n")[:-1]
        return (
            re.fullmatch(rb"1, .+", first) is not None,  # no header: the first id is 1
            data.count(b"\n") == data.count(b"\r\n"),  # CRLF only
            all(line.count(b",") == 1 for line in lines),  # one comma: titles hold none
            all(b'"' not in line for line in lines),
            any(line.endswith(b", ") for line in lines),  # empty titles
        )

    assert shape(out_dir / "MicroLens-100k_title_en.csv") == shape(REAL_TITLES)


def test_pairs_tsv_is_the_valid_pairs_in_time_order(
    generated: tuple[Path, dict], valid: pd.DataFrame
) -> None:
    out_dir, _ = generated
    text = (out_dir / "MicroLens-100k_pairs.tsv").read_text(encoding="utf-8")
    assert "\r" not in text and text.endswith("\n")
    tsv = {}
    for line in text.splitlines():
        user, items = line.split("\t")
        tsv[int(user)] = [int(item) for item in items.split(" ")]
    ordered = valid.sort_values(["user", "timestamp"], kind="stable")
    expected = ordered.groupby("user")["item"].apply(list).to_dict()
    assert tsv == expected
    assert list(tsv) == sorted(tsv)


def test_likes_and_views_has_one_tab_separated_line_per_item(
    generated: tuple[Path, dict],
) -> None:
    out_dir, manifest = generated
    data = (out_dir / "MicroLens-100k_likes_and_views.txt").read_text()
    assert re.fullmatch(r"(\d+\t\d+\t\d+\n)+", data)
    table = pd.read_csv(
        out_dir / "MicroLens-100k_likes_and_views.txt",
        sep="\t",
        header=None,
        names=["item", "likes", "views"],
    )
    assert table["item"].tolist() == list(range(1, manifest["videos"] + 1))
    assert (table["likes"] <= table["views"]).all() and table["views"].gt(0).mean() > 0.9
    popularity = build_microlens_world(SCALE, SEED).catalog.popularity
    assert np.corrcoef(np.log(popularity), np.log1p(table["views"]))[0, 1] > 0.5


def test_50k_writes_its_own_names_and_the_50k_titles_format(tmp_path: Path) -> None:
    manifest = generate("microlens", tmp_path, scale=SCALE, seed=SEED, variant="50k")
    names = {path.name for path in tmp_path.iterdir()}
    assert names == {
        "MicroLens-50k_pairs.csv",
        "MicroLens-50k_pairs.tsv",
        "MicroLens-50k_titles.csv",
        "MicroLens-50k_likes_and_views.txt",
        "reelflow_manifest.json",
    }
    assert manifest["variant"] == "50k"
    data = (tmp_path / "MicroLens-50k_titles.csv").read_bytes()
    assert data.startswith(b"item,title\n") and b"\r" not in data
    titles = pd.read_csv(tmp_path / "MicroLens-50k_titles.csv")
    assert titles["title"].str.contains(",").any()  # whole titles, commas quoted
    assert titles["title"].notna().all() and len(titles) < manifest["videos"]  # no empty ones


# --- manifest ----------------------------------------------------------------------------------


def test_manifest_counts_match_the_files(generated: tuple[Path, dict], pairs: pd.DataFrame) -> None:
    out_dir, manifest = generated
    assert json.loads((out_dir / "reelflow_manifest.json").read_text()) == manifest
    assert (manifest["dataset"], manifest["variant"]) == ("microlens", "100k")
    assert (manifest["scale"], manifest["seed"]) == (SCALE, SEED)
    dims = SCALES["100k"][SCALE]
    assert (manifest["users"], manifest["videos"]) == (dims.users, dims.items)
    assert manifest["rows"] == {"MicroLens-100k_pairs": len(pairs)}
    days = manifest["days"]
    assert len(days) == dims.days and set(pairs["utc_day"]) <= set(days)
    counted = pairs.groupby("utc_day")["bad_kind"].value_counts().unstack(fill_value=0)
    counted = counted.reindex(index=days, fill_value=0)
    for day in days:
        assert manifest["rows_per_day"][day] == int(counted.loc[day].sum())
        assert manifest["valid_rows_per_day"][day] == int(counted.loc[day].get("", 0))
        bad = {kind: int(counted.loc[day].get(kind, 0)) for kind in BAD_ROW_KINDS}
        assert manifest["bad_rows_per_day"][day] == bad, day
    assert 0.002 < (pairs["bad_kind"] != "").mean() < 0.012
    assert set(pairs["bad_kind"]) == {"", *BAD_ROW_KINDS}


# --- learnable structure -----------------------------------------------------------------------


def test_users_have_at_least_five_unique_items(valid: pd.DataFrame) -> None:
    per_user = valid.groupby("user")["item"].agg(["size", "nunique"])
    assert (per_user["size"] == per_user["nunique"]).all()  # each (user, item) pair once
    assert (per_user["size"] >= MIN_PER_USER).mean() > 0.97
    assert per_user["size"].mean() == pytest.approx(7.2, abs=0.6)


def test_popularity_is_skewed(valid: pd.DataFrame) -> None:
    per_item = valid["item"].value_counts()
    top = per_item.iloc[: SCALES["100k"][SCALE].items // 10].sum()
    assert top / len(valid) > 0.3


def test_category_lift_beats_popularity_on_each_users_last_item(valid: pd.DataFrame) -> None:
    """Leave-last-out, as MicroLens baselines are evaluated: popularity times the user's category
    lift beats popularity."""
    world = build_microlens_world(SCALE, SEED)
    ordered = valid.sort_values(["user", "timestamp"], kind="stable")
    is_last = ~ordered["user"].duplicated(keep="last")
    train, test = ordered[~is_last], ordered[is_last]
    item, user = train["item"].to_numpy() - 1, train["user"].to_numpy() - 1
    counts = np.bincount(item, minlength=world.scale.videos).astype(float)
    category = world.catalog.primary_category
    n_categories = world.platform.categories
    global_share = (np.bincount(category[item], minlength=n_categories) + 1) / (
        item.size + n_categories
    )
    history_of = pd.Series(item).groupby(user).apply(np.array)
    k, shrink = 20, 5.0
    hits = {"popularity": 0, "category_lift": 0}
    for test_user, test_item in zip(test["user"] - 1, test["item"] - 1, strict=True):
        history = history_of.get(test_user, np.zeros(0, dtype=int))
        own = np.bincount(category[history], minlength=n_categories)
        lift = (own + shrink * global_share) / (history.size + shrink) / global_share
        for name, score in {
            "popularity": counts.copy(),
            "category_lift": counts * lift[category],
        }.items():
            score[history] = -1.0
            hits[name] += int(test_item in np.argpartition(-score, k)[:k])
    assert hits["category_lift"] > 1.1 * hits["popularity"]


def test_unknown_variant_and_scale_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown MicroLens variant"):
        generate_microlens(tmp_path, scale=SCALE, variant="1m")
    with pytest.raises(ValueError, match="unknown scale"):
        generate("microlens", tmp_path, scale="huge")
