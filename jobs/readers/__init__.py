"""Native-format readers, one module per dataset. Every dataset quirk lives in its reader.

Each reader module defines:

    DATASET: str
    def detect(raw_dir: Path) -> Release
        Resolves the folder (the release folder as unpacked, or its data/ folder), tells the
        variant from the files present and returns them; a folder that matches nothing
        raises InputFileError listing the files expected.
    def check(release: Release) -> None
        Cheap checks of every file read_tables will read (exists, not empty, header holds the
        columns, at least one row after it; `native.check_file`), raising InputFileError that
        names the file. land() calls it before any Spark session or JVM starts, so a wrong
        header fails in about a second. A reader without `check` is skipped (getattr).
    def read_tables(spark, release: Release, quality: QualityConfig) -> dict[str, DataFrame]
        Unified table name -> rows. Each frame holds the unified columns the dataset has
        (lake/schema.py, typed), the native values as `raw_<column>` strings (what
        quarantine keeps), `quarantine_reason` (null for a valid row, else the first rule the
        row breaks; every copy of an exact duplicate row after the first is "exact duplicate
        row"), and for day-partitioned tables (`DAILY_TABLES`) a `ds` column: the UTC day,
        null when the row's time cannot be read.

Row rules (the shared helpers in jobs/readers/native.py, one copy for every reader):

  * a field is trimmed of ASCII spaces only (Spark's trim); an empty or absent field is missing;
  * an id (`integer_id`) fully matches `[+-]?[0-9]+` and fits a signed 64-bit integer
    (negative ids are valid: hashed ids); else "<col> missing or not an integer";
  * a number (`finite_number`) fully matches `[+-]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][+-]?[0-9]+)?`
    (NaN, Infinity, "1d", "0x1p3", "1_0" are not numbers), else "<col> missing or not a
    number"; a value that becomes a long (ms durations, epoch times) is the double's exact
    value (times 1000 for seconds) rounded HALF_UP (`rounded_long`, `scaled_long`) and must
    fit a signed 64-bit integer, else "<col> out of range" (so is a non-finite one, "1e400");
    `number_rules` gives these rules in order, "negative <col>" between them when asked,
    on the columns `with_numbers` parsed once per row (inline, the repeated parse ran the
    JVM out of its JIT limit: 7.6x slower on KuaiRec's log);
  * a flag is integer text equal to 0 or 1, else "<col> not 0 or 1";
  * plausible time (`time_rules`): before `quality.min_event_time` 00:00 UTC ->
    "<col> before <min_event_time> (quality.min_event_time)"; later than the landing clock
    plus `quality.max_future_days` -> "<col> after <cutoff, ISO ms Z> (quality.max_future_days)".
    The landing clock is `landing_now_ms()`: pinned by land() for a whole landing (its `now_ms`
    argument, else $REELFLOW_NOW, an ISO time, UTC without a zone, else the wall clock);
  * a log read by `read_log_as_strings` (Arrow engine) carries `_corrupt_record` (the text of
    a row with the wrong number of fields) and `_bad_line` ("invalid UTF-8 on line N", N from
    1 with the header): `malformed_rules` makes them the first two rules, the invalid line
    first, "malformed row: wrong number of fields" second;
  * the first rule broken is the reason; "exact duplicate row" comes last.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from reelflow.names import DATASETS

# Dataset -> its reader module: every dataset has one, named after it.
READERS = {dataset: f"jobs.readers.{dataset}" for dataset in DATASETS}
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
