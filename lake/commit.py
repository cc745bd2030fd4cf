"""Atomic, idempotent partition commits on a local (POSIX) lake.

A partition is written to a staging folder outside its table, then swapped in with two
renames: the old partition moves to a trash folder, the staged one moves into place. A crash
between the renames leaves the old copy in the trash; `recover` (run first by every writer)
puts it back, so a reader sees the old or the new partition, never a half-written one, and
never a staging folder inside a table. Re-running a day replaces the partition whole, so the
content is the same and nothing is duplicated.

On object storage renames are not atomic: there a table format (Iceberg, Delta) takes over.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _side_dirs(table_dir: Path) -> tuple[Path, Path]:
    lake_root = table_dir.parent
    return lake_root / "_staging" / table_dir.name, lake_root / "_trash" / table_dir.name


def recover(table_dir: Path, partition: str | None = None) -> None:
    """Restores partitions a crashed swap left in the trash and drops stale staging folders.

    With `partition`, only that partition's leftovers are touched, so writers of other days
    of the same table (a parallel backfill) keep their staging folders.
    """
    staging_root, trash_root = _side_dirs(table_dir)

    def ours(entry: Path) -> bool:
        return partition is None or entry.name.rsplit(".", 1)[0] == partition

    if trash_root.exists():
        for trashed in sorted(trash_root.iterdir()):
            if not ours(trashed):
                continue
            partition_name = trashed.name.rsplit(".", 1)[0]
            target = table_dir / partition_name
            if target.exists():
                shutil.rmtree(trashed)
            else:
                table_dir.mkdir(parents=True, exist_ok=True)
                trashed.rename(target)
    if staging_root.exists():
        for staged in staging_root.iterdir():
            if ours(staged):
                shutil.rmtree(staged)


@contextmanager
def staged_partition(table_dir: Path, partition_name: str) -> Iterator[Path]:
    """Yields an empty staging path; on clean exit swaps it in as `table_dir/partition_name`."""
    table_dir = Path(table_dir)
    recover(table_dir, partition_name)
    staging_root, trash_root = _side_dirs(table_dir)
    token = uuid.uuid4().hex[:12]
    staging = staging_root / f"{partition_name}.{token}"
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield staging
        _crash_point("while_writing")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not staging.exists():
        raise RuntimeError(
            f"nothing was written to the staging folder of {table_dir}/{partition_name}"
        )
    swap_in(table_dir, partition_name, staging, trash_root / f"{partition_name}.{token}")


def _crash_point(name: str) -> None:
    """Fault injection for the crash tests: REELFLOW_CRASH_AT=<name> kills the process here,
    with no cleanup at all, as a SIGKILL or a lost machine would."""
    if os.environ.get("REELFLOW_CRASH_AT") == name:
        os._exit(137)


def swap_in(table_dir: Path, partition_name: str, staging: Path, trash: Path) -> None:
    target = table_dir / partition_name
    table_dir.mkdir(parents=True, exist_ok=True)
    _crash_point("before_swap")
    if target.exists():
        trash.parent.mkdir(parents=True, exist_ok=True)
        target.rename(trash)
    _crash_point("between_renames")
    staging.rename(target)
    _crash_point("after_swap")
    if trash.exists():
        shutil.rmtree(trash)


def write_days(frame, table_dir: Path, days: list[str], empty=None) -> None:
    """Commits day D's rows of the Spark `frame` (a `ds` column) as partition ds=D of the
    table, each as `staged_partition` commits one, for every D of `days`, from one partitioned
    write (one file a day); a day without rows gets a copy of one empty file of the table's
    schema (`empty`, no rows; by default `frame`'s own)."""
    from lake.partitions import partition_name

    scratch = table_dir.parent / "_staging" / f"{table_dir.name}.days.{uuid.uuid4().hex[:12]}"
    try:
        if frame is not None:
            frame.repartition("ds").write.partitionBy("ds").parquet(str(scratch / "days"))
        for ds in days:
            written = scratch / "days" / partition_name(ds)
            with staged_partition(table_dir, partition_name(ds)) as staging:
                if written.exists():
                    written.rename(staging)
                    continue
                if not (scratch / "empty").exists():
                    if empty is None:
                        empty = frame.where("false").drop("ds")
                    empty.coalesce(1).write.parquet(str(scratch / "empty"))
                shutil.copytree(scratch / "empty", staging)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
