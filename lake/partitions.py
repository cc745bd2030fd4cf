"""Day partitions: every table of the lake (and every per-day folder of a home) holds one
`ds=YYYY-MM-DD` folder per UTC day. This module is the only place such a folder name is made
(`partition`, `partition_name`) or read back into its day (`day_of`, `available_days`).

Standard library only: the DAG files import it at parse time.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

# The quarantine partition of rows whose time cannot be read at all.
UNDATED = "undated"
# Where Spark's `partitionBy("ds")` puts rows whose ds is null (Hive's name for a null value).
NULL_DAY = "__HIVE_DEFAULT_PARTITION__"

_PREFIX = "ds="
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def check_day(ds: object, what: str = "ds") -> str:
    """DS itself when it is a real UTC calendar day written YYYY-MM-DD; else a ValueError that
    names the value. Every day that reaches a path or a job goes through here."""
    if isinstance(ds, str) and _DAY.fullmatch(ds):
        try:
            date.fromisoformat(ds)
            return ds
        except ValueError:
            pass
    raise ValueError(f"{what} {ds!r} is not a UTC day: expected a real date YYYY-MM-DD")


def partition_name(ds: str) -> str:
    """`ds=DS`, the folder name of day DS: DS must be a real day YYYY-MM-DD (or one of the two
    partitions of rows without a day, `UNDATED` and `NULL_DAY`), so no value can leave the
    table."""
    if ds not in (UNDATED, NULL_DAY):
        check_day(ds)
    return f"{_PREFIX}{ds}"


def partition(table_dir: Path, ds: str) -> Path:
    """`table_dir/ds=DS`, the only way a day partition's path is made."""
    return Path(table_dir) / partition_name(ds)


def day_of(partition_dir: Path | str) -> str | None:
    """The day of a partition folder `…/ds=YYYY-MM-DD`; None for any other folder (the undated
    and null partitions, staging folders)."""
    name = Path(partition_dir).name
    if not name.startswith(_PREFIX):
        return None
    try:
        return check_day(name[len(_PREFIX) :])
    except ValueError:
        return None


def available_days(table_dir: Path | str) -> list[str]:
    """The days a table holds a partition of, oldest first."""
    folders = Path(table_dir).glob(f"{_PREFIX}*")
    return sorted(day for p in folders if p.is_dir() and (day := day_of(p)) is not None)


def days_back(ds: str, n: int) -> list[str]:
    """`ds` and the n-1 days before it, oldest first."""
    end = date.fromisoformat(ds)
    return [(end - timedelta(days=i)).isoformat() for i in range(n - 1, -1, -1)]
