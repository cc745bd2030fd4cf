"""The lake's tables read with pyarrow, without Spark: what training, the export and the
benchmarks read (the Spark jobs read with their session). Every table is hive-partitioned by
day (`lake.partitions`); a reader picks days by the `ds` partition, so only those files open.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow.dataset as pads

from lake.partitions import available_days
from lake.schema import INTERACTIONS
from reelflow.paths import Paths

# What the sequence models read of each view: who, what, when.
VIEW_COLUMNS = ("user_id", "video_id", "event_ts")


def _dataset(table_dir: Path | str) -> pads.Dataset:
    return pads.dataset(str(table_dir), format="parquet", partitioning="hive")


def read_partitions(table_dir: Path | str, days: list[str] | None = None) -> pd.DataFrame:
    """A lake table (all partitions, or the given days) as pandas with its `ds` column."""
    flt = None if days is None else pads.field("ds").isin(days)
    frame = _dataset(table_dir).to_table(filter=flt).to_pandas()
    frame["ds"] = frame["ds"].astype(str)
    return frame


def read_interactions(
    paths: Paths, through_ds: str | None = None, columns: Sequence[str] = VIEW_COLUMNS
) -> pd.DataFrame:
    """`columns` of the normalized interactions of the days through `through_ds` (every day
    when None): a backfill for day D never sees later days."""
    table = paths.normalized(INTERACTIONS)
    if not available_days(table):
        raise FileNotFoundError(f"no normalized interactions under {table}: run normalize first")
    flt = None if through_ds is None else pads.field("ds") <= through_ds
    return _dataset(table).to_table(columns=list(columns), filter=flt).to_pandas()
