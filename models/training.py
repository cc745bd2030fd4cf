"""One training stack for every model of models/registry.py MODELS: data -> fit -> MLflow
(params, per-epoch metrics, report, the bundle with its pyfunc) -> `reelflow-<model>` -> the
promotion gate; and `promote`, the same gate for a registered version.

Usage (what `reelflow train` / `reelflow promote` and the `reelflow_train` DAG's tasks call):
    from models.training import promote, train_and_register
    bert = train_and_register("bert4rec", "2020-07-11")
    train_and_register("student", "2020-07-11", teacher_version=bert["version"])
    promote("gru", 3, force=True)

What differs between kinds of models lives in the class a model's spec names as its `data`
(models/ranker_data.py `RankerData`, models/sequence_data.py `SequenceData`):
    for_run(name, ds, config, paths, **options)   the run's data (classmethod)
    version_split(name, version, bundle, config, paths) -> GateSplit   a version's own split
    scheduled_day(ds, paths)                      the day a scheduled run for `ds` trains for
    name, run_name, trainer, model_config, train, targets   what `fit_model` reads
    wrap(model), bundle(model), on_epoch(bundle, log)       what it trains, keeps, calls
    bundle_class, monitor, notes, source, configs(), params(), example(),
    evaluate(bundle, history, seconds, config, paths) -> Evaluation   what the run logs
(`source`: where a model without a Feast feature service reads its data.)
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from models.bundle import Bundle, load_version, log_bundle
from models.gate import GateSplit, champion_origin, gate
from models.registry import spec
from models.report import log_report
from models.tracking import experiment, registered_name, setup_tracking
from models.trainer import fit, seed_everything
from reelflow.config import Config, load_config
from reelflow.paths import Paths


@dataclass
class Evaluation:
    """What a run logs and reports after training, and the split its gate scores on."""

    metrics: dict[str, float]  # logged as they are
    report: dict[str, Any]  # report/evaluation.json
    baseline: float  # popularity's value of the learning curves' metric
    gate: GateSplit
    summary: dict[str, Any]  # what `reelflow train` prints, after the run's and the gate's keys
    # Other baselines' values of that metric, by name (the sequence models' transitions).
    baselines: dict[str, float] = field(default_factory=dict)


def fit_model(
    data: Any, log: Callable[[int, dict[str, float]], None]
) -> tuple[Bundle, list[dict[str, float]], float]:
    """A new model of `data.name` (seeded: the initial weights too, not only the batch order)
    trained on `data`; `log(epoch, metrics)` after each epoch. Returns its bundle, the
    per-epoch history and the training seconds."""
    seed_everything(data.trainer.seed)
    model = spec(data.name).model_class()(data.model_config)
    bundle = data.bundle(model)
    started = time.perf_counter()
    history = fit(
        data.wrap(model), data.train, data.targets, data.trainer, data.on_epoch(bundle, log)
    )
    return bundle, history, time.perf_counter() - started


def train_and_register(
    name: str,
    ds: str | None = None,
    *,
    teacher_version: int | None = None,
    config: Config | None = None,
    paths: Paths | None = None,
) -> dict[str, Any]:
    """Trains model `name` for day `ds` (what the day means is its data's: the ranker's test
    day, a sequence model's last day of data; None: the latest), logs, registers and gates
    the new version; returns the summary `reelflow train` prints. `teacher_version`: the
    registered version of the teacher a model distills (default its champion)."""
    import mlflow

    model_spec = spec(name)
    config = config or load_config()
    paths = paths or Paths.from_env()
    setup_tracking(paths)
    options = {} if model_spec.teacher is None else {"teacher_version": teacher_version}
    data = model_spec.data_class().for_run(name, ds, config, paths, **options)
    registered = registered_name(name)
    mlflow.set_experiment(experiment_id=experiment(registered, paths))
    with mlflow.start_run(run_name=data.run_name) as run:
        params = {**data.params(), **feature_source(name, data, paths)}
        mlflow.log_params(params)

        def log(epoch: int, metrics: dict[str, float]) -> None:
            # `epoch_` names: the curves stay apart from the final metrics.
            mlflow.log_metrics({f"epoch_{k}": float(v) for k, v in metrics.items()}, step=epoch)

        bundle, history, seconds = fit_model(data, log)
        result = data.evaluate(bundle, history, seconds, config, paths)
        mlflow.log_metrics(result.metrics)
        log_report(
            result.report,
            {"reelflow": config.to_dict(), **data.configs()},
            history,
            data.monitor,
            result.baseline,
            label=name,
            baselines=result.baselines,
        )
        log_bundle(bundle, data.example())
        version = int(mlflow.register_model(f"runs:/{run.info.run_id}/model", registered).version)
        decision = gate(name, version, bundle, result.gate, config)
        mlflow.set_tags({"gate": decision["decision"], "gate_reason": decision["reason"]})
        describe(registered, version, model_spec.description, params, decision)
    return {
        "model": registered,
        "version": version,
        "run_id": run.info.run_id,
        "promoted": decision["promoted"],
        "gate_reason": decision["reason"],
        "gate": decision,
        **result.summary,
        "champion_version": decision["champion_version"],
        **data.notes,
    }


def describe(
    registered: str, version: int, what: str, params: dict[str, Any], decision: dict[str, Any]
) -> None:
    """The descriptions the MLflow UI shows: the registered model's (what it is) and the
    version's (its data days, what it read, its validation score beside popularity, the gate's
    decision at registration; later decisions are in its `gate_history` tag)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    client.update_registered_model(
        registered,
        description=f"{what} `@champion` is the version the export serves; the promotion gate "
        "(models/gate.py) moves it, and a move by hand is recorded when found.",
    )
    if "train_days" in params:  # the ranker: training days, then its validation and test day
        days = params["train_days"].split(",")
        data = (
            f"Trained on {len(days)} days ({days[0]} .. {days[-1]}), validated on "
            f"{params['val_ds']}, tested on {params['test_ds']}"
        )
    else:
        data = f"Trained on every view through {params.get('data_through_ds', 'all')}"
    source = (
        f"Feast feature service {params['feature_service']} ({params['feature_service_hash']})"
        if "feature_service" in params
        else params.get("data_source", "the lake")
    )
    score = (
        f"validation {decision['metric']} {decision['challenger_score']:.4f} against "
        f"popularity {decision['popularity_score']:.4f} ({decision['split']})"
    )
    client.update_model_version(
        registered,
        str(version),
        description=f"{data}; read {source}; {score}. Gate: {decision['decision']}, "
        f"{decision['reason']}.",
    )


def promote(
    name: str,
    version: int,
    force: bool = False,
    config: Config | None = None,
    paths: Paths | None = None,
) -> dict[str, Any]:
    """`reelflow promote`: the gate of training, on the version's own validation split."""
    config = config or load_config()
    paths = paths or Paths.from_env()
    setup_tracking(paths)
    origin = champion_origin(registered_name(name))  # a champion set by hand is recorded first
    data_class = spec(name).data_class()
    bundle = load_version(name, version)
    split = data_class.version_split(name, int(version), bundle, config, paths)
    return {
        **gate(name, int(version), bundle, split, config, force=force),
        "champion_before": origin,
    }


def feature_source(name: str, data: Any, paths: Paths) -> dict[str, str]:
    """What a run logs of the data it read: the Feast feature service of model `name` and a
    hash of its sorted feature references and types, or, reading the lake, `data.source`."""
    service = spec(name).feature_service
    if service is None:
        return {"data_source": data.source}
    refs = sorted(
        f"{view}:{feature}:{dtype}"
        for view, fields in service_fields(service, paths).items()
        for feature, dtype in fields
    )
    digest = hashlib.sha256("\n".join(refs).encode()).hexdigest()[:16]
    return {"feature_service": service, "feature_service_hash": digest}


def service_fields(service: str, paths: Paths) -> dict[str, list[tuple[str, str]]]:
    """view -> (feature, type) of each feature of the Feast feature service `service`, as the
    applied registry declares its projections."""
    from features.feast_repo import feature_store

    projections = feature_store(paths).get_feature_service(service).feature_view_projections
    return {p.name_to_use(): [(f.name, str(f.dtype)) for f in p.features] for p in projections}
