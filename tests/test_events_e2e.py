"""Own logs without an item file (issue 12 row 14): the catalog is derived from the log.

MovieLens-100K's real `u.data` (`user item rating unix_ts`, no item file named in the spec)
is the commonest shape of a team's own log: `normalize` writes the `videos` snapshot from the
distinct videos seen through each day, and `reelflow run --dataset events` then goes through
validation, features, training and export to a recommendation list.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from jobs.readers.events import SPEC_NAME
from tests.conftest import SHARED_DATA, reelflow_cli
from tests.test_readers_events import MOVIELENS_SPEC

U_DATA = SHARED_DATA / "movielens" / "ml-100k" / "u.data"
pytestmark = pytest.mark.skipif(
    not U_DATA.exists(), reason="../shared/data/movielens/ml-100k/u.data is absent"
)


def utc_day(line: str) -> str:
    return datetime.fromtimestamp(int(line.split("\t")[3]), UTC).date().isoformat()


def movielens_days(folder: Path, n_days: int) -> tuple[Path, list[str], pd.DataFrame]:
    """The rows of the first `n_days` UTC days with data of u.data, with the spec, in `folder`."""
    lines = U_DATA.read_text().splitlines()
    days = sorted({utc_day(line) for line in lines})[:n_days]
    kept = [line for line in lines if utc_day(line) in set(days)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text("\n".join(kept) + "\n")
    (folder / SPEC_NAME).write_text(MOVIELENS_SPEC)  # no [videos]: the log is all there is
    rows = pd.DataFrame(
        [line.split("\t") for line in kept], columns=["user", "item", "rating", "ts"]
    ).astype(int)
    rows["ds"] = [utc_day(line) for line in kept]
    return folder, days, rows


def test_catalog_is_derived_from_the_log_and_the_day_validates(spark, home, tmp_path, caplog):
    from jobs.normalize import normalize_day
    from jobs.validate import validate_day

    raw, days, rows = movielens_days(tmp_path / "raw", 2)
    for day in days:
        with caplog.at_level(logging.INFO, logger="reelflow.normalize"):
            summary = normalize_day("events", raw, day, paths=home)
        videos = summary["tables"]["videos"]
        assert videos["derived_from"] == "interactions"
        seen = set(rows.loc[rows["ds"] <= day, "item"])
        assert videos["written"] == len(seen)
        catalog = pd.read_parquet(home.normalized("videos") / f"ds={day}")
        assert set(catalog["video_id"]) == seen and catalog["video_id"].is_unique
        assert any(
            "derived" in r.getMessage() and "videos" in r.getMessage()
            for r in caplog.records
            if r.name == "reelflow.normalize"
        )
        caplog.clear()
        assert validate_day(day, paths=home)["success"]


@pytest.mark.e2e
def test_movielens_u_data_runs_end_to_end_and_recommends(tmp_path):
    """The daily DAG through Airflow for ten days, then the ranker, the export and a
    recommendation. Training goes through `reelflow train` rather than the train DAG: on ten
    days of ratings the ranker does not beat popularity (val NDCG@10 0.15 after one epoch,
    0.02 after six, popularity 0.30), so the gate rightly keeps it out, the export DAG would
    find no champion, and the test forces the promotion by hand, as a person would."""
    raw, days, rows = movielens_days(tmp_path / "movielens", 10)
    home = tmp_path / "home"
    env = {
        **os.environ,
        "REELFLOW_HOME": str(home),
        # One epoch: this checks that the pipeline runs on a log without an item file, not
        # what a model learns from ten days of ratings.
        "REELFLOW_RANKER__EPOCHS": "1",
    }

    def cli(*args: str):
        result = reelflow_cli(*args, "--json", env=env, timeout=900)
        assert result.returncode == 0, (
            f"reelflow {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
        return json.loads(result.stdout)

    started = time.monotonic()
    summary = cli("run", "--dataset", "events", "--raw", str(raw), "--skip-train")
    assert list(summary["days"]) == days
    for ds, day in summary["days"].items():
        assert day["validation"] == "passed", ds
        assert day["normalized"] == int((rows["ds"] == ds).sum()), ds
        assert day["quarantined"] == 0, ds
        assert day["user_features"] and day["video_features"] and day["materialized"], ds
    normalize = json.loads((home / "runs" / f"ds={days[-1]}" / "normalize.json").read_text())
    assert normalize["tables"]["videos"]["derived_from"] == "interactions"
    assert normalize["tables"]["videos"]["written"] == rows["item"].nunique()
    video_features = pd.read_parquet(
        home / "lake" / "features" / "video_features" / f"ds={days[-1]}"
    )
    assert set(video_features["video_id"]) == set(rows["item"])
    assert (video_features["primary_category"] == -1).all()  # no categories: none invented
    ran = time.monotonic() - started

    trained = cli("train", "--model", "ranker")
    assert trained["gate"]["decision"] in ("promoted", "rejected")
    if not trained["promoted"]:
        forced = cli(
            "promote", "--model", "ranker", "--version", str(trained["version"]), "--force"
        )
        assert forced["decision"] == "forced"
    export = cli("export", "--ds", days[-1])
    # The index holds the videos the embedding model learned (the forced ranker's vectors
    # here: the videos of its training days), never more than the log's catalog.
    assert 0 < export["index"]["size"] <= rows["item"].nunique()
    assert export["candidates"]["rows"] > 0

    user = int(rows.loc[rows["ts"].idxmax(), "user"])  # the last one to rate
    candidates = cli("recommend", "--user", str(user))["candidates"]
    assert candidates and {c["video_id"] for c in candidates} <= set(rows["item"])
    print(
        f"events e2e on {len(rows)} MovieLens rows: run {ran:.0f}s, "
        f"all {time.monotonic() - started:.0f}s"
    )
