"""What the three DAG files share: their Assets, task defaults, the failure record and params.

Imported at DAG parse time, which the scheduler repeats every loop: only the standard library,
`airflow.sdk` (the DAG files import it anyway), `reelflow.paths`, `reelflow.names` and
`lake.partitions`. Nothing here imports Spark, torch, Feast or MLflow.
"""

from __future__ import annotations

import os
import socket
import traceback
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Asset, Param, RetryDecision, RetryPolicy

from lake.partitions import partition
from reelflow.names import DATASETS
from reelflow.paths import Paths
from reelflow.state import write_json

# What the DAG runs produce. The URIs name the tables inside a home (the home itself is a
# deployment detail); an event's `extra` carries the day it is for, `{"ds": "YYYY-MM-DD"}`, so
# an asset-triggered run (which has no logical date) knows which day to work on.
LANDED = Asset(name="reelflow_landed", uri="file:///reelflow/lake/raw")
NORMALIZED = Asset(name="reelflow_normalized", uri="file:///reelflow/lake/normalized")
VALIDATED = Asset(name="reelflow_validation", uri="file:///reelflow/lake/validation")
FEATURES = Asset(name="reelflow_features", uri="file:///reelflow/lake/features")
FEAST_REGISTRY = Asset(name="reelflow_feast_registry", uri="file:///reelflow/feast/registry")
ONLINE_FEATURES = Asset(name="reelflow_online_features", uri="file:///reelflow/feast/online")
CHAMPION = Asset(name="reelflow_champion", uri="file:///reelflow/models/champion")
EXPORTS = Asset(name="reelflow_exports", uri="file:///reelflow/exports")
CANDIDATES = Asset(name="reelflow_candidates", uri="file:///reelflow/lake/candidates")

# A cluster routes training to GPU workers through this Celery queue; the pool of the same
# name bounds how many train at once (one on the embedded default, where the queue is
# ignored and training runs in the local process). `reelflow.airflow_runner.migrate` and the
# compose file's init job create the pool.
GPU_QUEUE = "gpu"
GPU_POOL = "gpu"


class FailDataErrors(RetryPolicy):
    """Retry what can heal (a lost worker, a busy server), fail at once what cannot.

    Bad input and a failed quality gate fail the same way on every try, so retrying them only
    delays the message. Matched by class name, so that parsing a DAG never imports the
    Spark-backed modules that define them (the policy runs on the worker, and Airflow
    serializes only its presence).
    """

    DETERMINISTIC = frozenset({"ValidationFailed", "InputFileError", "ValueError"})

    def evaluate(
        self, exception: BaseException, try_number: int, max_tries: int, context=None
    ) -> RetryDecision:
        names = {cls.__name__ for cls in type(exception).__mro__}
        if names & self.DETERMINISTIC:
            return RetryDecision.fail(f"{type(exception).__name__} is not transient: no retry")
        return RetryDecision.default()


def daily_end_date():
    """reelflow_daily's end_date: $REELFLOW_END_DATE (a day) when set, else None (no end).
    `reelflow ui` sets it to the last day of the public release the home landed: a fixed
    release holds no data for today, and the run the scheduler makes for the latest interval
    when the DAG is unpaused (the backfill form unpauses it) could only fail, after spending
    minutes of Spark on an empty day."""
    import pendulum

    end = os.environ.get("REELFLOW_END_DATE", "")
    return pendulum.parse(end[:10], tz="UTC").end_of("day") if end else None


def _event_extras(context: dict[str, Any]) -> list[dict[str, Any]]:
    events = context.get("triggering_asset_events") or {}
    return [dict(event.extra or {}) for asset in events for event in events[asset]]


def run_day(context: dict[str, Any]) -> str:
    """The day a task run is for: its logical date; for an asset-triggered run (no logical
    date) the newest day its triggering events name; else the day the run started (UTC)."""
    if context.get("ds"):
        return context["ds"]
    # A range's event names its first day and its last (`through`).
    days = [
        extra.get("through") or extra["ds"] for extra in _event_extras(context) if extra.get("ds")
    ]
    if days:
        return max(days)
    moment = getattr(context.get("dag_run"), "run_after", None) or datetime.now(UTC)
    return moment.astimezone(UTC).date().isoformat()


def run_through(context: dict[str, Any]) -> str | None:
    """The last day a daily run covers, when it covers more than its own: the `through` param;
    else the last day of a data interval that starts on the run's day and spans more than it.

    `reelflow run` records a range's run over `[D, E+1)`. When that run is run again (the
    grid's Clear, or a backfill reprocessing it, whose form replaces the run's conf with the
    params' defaults), it covers its range again: a run does what its interval says. A
    scheduled or backfilled run's `[D, D+1)` and a manual run's `[D-1, D)` name one day."""
    through = (context.get("params") or {}).get("through")
    if through:
        return through
    ds, start, end = (context.get(k) for k in ("ds", "data_interval_start", "data_interval_end"))
    if not (ds and start and end) or start.astimezone(UTC).date().isoformat() != ds:
        return None
    last = (end.astimezone(UTC) - timedelta(microseconds=1)).date().isoformat()
    return last if last > ds else None


def run_params(context: dict[str, Any]) -> dict[str, Any]:
    """The run's params with `through` resolved by `run_through`."""
    return {**(context.get("params") or {}), "through": run_through(context)}


TRAINING_EVENT_KEYS = ("model", "version", "promoted")


def stamp(context: dict[str, Any], summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """Puts the run's day (and a training summary's model, version and promotion) into the
    events of the running task's outlets; returns the summary for XCom."""
    extra: dict[str, Any] = {"ds": run_day(context)}
    through = run_through(context)
    if through and through > extra["ds"]:
        extra["through"] = through
    extra.update({k: v for k, v in (summary or {}).items() if k in TRAINING_EVENT_KEYS})
    for asset in context["task"].outlets:
        context["outlet_events"][asset].extra.update(extra)
    return summary or {}


def champion_unchanged(context: dict[str, Any]) -> bool:
    """True for a run triggered only by training runs none of which promoted a champion."""
    extras = _event_extras(context)
    return bool(extras) and not any(extra.get("promoted") for extra in extras)


def record_failure(context: dict[str, Any]) -> None:
    """on_failure_callback: what failed and why, as JSON under
    `$REELFLOW_HOME/runs/ds=<day>/failures/<dag_id>.<task_id>.json` (the last failed try)."""
    ti = context["ti"]
    error = context.get("exception")
    ds = run_day(context)
    record = {
        "dag_id": ti.dag_id,
        "task_id": ti.task_id,
        "run_id": ti.run_id,
        "map_index": getattr(ti, "map_index", -1),
        "ds": ds,
        "try_number": ti.try_number,
        "max_tries": getattr(ti, "max_tries", None),
        "error_type": type(error).__name__ if error is not None else None,
        "error": str(error) if error is not None else None,
        "traceback": (
            "".join(traceback.format_exception(error))[-8000:]
            if isinstance(error, BaseException)
            else None
        ),
        "hostname": socket.gethostname(),
        "recorded_at": datetime.now(UTC).isoformat(),
    }
    out = partition(Paths.from_env().runs, ds) / "failures" / f"{ti.dag_id}.{ti.task_id}.json"
    write_json(out, record)


# Every task: two retries after 2 and 4 minutes (capped at 30; `REELFLOW_TASK_RETRIES`
# changes the count, e.g. 0 while developing), a wall-clock limit, and a failure record.
# Spark tasks on a full release take minutes; two hours means stuck.
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "reelflow",
    "retries": int(os.environ.get("REELFLOW_TASK_RETRIES", "2")),
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=30),
    "retry_policy": FailDataErrors(),
    "execution_timeout": timedelta(hours=2),
    "on_failure_callback": record_failure,
}

# Training tasks: the gpu queue and pool, and a longer limit (full-size epochs).
TRAINING_ARGS: dict[str, Any] = {
    **DEFAULT_ARGS,
    "queue": GPU_QUEUE,
    "pool": GPU_POOL,
    "execution_timeout": timedelta(hours=8),
}

# The daily DAG's source. Scheduled runs take the defaults: REELFLOW_DATASET / REELFLOW_RAW
# where the deployment sets them (compose does), else empty (null), meaning what `reelflow run`
# recorded for the home. Manual runs may name another; a bad value is refused at trigger.
# Nullable, not "": the Trigger and Backfill forms of the Airflow UI treat a non-null string
# as required and would not submit until both were typed in.
SOURCE_PARAMS = {
    "dataset": Param(
        os.environ.get("REELFLOW_DATASET") or None,
        type=["null", "string"],
        enum=[None, *DATASETS],
        title="Dataset",
        description="The format of the raw release folder. Empty: the home's, as `reelflow run` "
        "recorded it.",
    ),
    "raw": Param(
        os.environ.get("REELFLOW_RAW") or None,
        type=["null", "string"],
        # Absolute: workers resolve it on their own filesystem, not the submitter's cwd.
        pattern="^/.*$",
        title="Raw release folder",
        description="Absolute path of the release as unpacked, on the workers' filesystem. "
        "Empty: the home's, as `reelflow run` recorded it.",
    ),
    "through": Param(
        None,
        type=["null", "string"],
        pattern=r"^\d{4}-\d{2}-\d{2}$",
        title="Through day (a range)",
        description="A first load of many days: normalize, validate, features and materialize "
        "every landed day from the run's day through this one (YYYY-MM-DD) in one job per "
        "stage, each day's partitions as its own run writes them. Empty: the run's day alone.",
    ),
}
