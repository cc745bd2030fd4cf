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

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _side_dirs(table_dir: Path) -> tuple[Path, Path]:
    lake_root = table_dir.parent
    return lake_root / "_staging" / table_dir.name, lake_root / "_trash" / table_dir.name


def recover(table_dir: Path) -> None:
    """Restores partitions a crashed swap left in the trash and drops stale staging folders."""
    staging_root, trash_root = _side_dirs(table_dir)
    if trash_root.exists():
        for trashed in sorted(trash_root.iterdir()):
            partition_name = trashed.name.split(".", 1)[0]
            target = table_dir / partition_name
            if target.exists():
                shutil.rmtree(trashed)
            else:
                table_dir.mkdir(parents=True, exist_ok=True)
                trashed.rename(target)
    if staging_root.exists():
        shutil.rmtree(staging_root)


@contextmanager
def staged_partition(table_dir: Path, partition_name: str) -> Iterator[Path]:
    """Yields an empty staging path; on clean exit swaps it in as `table_dir/partition_name`."""
    table_dir = Path(table_dir)
    recover(table_dir)
    staging_root, trash_root = _side_dirs(table_dir)
    token = uuid.uuid4().hex[:12]
    staging = staging_root / f"{partition_name}.{token}"
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not staging.exists():
        raise RuntimeError(
            f"nothing was written to the staging folder of {table_dir}/{partition_name}"
        )
    swap_in(table_dir, partition_name, staging, trash_root / f"{partition_name}.{token}")


def swap_in(table_dir: Path, partition_name: str, staging: Path, trash: Path) -> None:
    target = table_dir / partition_name
    table_dir.mkdir(parents=True, exist_ok=True)
    if target.exists():
        trash.parent.mkdir(parents=True, exist_ok=True)
        target.rename(trash)
    staging.rename(target)
    if trash.exists():
        shutil.rmtree(trash)
