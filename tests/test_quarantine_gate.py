"""Quarantined rows are counted, shared out and gated (issue 12 row 12 and the share gate).

A file whose every row breaks a rule used to normalize to 0 rows with exit 0 and no word of
it: normalize now reports read / written / quarantined and the quarantine share per table,
warns when a table day keeps none of the rows it read, and the validate gate fails a day
whose quarantine share of a table exceeds `quality.max_quarantine_share`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from jobs.normalize import normalize_day
from jobs.readers.events import SPEC_NAME
from jobs.validate import ValidationFailed, validate_day
from reelflow.config import load_config
from tests.test_validate import DAY as CLEAN_DAY
from tests.test_validate import clean_rows, write_day

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


# ----------------------------------------------------------------------------- the share gate


def write_quarantine(spark, home, ds: str, reasons: dict[str, int]) -> None:
    rows = [(f"raw{i}", reason) for reason, n in reasons.items() for i in range(n)]
    spark.createDataFrame(rows, "raw_user string, quarantine_reason string").write.mode(
        "overwrite"
    ).parquet(str(home.quarantine("interactions") / f"ds={ds}"))


def test_a_share_under_the_limit_passes_and_exact_duplicates_count_apart(spark, home):
    # 48 rows written, 2 broken (2 / 50 = 4%) and 20 exact duplicates, which would make
    # 22 / 70 = 31% if they counted: real KuaiRand logs hold such copies.
    write_day(spark, home, clean_rows())
    write_quarantine(spark, home, CLEAN_DAY, {"bad user": 2, "exact duplicate row": 20})
    result = validate_day(CLEAN_DAY, paths=home)
    gate = result["quarantine"]["interactions"]
    assert result["success"] and gate["success"]
    assert (gate["read"], gate["written"], gate["quarantined"]) == (70, 48, 22)
    assert gate["duplicates"] == 20 and gate["quarantine_share"] == pytest.approx(2 / 50)
    kept = json.loads((home.validation("interactions") / f"ds={CLEAN_DAY}.json").read_text())
    assert kept["quarantine"]["quarantine_share"] == pytest.approx(2 / 50)


def test_a_share_over_the_limit_fails_naming_table_share_and_top_reasons(spark, home):
    # 5 broken of 53 rows: 9.4% > 5%.
    write_day(spark, home, clean_rows())
    write_quarantine(
        spark, home, CLEAN_DAY, {"bad user": 4, "bad time": 1, "exact duplicate row": 3}
    )
    with pytest.raises(ValidationFailed) as failure:
        validate_day(CLEAN_DAY, paths=home)
    message = str(failure.value)
    assert "interactions: quarantine share 9.4%" in message
    assert "exceeds quality.max_quarantine_share 5.0%" in message
    assert "top reasons: 'bad user' x4, 'bad time' x1" in message
    assert "exact duplicate row' x" not in message  # counted apart, not a reason to fail


def test_the_limit_is_a_setting(spark, home):
    write_day(spark, home, clean_rows())
    write_quarantine(spark, home, CLEAN_DAY, {"bad user": 5})
    config = load_config({"REELFLOW_QUALITY__MAX_QUARANTINE_SHARE": "0.1"})
    assert validate_day(CLEAN_DAY, config=config, paths=home)["success"]


def test_a_file_whose_every_row_breaks_a_rule_fails_the_gate(spark, home, tmp_path):
    raw = broken_log(tmp_path / "raw", n=40)
    normalize_day("events", raw, DAY, paths=home)
    with pytest.raises(ValidationFailed, match=r"interactions: quarantine share 100\.0%"):
        validate_day(DAY, paths=home)
