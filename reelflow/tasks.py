"""What each Airflow task runs, kept out of the DAG files so they stay thin and cheap to parse.

Every function takes the day (`ds`) and the run's params, calls one function of `jobs/`,
`features/` or `models/`, and records its summary under $REELFLOW_HOME/runs/<ds>/ so that
`reelflow run` can report what the DAG runs produced and what each stage cost (its wall and
CPU time and peak memory, measured by reelflow/meter.py around that call).
"""

from __future__ import annotations

from typing import Any

from lake.partitions import check_day
from reelflow.meter import StageMeter
from reelflow.runs import record, record_days, source


def apply_feature_repo(ds: str) -> dict[str, Any]:
    check_day(ds)
    from features.store import apply_if_changed

    with StageMeter() as meter:
        summary = apply_if_changed()
    return record(ds, "apply_feature_repo", summary, meter)


def land(ds: str, params: dict[str, Any], manual: bool = False) -> dict[str, Any]:
    """Lands the release; a `manual` run (the UI's Trigger, `airflow dags test`) for a day the
    release holds no interactions on fails here, naming the days it does hold, instead of
    running every task on nothing (the Trigger form's default day is today)."""
    check_day(ds)
    from jobs.landing import land as land_release

    dataset, raw = source(params)
    with StageMeter() as meter:
        summary = land_release(dataset, raw)
    days = summary["tables"]["interactions"]["days"]
    if manual and ds not in days:
        held = f"{days[0]} .. {days[-1]} ({len(days)} days)" if days else "no dated interactions"
        raise ValueError(
            f"the {dataset} release at {raw} has no interactions on {ds}: it holds {held}; "
            "trigger the run for one of those days"
        )
    kept = {k: v for k, v in summary.items() if k != "files"}
    days = run_days(ds, params.get("through"))
    return record_days(days, "land", dict.fromkeys(days, kept), meter)


def run_days(ds: str, through: str | None) -> list[str]:
    """`jobs.landing.run_days`, imported when a task runs (it imports Spark)."""
    from jobs.landing import run_days as days_of

    return days_of(ds, through)


# The daily stages take the run's params: with `through`, the run covers a range of days (a
# first load) in one job per stage (`jobs.landing.run_days`), each day recorded as its own.


def normalize(ds: str, params: dict[str, Any]) -> dict[str, Any]:
    check_day(ds)
    from jobs.normalize import normalize_days

    dataset, raw = source(params)
    days = run_days(ds, params.get("through"))
    with StageMeter() as meter:
        summaries = normalize_days(dataset, raw, days)
    return record_days(days, "normalize", summaries, meter)


def validate(ds: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    check_day(ds)
    from jobs.validate import validate_days

    days = run_days(ds, (params or {}).get("through"))
    with StageMeter() as meter:
        summaries = validate_days(days)
    return record_days(days, "validate", summaries, meter)


def features(ds: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    check_day(ds)
    from features.compute import compute_features_days

    days = run_days(ds, (params or {}).get("through"))
    with StageMeter() as meter:
        summaries = compute_features_days(days)
    return record_days(days, "features", summaries, meter)


def materialize(ds: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    check_day(ds)
    from features.store import materialize_days
    from lake.schema import ONLINE_VIEWS

    days = run_days(ds, (params or {}).get("through"))
    with StageMeter() as meter:
        summaries = materialize_days(days, list(ONLINE_VIEWS))
    return record_days(days, "materialize", summaries, meter)


def train(ds: str, model: str, teacher_version: int | None = None) -> dict[str, Any]:
    """Trains `model` (models/registry.py MODELS) for the day a scheduled run for `ds` trains
    for (its data's `scheduled_day`: the ranker's test day is the last labelled day through
    `ds`), logs, registers and gates it; recorded under that day."""
    check_day(ds)
    from models.registry import spec
    from models.training import train_and_register
    from reelflow.paths import Paths

    day = spec(model).data_class().scheduled_day(ds, Paths.from_env())
    with StageMeter() as meter:
        summary = train_and_register(model, day, teacher_version=teacher_version)
    return record(day, f"train_{model}", summary, meter)


def export(ds: str) -> dict[str, Any]:
    check_day(ds)
    from features.store import materialize_day
    from jobs.export import export_candidates
    from lake.schema import USER_CANDIDATES

    with StageMeter() as meter:
        manifest = export_candidates(ds)
        materialize_day(ds, [USER_CANDIDATES])
    return record(ds, "export", manifest, meter)
