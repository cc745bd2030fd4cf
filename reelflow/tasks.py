"""What each Airflow task runs, kept out of the DAG files so they stay thin and cheap to parse.

Every function takes the day (`ds`) and the run's params, calls one function of `jobs/`,
`features/` or `models/`, and records its summary under $REELFLOW_HOME/runs/<ds>/ so that
`reelflow run` can report what the DAG runs produced.
"""

from __future__ import annotations

from typing import Any

from lake.partitions import check_day
from reelflow.runs import record, source


def apply_feature_repo(ds: str) -> dict[str, Any]:
    check_day(ds)
    from features.store import apply_if_changed

    return record(ds, "apply_feature_repo", apply_if_changed())


def land(ds: str, params: dict[str, Any]) -> dict[str, Any]:
    check_day(ds)
    from jobs.landing import land as land_release

    dataset, raw = source(params)
    summary = land_release(dataset, raw)
    return record(ds, "land", {k: v for k, v in summary.items() if k != "files"})


def normalize(ds: str, params: dict[str, Any]) -> dict[str, Any]:
    check_day(ds)
    from jobs.normalize import normalize_day

    dataset, raw = source(params)
    return record(ds, "normalize", normalize_day(dataset, raw, ds))


def validate(ds: str) -> dict[str, Any]:
    check_day(ds)
    from jobs.validate import validate_day

    return record(ds, "validate", validate_day(ds))


def features(ds: str) -> dict[str, Any]:
    check_day(ds)
    from features.compute import compute_features

    return record(ds, "features", compute_features(ds))


def materialize(ds: str) -> dict[str, Any]:
    check_day(ds)
    from features.store import materialize_day
    from lake.schema import ONLINE_VIEWS

    return record(ds, "materialize", materialize_day(ds, list(ONLINE_VIEWS)))


def train_ranker(ds: str) -> dict[str, Any]:
    check_day(ds)
    from models.train_ranker import train_ranker as train

    return record(ds, "train_ranker", train(holdout_ds=ds))


def train_sequence(ds: str, model: str, teacher_version: int | None = None) -> dict[str, Any]:
    check_day(ds)
    from models.sequence_run import train_sequence_run

    return record(ds, f"train_{model}", train_sequence_run(model, ds, teacher_version))


def export(ds: str) -> dict[str, Any]:
    check_day(ds)
    from features.store import materialize_day
    from jobs.export import export_candidates
    from lake.schema import USER_CANDIDATES

    manifest = export_candidates(ds)
    materialize_day(ds, [USER_CANDIDATES])
    return record(ds, "export", manifest)
