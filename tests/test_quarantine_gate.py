"""Quarantined rows are counted, shared out and gated (issue 12 row 12 and the share gate).

A file whose every row breaks a rule used to normalize to 0 rows with exit 0 and no word of
it: normalize now reports read / written / quarantined and the quarantine share per table,
warns when a table day keeps none of the rows it read, and the validate gate fails a day
whose quarantine share of a table exceeds `quality.max_quarantine_share`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from jobs.normalize import normalize_day
from jobs.readers.events import SPEC_NAME

DAY = "2024-03-01"
SPEC = """
format = "csv"
files = ["log.csv"]

[mapping]
user_id = "user"
video_id = "item"
event_ts = "timestamp"

[time]
unit = "iso8601"
"""


def broken_log(folder: Path, n: int = 40) -> Path:
    """A log whose every row breaks a rule: user ids that are no integers."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["user,item,timestamp"] + [
        f"u{i},{i % 7},{DAY}T{i % 24:02d}:{i % 60:02d}:00Z" for i in range(n)
    ]
    (folder / "log.csv").write_text("\n".join(lines) + "\n")
    (folder / SPEC_NAME).write_text(SPEC)
    return folder


@pytest.mark.xfail(strict=True, reason="issue 12 row 12")
def test_a_day_with_every_row_quarantined_is_reported_and_warned(spark, home, tmp_path, caplog):
    raw = broken_log(tmp_path / "raw", n=40)
    with caplog.at_level(logging.WARNING, logger="reelflow.normalize"):
        summary = normalize_day("events", raw, DAY, paths=home)
    counts = summary["tables"]["interactions"]
    assert (counts["read"], counts["written"], counts["quarantined"]) == (40, 0, 40)
    assert counts["quarantine_share"] == 1.0
    assert counts["duplicates"] == 0
    assert sum(counts["reasons"].values()) == 40
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "reelflow.normalize" and r.levelno == logging.WARNING
    ]
    assert any("interactions" in m and "0 of 40" in m for m in warnings), warnings
