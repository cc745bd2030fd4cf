"""Normalize: idempotent re-runs and crash safety of the partition commits."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

from jobs.normalize import normalize_day
from lake.commit import recover, staged_partition

DAY = "2020-07-06"
TABLES = (("normalized", "interactions"), ("quarantine", "interactions"), ("normalized", "videos"))


def checksum(spark, path) -> str:
    """Order-independent content digest: the sorted rows of a partition."""
    rows = sorted(repr(tuple(r)) for r in spark.read.parquet(str(path)).collect())
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def digests(spark, home) -> dict[str, str]:
    return {
        f"{kind}/{table}": checksum(spark, home.lake / kind / table / f"ds={DAY}")
        for kind, table in TABLES
    }


@pytest.fixture()
def normalized_once(spark, home, tiny_raw):
    raw, manifest = tiny_raw
    summary = normalize_day("kuairec", raw, DAY, paths=home)
    return raw, manifest, summary


def test_counts_match_the_generator_and_reasons_are_reported(normalized_once):
    _, manifest, summary = normalized_once
    counts = summary["tables"]["interactions"]
    assert counts["read"] == manifest["rows_per_day"][DAY]
    assert counts["written"] == manifest["valid_rows_per_day"][DAY]
    assert counts["quarantined"] == sum(manifest["bad_rows_per_day"][DAY].values())
    assert sum(counts["reasons"].values()) == counts["quarantined"]


def test_same_day_twice_gives_identical_content(spark, home, normalized_once):
    raw, _, _ = normalized_once
    first = digests(spark, home)
    again = normalize_day("kuairec", raw, DAY, paths=home)
    assert again["landing"] == "skipped (unchanged)"
    assert digests(spark, home) == first


@pytest.mark.parametrize("crash_at", ["while_writing", "between_renames", "after_swap"])
def test_a_killed_normalize_leaves_a_whole_partition_after_recovery(
    spark, home, normalized_once, crash_at
):
    raw, _, _ = normalized_once
    before = digests(spark, home)
    env = {**os.environ, "REELFLOW_HOME": str(home.home), "REELFLOW_CRASH_AT": crash_at}
    killed = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs.normalize",
            "--dataset",
            "kuairec",
            "--raw",
            str(raw),
            "--ds",
            DAY,
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert killed.returncode == 137, killed.stderr[-2000:]
    table = home.normalized("interactions")
    recover(table, f"ds={DAY}")  # what the next run does first
    assert digests(spark, home) == before
    assert not list((table.parent / "_staging" / "interactions").glob(f"ds={DAY}.*"))
    normalize_day("kuairec", raw, DAY, paths=home)
    assert digests(spark, home) == before


def test_sigkill_in_the_middle_of_a_write_keeps_the_old_partition(tmp_path):
    """A writer killed by SIGKILL while files are still being written: no partial partition."""
    table = tmp_path / "lake" / "t"
    with staged_partition(table, "ds=2020-07-05") as staging:
        staging.mkdir(parents=True)
        (staging / "part-0").write_text("old")
    slow_writer = (
        "import time, sys\n"
        "from pathlib import Path\n"
        "from lake.commit import staged_partition\n"
        "with staged_partition(Path(sys.argv[1]), 'ds=2020-07-05') as staging:\n"
        "    staging.mkdir(parents=True)\n"
        "    for i in range(1000):\n"
        "        (staging / f'part-{i}').write_text('new')\n"
        "        time.sleep(0.01)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", slow_writer, str(table)])
    staging_root = tmp_path / "lake" / "_staging" / "t"
    deadline = time.time() + 60
    while not any(staging_root.glob("ds=2020-07-05.*/part-3")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [p.name for p in (table / "ds=2020-07-05").iterdir()] == ["part-0"]
    recover(table, "ds=2020-07-05")
    assert (table / "ds=2020-07-05" / "part-0").read_text() == "old"
    assert not any(staging_root.iterdir())


def test_microlens_without_title_and_likes_files_gets_its_catalog_from_the_log(
    spark, home, tmp_path
):
    """Issue 12 row 14: a release without an item table derives `videos` from the log."""
    import pandas as pd

    from synthetic.microlens import generate_microlens

    raw = tmp_path / "MicroLens-100k"
    manifest = generate_microlens(raw, scale="tiny", seed=0)
    for name in ("title_en.csv", "likes_and_views.txt"):
        (raw / f"MicroLens-100k_{name}").unlink()
    day = manifest["days"][1]
    summary = normalize_day("microlens", raw, day, paths=home)
    derived = summary["tables"]["videos"]
    assert derived["derived_from"] == "interactions" and derived["through"] == day
    catalog = pd.read_parquet(home.normalized("videos") / f"ds={day}")
    # Day 1 was never normalized here: the catalog comes from the landing, every day through D.
    landed = pd.read_parquet(home.landing / "interactions")
    valid = landed[landed["quarantine_reason"].isna() & (landed["ds"].astype(str) <= day)]
    assert set(catalog["video_id"]) == set(valid["video_id"])
    assert set(valid.loc[valid["ds"].astype(str) < day, "video_id"]) - set(
        pd.read_parquet(home.normalized("interactions") / f"ds={day}")["video_id"]
    ), "day 1 adds videos day 2 never shows"
    assert catalog["video_id"].is_unique and len(catalog) == derived["written"]


def test_a_catalog_snapshot_is_linked_from_a_day_cut_from_the_same_landing(
    spark, home, normalized_once
):
    """Each day's `videos` snapshot is the whole landed catalog: a second day of the same
    landing links the first day's files (same rows, same counts) instead of re-writing them."""
    raw, manifest, first = normalized_once
    other = next(day for day in sorted(manifest["rows_per_day"]) if day != DAY)
    second = normalize_day("kuairec", raw, other, paths=home)
    videos = second["tables"]["videos"]
    assert videos.pop("linked_from") == f"ds={DAY}"
    assert videos == first["tables"]["videos"]
    for kind in ("normalized", "quarantine"):
        a, b = (home.lake / kind / "videos" / f"ds={day}" for day in (DAY, other))
        assert checksum(spark, a) == checksum(spark, b)
        for file in a.glob("*.parquet"):
            assert os.stat(file).st_ino == os.stat(b / file.name).st_ino  # a link, not a copy


def partition_digests(spark, home) -> dict[str, str]:
    """Every partition of the normalized and quarantine tables: its sorted rows' digest."""
    return {
        str(folder.relative_to(home.lake)): checksum(spark, folder)
        for kind in ("normalized", "quarantine")
        for folder in sorted((home.lake / kind).glob("*/ds=*"))
    }


@pytest.mark.parametrize("dataset", ["kuairec", "microlens"])
def test_a_range_of_days_normalizes_as_one_run_per_day(
    spark, home, tiny_raw, tmp_path, monkeypatch, dataset
):
    """A first load's range (`normalize_days`, one job per table) writes the partitions and
    counts a run per day writes: quarantined and undated rows, a day without rows (an empty
    partition with the table's schema), the catalog snapshot (KuaiRec) or the catalog derived
    from the log through each day (MicroLens without its item files)."""
    from jobs.normalize import normalize_days
    from reelflow.paths import Paths

    if dataset == "kuairec":
        raw = tiny_raw[0]
        days = sorted(tiny_raw[1]["rows_per_day"])[:3]
    else:
        from synthetic.microlens import generate_microlens

        raw = tmp_path / "MicroLens-100k"
        days = generate_microlens(raw, scale="tiny", seed=0)["days"][:3]
        for name in ("title_en.csv", "likes_and_views.txt"):
            (raw / f"MicroLens-100k_{name}").unlink()
    gap = "2030-01-01"  # after the log: no row that day (3 days of the log keep it short)
    by_day = {ds: normalize_day(dataset, raw, ds, paths=home)["tables"] for ds in [*days, gap]}
    monkeypatch.setenv("REELFLOW_HOME", str(tmp_path / "range"))
    ranged = Paths.from_env()
    at_once = normalize_days(dataset, raw, [gap, *days], paths=ranged)
    assert list(at_once) == [*days, gap]
    assert {ds: summary["tables"] for ds, summary in at_once.items()} == by_day
    assert by_day[gap]["interactions"]["read"] == 0
    assert partition_digests(spark, ranged) == partition_digests(spark, home)
    if dataset == "kuairec":
        assert sum(t["interactions"]["quarantined"] for t in by_day.values()) > 0
