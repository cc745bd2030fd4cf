"""Point-in-time join of Feast feature views in Spark: Feast's answer without Feast's pandas join.

Feast's file offline store (`get_historical_features`) left-merges the whole entity frame with
every stored row of each view's key in pandas/Dask, and only then filters by time: the
intermediate frame has (entity rows x stored days) rows, which exhausts memory on large entity
frames (feast-dev/feast #3003, #3863). `spark_historical_features` takes the same arguments as
`features.store.historical_features` and resolves everything (views, join keys, TTLs, source
paths, timestamp fields, field mappings) from the Feast registry, then joins in Spark.

Meaning, per entity row and requested view (checked against Feast 0.67's
`feast/infra/offline_stores/dask.py`):
  - the feature row of the same join key(s) with the latest event timestamp `ts` such that
    `entity_ts - ttl <= ts <= entity_ts` (both ends inclusive; no lower bound when the view's
    TTL is unset or zero); a stored row stamped exactly at the entity time is visible;
  - among stored rows with that same timestamp, the latest `created_timestamp_column` wins
    (when the source has one), otherwise any one of them (Feast's pick is arbitrary too);
  - nulls when there is no such row;
  - output columns: the entity frame's columns, then each feature under its own name (or
    `<view>__<feature>` with `full_feature_names=True`), raising Feast's own
    `FeatureNameCollisionError` when two requested features share a name and full names
    are off.
Where Feast's file store differs, on purpose:
  - every entity row is returned, in the caller's order. Feast's drops an entity row whose
    key has stored rows but none in the window (instead of returning nulls), fails outright
    ("Divisions calculation failed ...") when a key has no stored row at all in a source of
    several files, and de-duplicates entity rows on the first view's keys + timestamp, which
    silently drops rows that differ only in other columns (see `_join_as_of` in
    models/ranker_data.py).

How: the entity frame's join keys and timestamp go to Spark once (a parquet file under the
home's tmp/, tagged with the row number); per view, the entity rows and the stored rows' (key,
timestamp) pairs are unioned and a running max of the stored timestamp over each key's rows,
ordered by time with stored rows before entity rows on ties, gives every entity row its
as-of stamp in one sort, whatever the stamps are (daily or not) and with no fan-out. The TTL
check is one comparison; the feature values are then fetched with an equi-join on (key,
stamp). Only the files whose timestamp range (parquet footer statistics) meets
[min entity time - TTL, max entity time] are read, so a join over a week of labels reads a
week of feature partitions. Each view's result is written to parquet and put back in row
order with Arrow on the driver: the wide rows are never shuffled twice or collected through
the JVM.
"""

from __future__ import annotations

import math
import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.feast_repo import feature_store
from reelflow.paths import Paths

ENTITY_TIMESTAMP = "event_timestamp"  # Feast's DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL
# Internal column names; double underscores keep them clear of feature and entity names.
ROW = "__pit_row"
ENTITY_TS = "__pit_entity_ts"  # entity time, ns since the epoch (exact: pandas keeps ns)
FEATURE_TS = "__pit_feature_ts"  # stored row's event time, ns since the epoch
CREATED_TS = "__pit_created_ts"
_T = "__pit_t"
_KIND = "__pit_kind"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class ViewRequest:
    """One feature view as the join needs it, all of it read from the registry."""

    name: str  # the name output columns are prefixed with (the projection's name_to_use)
    view: Any  # feast.FeatureView
    features: list[str]  # feature names in the source (after the field mapping)
    join_keys: list[str]  # entity-frame columns, in the view's entity order
    source_path: str
    timestamp_field: str
    created_column: str | None
    field_mapping: dict[str, str]
    join_key_map: dict[str, str]
    ttl: timedelta | None
    outputs: list[str] = field(default_factory=list)

    @property
    def ttl_ns(self) -> int | None:
        if self.ttl is None or self.ttl.total_seconds() == 0:
            return None  # Feast: no TTL (or zero) means no lower bound
        return int(self.ttl / timedelta(microseconds=1)) * 1000


def _view_request(store, view_name: str, alias: str, features: list[str], key_map) -> ViewRequest:
    from feast import FileSource

    fv = store.get_feature_view(view_name)
    source = fv.batch_source
    if not isinstance(source, FileSource):
        raise TypeError(
            f"{view_name}: the Spark join reads FileSource parquet; got {type(source).__name__}"
        )
    key_map = dict(key_map or {})
    join_keys = [key_map.get(c.name, c.name) for c in fv.entity_columns]
    # Relative source paths are relative to the feature repo, as in Feast.
    path = FileSource.get_uri_for_file_path(repo_path=store.repo_path, uri=source.path)
    return ViewRequest(
        name=alias,
        view=fv,
        features=list(features),
        join_keys=join_keys,
        source_path=str(path),
        timestamp_field=source.timestamp_field,
        created_column=source.created_timestamp_column or None,
        field_mapping=dict(source.field_mapping or {}),
        join_key_map=key_map,
        ttl=fv.ttl,
    )


def resolve_requests(store, features: str | list[str]) -> list[ViewRequest]:
    """The views and features asked for: a feature service's projections, or `view:feature` refs.

    Views come in the order of their first reference, as Feast orders its output columns.
    """
    if isinstance(features, str):
        service = store.get_feature_service(features)
        return [
            _view_request(
                store,
                p.name,
                p.name_to_use(),
                [f.name for f in p.features],
                p.join_key_map,
            )
            for p in service.feature_view_projections
        ]
    grouped: dict[str, list[str]] = {}
    for ref in features:
        view_name, sep, feature = ref.partition(":")
        if not sep or not feature:
            raise ValueError(f"feature reference {ref!r} is not 'view:feature'")
        grouped.setdefault(view_name, []).append(feature)
    return [_view_request(store, v, v, f, None) for v, f in grouped.items()]


def _output_names(requests: list[ViewRequest], full_feature_names: bool) -> None:
    from feast.utils import _validate_feature_refs

    # Feast's own check, so a request Feast refuses is refused here with the same error.
    _validate_feature_refs(
        [f"{r.name}:{f}" for r in requests for f in r.features], full_feature_names
    )
    for r in requests:
        r.outputs = [f"{r.name}__{f}" if full_feature_names else f for f in r.features]


def _to_ns(value) -> int:
    """A parquet statistic or timestamp as ns since the epoch; naive times are UTC (as in Feast)."""
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.value)


def _data_files(root: Path) -> list[Path]:
    """The data files of a parquet table, skipping what Spark and Arrow skip (`_*`, `.*`)."""
    if root.is_file():
        return [root]
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(("_", ".")))
        files += [Path(dirpath, f) for f in sorted(filenames) if not f.startswith(("_", "."))]
    return files


def _time_range(path: Path, column: str) -> tuple[int, int] | None:
    """Min and max of `column` from the file's footer; None when the footer cannot tell."""
    meta = pq.read_metadata(path)
    low = high = None
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        stats = next(
            (
                group.column(c).statistics
                for c in range(group.num_columns)
                if group.column(c).path_in_schema == column
            ),
            None,
        )
        if stats is None or not stats.has_min_max:
            return None
        lo, hi = _to_ns(stats.min), _to_ns(stats.max)
        low = lo if low is None else min(low, lo)
        high = hi if high is None else max(high, hi)
    return None if low is None else (low, high)


def source_files(
    source_path: str | Path, timestamp_field: str, start_ns: int | None, end_ns: int | None
) -> tuple[list[Path], list[Path]]:
    """(files to read, all files): the files whose event times can meet [start, end].

    Decided from each file's footer statistics, so it holds for any partitioning and any
    stamps (not only the lake's daily `ds=` stamps); a file without statistics is read.
    """
    files = _data_files(Path(source_path))
    keep = []
    for f in files:
        span = _time_range(f, timestamp_field)
        if span is None or (
            (end_ns is None or span[0] <= end_ns) and (start_ns is None or span[1] >= start_ns)
        ):
            keep.append(f)
    return keep, files


def _entity_frame(entity_df: pd.DataFrame, requests: list[ViewRequest]):
    """(entity frame as Feast sees it, its timestamp column name)."""
    frame = entity_df.copy()
    # Feast's coerce_tz_aware default (utils.make_df_tzaware): datetime columns become UTC.
    for column in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[column]):
            frame[column] = pd.to_datetime(frame[column], utc=True)
    ts_column = ENTITY_TIMESTAMP
    if ts_column not in frame.columns:
        # Feast's fallback: the one datetime column, if there is exactly one.
        datetimes = frame.select_dtypes(include=["datetime", "datetimetz"]).columns
        if len(datetimes) != 1:
            raise ValueError(
                f"entity_df needs a column named {ENTITY_TIMESTAMP} with the time of each row"
            )
        ts_column = datetimes[0]
    frame[ts_column] = pd.to_datetime(frame[ts_column], utc=True)
    if frame[ts_column].isna().any():
        raise ValueError(f"entity_df.{ts_column} has missing timestamps")
    missing = sorted({k for r in requests for k in r.join_keys} - set(frame.columns))
    if missing:
        raise ValueError(f"entity_df lacks the join key column(s) {missing}")
    clash = sorted({o for r in requests for o in r.outputs} & set(frame.columns))
    if clash:
        raise ValueError(f"entity_df already has column(s) {clash} named like requested features")
    return frame.reset_index(drop=True), ts_column


def _stored_rows(spark, request: ViewRequest, start_ns: int | None, end_ns: int | None):
    """The view's stored rows that can match: join keys, stamps (ns) and features."""
    from pyspark.sql import functions as F

    files, everything = source_files(request.source_path, request.timestamp_field, start_ns, end_ns)
    if not everything:
        raise FileNotFoundError(
            f"{request.view.name}: no parquet files under {request.source_path}"
        )
    # Nothing in range: read one file's schema and no rows, so the types still come through.
    frame = spark.read.option("mergeSchema", "true").parquet(*map(str, files or everything[:1]))
    if not files:
        frame = frame.where(F.lit(False))
    # Feast's renames: the source's field mapping, then the projection's join-key map.
    for renames in (request.field_mapping, request.join_key_map):
        for old, new in renames.items():
            if old in frame.columns and old != new:
                frame = frame.withColumnRenamed(old, new)
    ts = F.col(request.timestamp_field).cast("timestamp")
    if start_ns is not None:
        # Pushed down to parquet; bounds rounded outwards to Spark's microseconds.
        frame = frame.where(ts >= EPOCH + timedelta(microseconds=start_ns // 1000))
    if end_ns is not None:
        frame = frame.where(ts <= EPOCH + timedelta(microseconds=-(-end_ns // 1000)))
    created = (
        [(F.unix_micros(F.col(request.created_column).cast("timestamp")) * 1000).alias(CREATED_TS)]
        if request.created_column
        else []
    )
    return frame.select(
        *request.join_keys,
        (F.unix_micros(ts) * 1000).alias(FEATURE_TS),
        *created,
        *[F.col(f).alias(o) for f, o in zip(request.features, request.outputs, strict=True)],
    )


def _join_view(entities, request: ViewRequest, stored):
    """(row, features...) for every entity row: the as-of stamp per row, then its values."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    keys = request.join_keys
    # One union, one sort per key: stored stamps (kind 0) sort before entity rows (kind 1) of
    # the same time, so a row stamped exactly at the entity time is visible (Feast: ts <= t).
    entity_side = entities.select(
        *keys,
        F.col(ENTITY_TS).alias(_T),
        F.lit(1).alias(_KIND),
        F.col(ROW),
        F.lit(None).cast("long").alias(FEATURE_TS),
    )
    stored_side = stored.select(
        *keys,
        F.col(FEATURE_TS).alias(_T),
        F.lit(0).alias(_KIND),
        F.lit(None).cast("long").alias(ROW),
        F.col(FEATURE_TS),
    )
    so_far = (
        Window.partitionBy(*keys)
        .orderBy(_T, _KIND)
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    latest = F.max(FEATURE_TS).over(so_far)
    ttl_ns = request.ttl_ns
    if ttl_ns is not None:
        # Feast keeps ts >= entity_ts - ttl: a row exactly one TTL old is still fresh.
        latest = F.when(latest >= F.col(_T) - F.lit(ttl_ns), latest)
    as_of = (
        entity_side.unionByName(stored_side)
        .withColumn("__pit_latest", latest)
        .where(F.col(_KIND) == 1)
        .select(ROW, *keys, F.col("__pit_latest").alias(FEATURE_TS))
    )
    # One stored row per (key, stamp), or an entity row would be repeated; the latest
    # created timestamp wins like Feast's sort by created then event time, keep last.
    if request.created_column:
        newest = Window.partitionBy(*keys, FEATURE_TS).orderBy(F.desc(CREATED_TS))
        values = (
            stored.withColumn("__pit_rank", F.row_number().over(newest))
            .where(F.col("__pit_rank") == 1)
            .drop("__pit_rank", CREATED_TS)
        )
    else:
        values = stored.dropDuplicates([*keys, FEATURE_TS])
    return as_of.join(values, [*keys, FEATURE_TS], "left").select(ROW, *request.outputs)


def _in_row_order(table: pa.Table, rows: int) -> pa.Table:
    """The view's result put back in entity order (row numbers are 0..rows-1, each once)."""
    if table.num_rows != rows:
        raise AssertionError(f"point-in-time join returned {table.num_rows} rows for {rows}")
    position = np.empty(rows, dtype=np.int64)
    position[table.column(ROW).to_numpy()] = np.arange(rows, dtype=np.int64)
    return table.take(pa.array(position)).drop_columns([ROW])


def spark_historical_features(
    entity_df: pd.DataFrame,
    features: str | list[str],
    paths: Paths | None = None,
    full_feature_names: bool = False,
) -> pd.DataFrame:
    """Point-in-time join in Spark; the meaning of `features.store.historical_features`.

    `features` is a feature service name or a list of `view:feature` references. Returns
    every entity row, in order, with its columns, then the requested features (see the
    module docstring for the exact semantics and where Feast's file store differs).
    """
    from lake.spark import spark_session
    from reelflow.config import load_config

    paths = paths or Paths.from_env()
    store = feature_store(paths)
    requests = resolve_requests(store, features)
    _output_names(requests, full_feature_names)
    frame, ts_column = _entity_frame(entity_df, requests)
    rows = len(frame)
    entity_ns = frame[ts_column].dt.as_unit("ns").astype("int64").to_numpy()
    first, last = (int(entity_ns.min()), int(entity_ns.max())) if rows else (None, None)

    spark = spark_session(load_config().spark)
    # Scratch under the home: the driver and Spark's executors both see it (the lake's rule).
    scratch = paths.home / "tmp" / f"pit_join-{uuid.uuid4().hex}"
    scratch.mkdir(parents=True)
    try:
        keys = list(dict.fromkeys(k for r in requests for k in r.join_keys))
        narrow = pa.table(
            {
                ROW: pa.array(np.arange(rows, dtype=np.int64)),
                **{k: pa.array(frame[k].to_numpy()) for k in keys},
                ENTITY_TS: pa.array(entity_ns, pa.int64()),
            }
        )
        pq.write_table(narrow, scratch / "entities.parquet")
        entities = spark.read.parquet(str(scratch / "entities.parquet"))
        parts = [frame]
        for i, request in enumerate(requests):
            start = None if first is None or request.ttl_ns is None else first - request.ttl_ns
            stored = _stored_rows(spark, request, start, last)
            out = scratch / f"view_{i}"
            _join_view(entities, request, stored).write.parquet(str(out))
            table = _in_row_order(pq.read_table(out), rows)
            # Arrow frees each column once converted: the driver never holds two copies.
            parts.append(table.to_pandas(self_destruct=True, split_blocks=True))
            del table
        return pd.concat(parts, axis=1, copy=False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def same_value(a, b, rel_tol: float = 0.0) -> bool:
    """Equal feature values, nulls equal to nulls, arrays element-wise: how the tests and
    bench/training_set.py compare this join's answer with Feast's. `rel_tol` lets floats differ
    by rounding (sums of daily sums against one sum: tests/test_partials.py)."""
    a_null = a is None or (np.isscalar(a) and pd.isna(a))
    b_null = b is None or (np.isscalar(b) and pd.isna(b))
    if a_null or b_null:
        return a_null and b_null
    if isinstance(a, np.ndarray | list) or isinstance(b, np.ndarray | list):
        return len(a) == len(b) and all(
            same_value(x, y, rel_tol) for x, y in zip(a, b, strict=True)
        )
    if isinstance(a, float | np.floating) or isinstance(b, float | np.floating):
        return math.isclose(float(a), float(b), rel_tol=rel_tol, abs_tol=rel_tol / 10)
    return a == b
