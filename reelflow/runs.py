"""What a day's tasks leave under `$REELFLOW_HOME/runs/ds=D/`, and which data a run reads.

The Airflow tasks in this process (`reelflow.tasks`) and the spark-submit application
(`jobs/submit.py`) both record their summaries here, so both paths leave the same files; the
spark-submit operator and `reelflow run`'s report read them back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lake.partitions import partition
from reelflow.meter import StageMeter
from reelflow.paths import Paths
from reelflow.state import read_state, write_json


def record(
    ds: str, step: str, summary: dict[str, Any], meter: StageMeter | None = None
) -> dict[str, Any]:
    """Writes a step's summary for day DS; with the `meter` the step ran under, what it cost
    (`resources`: wall and CPU seconds, peak memory of Python and the JVM; reelflow/meter.py)."""
    if meter is not None:
        summary = {**summary, "resources": meter.result}
    out = partition(Paths.from_env().runs, ds) / f"{step}.json"
    write_json(out, summary)
    return summary


def record_days(
    days: list[str], step: str, summaries: dict[str, dict[str, Any]], meter: StageMeter
) -> dict[str, Any]:
    """`record` of each day's summary of one run over DAYS; what the run cost goes on its first
    day (so a sum over days counts it once), the others name the range. Returns the first
    day's summary, or for a range a short one (XCom)."""
    for i, ds in enumerate(days):
        first = i == 0 and len(days) > 1
        summary = summaries[ds] | ({"covers_days": len(days)} if first else {})
        record(ds, step, summary, meter if i == 0 else None)
    if len(days) == 1:
        return summaries[days[0]] | {"resources": meter.result}
    return {"range": [days[0], days[-1]], "days": len(days), "resources": meter.result}


def release_land_record(paths: Paths) -> Path:
    """Where `reelflow run` keeps what its landing of the release found and cost."""
    return paths.runs / "release" / "land.json"


def public_release_last_day(paths: Paths) -> str | None:
    """The last day with interactions of the public release (kuairec, kuairand, microlens)
    this home landed; None for a team's own `events` (they grow) or before any landing."""
    record = release_land_record(paths)
    if not record.exists():
        return None
    landed = json.loads(record.read_text())
    days = landed.get("tables", {}).get("interactions", {}).get("days") or []
    return max(days) if days and landed.get("dataset") != "events" else None


def source(params: dict[str, Any]) -> tuple[str, str]:
    """The dataset and raw folder of a run: its params, else what this home was set up with."""
    state = read_state(Paths.from_env())
    dataset = params.get("dataset") or state.get("dataset")
    raw = params.get("raw") or state.get("raw")
    if not dataset or not raw:
        raise ValueError(
            "no dataset/raw folder: pass params {'dataset': ..., 'raw': ...} or run `reelflow run` once"
        )
    return dataset, raw
