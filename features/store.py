"""Operations on the Feast store: apply, materialize a day, training sets, online lookups.

The declarations live in `feature_repo/`; this module only drives them, on the store that
`features/feast_repo.py` opens (which store: see there).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from features.feast_repo import feature_store
from features.online_sqlite import bulk_write, can_bulk_write
from lake.partitions import days_back
from lake.schema import feature_time
from reelflow.paths import FEATURE_REPO, Paths
from reelflow.state import write_text

# The settings that decide where `feast apply` writes: a change of any re-applies.
STORE_SETTINGS = ("FEAST_FS_YAML_FILE_PATH", "REELFLOW_FEAST_REGISTRY_URL", "REELFLOW_FEAST_REDIS")
# Entities written online at a time. Feast turns a whole frame into protobuf values before
# writing (one object per entity and feature): KuaiRand-1K's 4.37M-video day, in one call,
# passed 13 GiB and was killed. The memory of a write is bounded by this.
ONLINE_WRITE_ROWS = 50_000


@contextmanager
def _home_lock(paths: Paths, name: str) -> Iterator[None]:
    """One holder at a time per home: daily runs and backfills run side by side."""
    paths.feast.mkdir(parents=True, exist_ok=True)
    with open(paths.feast / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _definitions_digest(paths: Paths) -> str:
    digest = hashlib.sha256(str(paths.home).encode())
    for name in STORE_SETTINGS:
        digest.update(f"{name}={os.environ.get(name, '')}".encode())
    for path in sorted(FEATURE_REPO.glob("*.py")) + sorted(FEATURE_REPO.glob("*.yaml")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def apply_if_changed(paths: Paths | None = None) -> dict[str, Any]:
    """`feast apply` when the repo's definitions changed since the last apply of this home.

    Daily runs (and backfills running side by side) all call this; a file lock makes one of
    them apply while the others wait and then find nothing to do.
    """
    paths = paths or Paths.from_env()
    marker = paths.feast / "applied.sha256"
    with _home_lock(paths, "apply"):
        digest = _definitions_digest(paths)
        if marker.exists() and marker.read_text() == digest:
            return {"applied": False, "digest": digest}
        feast_cli = Path(sys.executable).parent / "feast"
        result = subprocess.run(
            [str(feast_cli), "--chdir", str(FEATURE_REPO), "apply"],
            capture_output=True,
            text=True,
            env={**os.environ, "REELFLOW_HOME": str(paths.home)},
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"feast apply failed in {FEATURE_REPO}:\n{result.stdout}\n{result.stderr}"
            )
        write_text(marker, digest)  # atomic: a crash never leaves half a digest
        return {"applied": True, "digest": digest}


def materialize_day(ds: str, views: list[str], paths: Paths | None = None) -> dict[str, Any]:
    """Loads the features computed from day `ds` (stamped `feature_time(ds)`) online."""
    return materialize_days([ds], views, paths)[ds]


def materialize_days(
    days: list[str], views: list[str], paths: Paths | None = None
) -> dict[str, dict[str, Any]]:
    """Loads the features computed from `days` (consecutive runs' days; stamped
    feature_time(first) .. feature_time(last)) online, as a run per day leaves the store.

    Online stores keep one value per entity and SQLite's overwrites blindly, so a backfill of
    an older day must not simply write that day: it re-materializes from the first day through
    the newest interval already materialized, and Feast keeps the latest row per entity within
    that range. Newer online values stay; entities only the older days know get their values.
    When nothing newer is online, the latest row of each entity over the days' partitions is
    written once (a first load of many days writes each entity once, not once a day).
    """
    paths = paths or Paths.from_env()
    days = sorted(set(days))
    start = feature_time(days[0])
    end = feature_time(days[-1]) + timedelta(days=1)
    written = {}
    with _home_lock(paths, "materialize"):
        store = feature_store(paths)
        for name in views:
            online_until = materialized_until(store, name)
            stop = max(end, online_until or end)
            if stop == end:
                # Nothing newer is online: the latest row of each entity in [start, end) is in
                # the days' partitions, read alone, because Feast's file offline store reads
                # every partition of the table to select one day's rows (measured: 6 s on day
                # 2, 13 s on day 14 at 1/8 of KuaiRec, growing with the history, not the day).
                rows = _latest_rows(store, name, days, start, end)
                fv = store.get_feature_view(name)
                counts = None
                if can_bulk_write(store, fv):
                    # When the day before is the newest online, only the values that changed
                    # since go in (most of a large catalog's do not change from day to day).
                    before = start - timedelta(days=1)
                    previous = (
                        _day_rows(store, name, days_back(days[0], 2)[0], before, start)
                        if online_until == start
                        else None
                    )
                    counts = bulk_write(store, fv, rows, ONLINE_WRITE_ROWS, previous)
                else:
                    for first in range(0, len(rows), ONLINE_WRITE_ROWS):
                        chunk = rows.iloc[first : first + ONLINE_WRITE_ROWS]
                        store.write_to_online_store(name, chunk)
                store.registry.apply_materialization(fv, store.project, start, end)
                partitions = "day partition" if len(days) == 1 else f"{len(days)} day partitions"
                how = f"{partitions} ({len(rows)} rows{_values_note(counts)})"
            else:
                store.materialize(start_date=start, end_date=stop, feature_views=[name])
                how = "feast materialize"
            written[name] = {"start": start.isoformat(), "end": stop.isoformat(), "from": how}
    span = {"range": [days[0], days[-1]]} if len(days) > 1 else {}
    return {ds: {"ds": ds, "views": written} | span for ds in days}


def _latest_rows(store, name: str, days: list[str], start: datetime, end: datetime) -> pd.DataFrame:
    """The latest row per entity of view NAME over the days' source partitions, newest day
    first: an older day adds only the entities no newer day has (one day in memory at a time
    besides the result, which a catalog of millions of videos needs)."""
    fv = store.get_feature_view(name)
    keys = [column.name for column in fv.entity_columns]
    kept: list[pd.DataFrame] = []
    seen: pd.Index | None = None
    for ds in sorted(days, reverse=True):
        rows = _day_rows(store, name, ds, start, end)
        if rows.empty:
            continue
        index = pd.MultiIndex.from_frame(rows[keys]) if len(keys) > 1 else pd.Index(rows[keys[0]])
        if seen is not None:
            new = ~index.isin(seen)
            rows, index = rows[new], index[new]
        kept.append(rows)
        seen = index if seen is None else seen.append(index)
    if not kept:
        return pd.DataFrame()
    return pd.concat(kept[::-1], ignore_index=True) if len(kept) > 1 else kept[0]


def _values_note(counts: dict[str, int] | None) -> str:
    if counts is None:
        return ""
    return f", {counts['values']} values written, {counts['unchanged']} unchanged"


def _day_rows(store, name: str, ds: str, start: datetime, end: datetime) -> pd.DataFrame:
    """The rows of view NAME's source partition of day DS stamped in [start, end), the latest
    per entity (what `materialize(start, end)` selects), in the source's own columns."""
    from lake.partitions import partition

    fv = store.get_feature_view(name)
    source = fv.batch_source
    folder = partition(Path(source.path), ds)
    frame = pd.read_parquet(folder) if folder.exists() else pd.DataFrame()
    if frame.empty:
        return frame
    stamps = pd.to_datetime(frame[source.timestamp_field], utc=True)
    frame = frame[(stamps >= start) & (stamps < end)]
    keys = [column.name for column in fv.entity_columns]
    return frame.sort_values(source.timestamp_field).drop_duplicates(keys, keep="last")


def materialized_until(store, view: str) -> datetime | None:
    """The end of the newest interval materialized for `view`, from the registry."""
    fv = store.registry.get_feature_view(view, store.project, allow_cache=False)
    ends = [end for _, end in fv.materialization_intervals]
    if not ends:
        return None
    newest = max(ends)
    return newest if newest.tzinfo else newest.replace(tzinfo=UTC)


def join_engine(rows: int, engine: str | None = None) -> str:
    """The point-in-time join engine for an entity frame of ROWS rows: `engine`, by default
    config `features.training_join`; "auto" is Spark above `features.training_join_spark_rows`
    and Feast up to it (its pandas join is quick on small frames, and starts no JVM)."""
    from reelflow.config import load_config

    config = load_config().features
    engine = engine or config.training_join
    if engine == "auto":
        return "spark" if rows > config.training_join_spark_rows else "feast"
    if engine not in ("spark", "feast"):
        raise ValueError(f"training join engine must be 'auto', 'spark' or 'feast', not {engine!r}")
    return engine


def historical_features(
    entity_df: pd.DataFrame,
    features: str | list[str],
    paths: Paths | None = None,
    engine: str | None = None,
    full_feature_names: bool = False,
) -> pd.DataFrame:
    """Point-in-time join: each entity row gets the feature values as of its event_timestamp.

    `features` is a feature service name or a list of `view:feature` references. `engine`
    (default: config `features.training_join`): "feast", Feast's file offline store (pandas:
    drops rows with nothing in a view's TTL window, de-duplicates on the first view's keys and
    time, and runs out of time and memory on large frames), "spark" (features/pit_join.py:
    the same answer for every entity row, in order, with nulls where a view has nothing), or
    "auto": `join_engine` picks one by the frame's size.
    """
    engine = join_engine(len(entity_df), engine)
    if engine == "spark":
        from features.pit_join import spark_historical_features

        return spark_historical_features(entity_df, features, paths, full_feature_names)
    store = feature_store(paths)
    refs = store.get_feature_service(features) if isinstance(features, str) else features
    return store.get_historical_features(
        entity_df=entity_df, features=refs, full_feature_names=full_feature_names
    ).to_df()


def online_features(
    entity_rows: list[dict[str, Any]], features: list[str] | str, paths: Paths | None = None
) -> dict[str, list]:
    """Online values of `features`: feature refs, or the name of a feature service (its
    features then come in the order the service declares them, after the entity keys)."""
    store = feature_store(paths)
    if not isinstance(features, str):
        return store.get_online_features(features=features, entity_rows=entity_rows).to_dict()
    service = store.get_feature_service(features)
    got = store.get_online_features(features=service, entity_rows=entity_rows).to_dict()
    declared = [f.name for p in service.feature_view_projections for f in p.features]
    return {**{k: v for k, v in got.items() if k not in declared}, **{n: got[n] for n in declared}}
