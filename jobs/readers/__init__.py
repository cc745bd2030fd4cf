"""Native-format readers, one module per dataset. Every dataset quirk lives in its reader.

Each reader module defines:

    DATASET: str
    def detect(raw_dir: Path) -> Release
        Resolves the folder (the release folder as unpacked, or its data/ folder), tells the
        variant from the files present and returns them; a folder that matches nothing
        raises InputFileError listing the files expected.
    def read_tables(spark, release: Release, quality: QualityConfig) -> dict[str, DataFrame]
        Unified table name -> rows. Each frame holds the unified columns the dataset has
        (features/schema.py, typed), the native values as `raw_<column>` strings (what
        quarantine keeps), `quarantine_reason` (null for a valid row, else the first rule the
        row breaks; every copy of an exact duplicate row after the first is "exact duplicate
        row"), and for day-partitioned tables (`DAILY_TABLES`) a `ds` column: the UTC day,
        null when the row's time cannot be read.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

READERS = {
    "kuairec": "jobs.readers.kuairec",
    "kuairand": "jobs.readers.kuairand",
    "microlens": "jobs.readers.microlens",
    "events": "jobs.readers.events",
}
DAILY_TABLES = ("interactions", "video_daily_stats")


@dataclass(frozen=True)
class Release:
    """One dataset release as found on disk."""

    dataset: str
    variant: str
    root: Path  # the folder holding the files
    files: dict[str, Path] = field(default_factory=dict)  # logical name -> file(s) on disk
    parts: dict[str, list[Path]] = field(default_factory=dict)  # logical name -> split files
    options: dict = field(default_factory=dict)  # reader-specific settings (events mapping)

    def all_files(self) -> list[Path]:
        found = list(self.files.values()) + [p for ps in self.parts.values() for p in ps]
        return sorted(set(found))


def get_reader(dataset: str) -> ModuleType:
    if dataset not in READERS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {sorted(READERS)}")
    return importlib.import_module(READERS[dataset])


def locate_release(raw_dir: Path, matches, dataset_title: str, expected: str) -> tuple[Path, list]:
    """`(folder, matches(folder))` for `raw_dir` or else its `data/`; a folder where neither
    holds a file of the release fails with the files expected and the ones found."""
    from jobs.readers.native import InputFileError

    raw_dir = Path(raw_dir)
    for folder in (raw_dir, raw_dir / "data"):
        if found := matches(folder):
            return folder, found
    present = sorted(p.name for p in raw_dir.iterdir())[:20] if raw_dir.is_dir() else []
    raise InputFileError(raw_dir, f"not a {dataset_title} release: {expected}; found {present}")


def data_folder(raw_dir: Path, marker_names: tuple[str, ...]) -> Path:
    """`raw_dir` or its `data/` subfolder, whichever holds one of the marker files."""
    raw_dir = Path(raw_dir)
    for folder in (raw_dir, raw_dir / "data"):
        if any((folder / name).is_file() for name in marker_names):
            return folder
    return raw_dir
