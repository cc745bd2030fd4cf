"""Atomic partition commits: old or new content, never half, never staging inside a table."""

from pathlib import Path

import pytest

from lake.commit import recover, staged_partition


def write(folder: Path, text: str) -> None:
    folder.mkdir(parents=True)
    (folder / "part-0").write_text(text)


def test_rerun_replaces_the_partition_whole(tmp_path):
    table = tmp_path / "lake" / "t"
    for text in ("first", "second"):
        with staged_partition(table, "ds=2020-07-05") as staging:
            write(staging, text)
    assert (table / "ds=2020-07-05" / "part-0").read_text() == "second"
    assert [p.name for p in table.iterdir()] == ["ds=2020-07-05"]
    assert not any((tmp_path / "lake" / "_staging").glob("**/part-0"))


def test_a_failed_write_leaves_the_old_partition(tmp_path):
    table = tmp_path / "lake" / "t"
    with staged_partition(table, "ds=2020-07-05") as staging:
        write(staging, "good")
    with pytest.raises(RuntimeError), staged_partition(table, "ds=2020-07-05") as staging:
        write(staging, "half")
        raise RuntimeError("crash while writing")
    assert (table / "ds=2020-07-05" / "part-0").read_text() == "good"


def test_recovery_restores_a_partition_moved_out_by_a_crashed_swap(tmp_path):
    table = tmp_path / "lake" / "t"
    with staged_partition(table, "ds=2020-07-05") as staging:
        write(staging, "old")
    # Crash between the two renames: the old copy sits in the trash, the new one in staging.
    trash = tmp_path / "lake" / "_trash" / "t" / "ds=2020-07-05.abc"
    trash.parent.mkdir(parents=True)
    (table / "ds=2020-07-05").rename(trash)
    write(tmp_path / "lake" / "_staging" / "t" / "ds=2020-07-05.abc", "new")
    recover(table)
    assert (table / "ds=2020-07-05" / "part-0").read_text() == "old"
    assert not any((tmp_path / "lake" / "_staging" / "t").iterdir())


def test_a_writer_leaves_other_partitions_staging_alone(tmp_path):
    table = tmp_path / "lake" / "t"
    other = tmp_path / "lake" / "_staging" / "t" / "ds=2020-07-06.def"
    write(other, "another day being written right now")
    with staged_partition(table, "ds=2020-07-05") as staging:
        write(staging, "day 5")
    assert (other / "part-0").exists()
