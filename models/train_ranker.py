"""Train the ranker on a point-in-time training set, log it to MLflow, register it and gate it.

Usage (what the `reelflow_train` DAG's task calls):
    from models.train_ranker import train_ranker
    summary = train_ranker(holdout_ds="2020-07-10")
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.compute import LABELS
from models.evaluate import full_ranking_metrics
from models.ranker import MultiObjectiveRanker, RankerModelConfig
from models.ranker_data import (
    available_days,
    build_holdout,
    build_training_data,
    user_feature_frame,
    video_feature_frame,
)
from models.registry import (
    CHAMPION,
    RANKER,
    RankerBundle,
    champion_version,
    experiment,
    load_version,
    log_bundle,
    promotion_gate,
    setup_tracking,
)
from models.trainer import TrainerConfig, fit, seed_everything
from reelflow.config import Config, load_config
from reelflow.paths import Paths


def _learning_curves(history: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(history) + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, [h["train_loss"] for h in history], marker="o")
    left.set(title="train loss", xlabel="epoch")
    right.plot(
        epochs, [h.get("holdout_ndcg@10", np.nan) for h in history], marker="o", label="ranker"
    )
    right.plot(
        epochs, [h.get("popularity_ndcg@10", np.nan) for h in history], ls="--", label="popularity"
    )
    right.set(title="holdout NDCG@10", xlabel="epoch")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluate_bundle(bundle: RankerBundle, holdout, user_frame, video_frame) -> dict[str, float]:
    scores = bundle.score_all(user_frame, video_frame)
    return full_ranking_metrics(
        scores,
        holdout.relevant,
        holdout.history,
        categories=holdout.categories,
        popularity=holdout.popularity,
    )


def popularity_metrics(holdout) -> dict[str, float]:
    scores = np.tile(holdout.popularity, (len(holdout.user_ids), 1))
    return full_ranking_metrics(
        scores,
        holdout.relevant,
        holdout.history,
        categories=holdout.categories,
        popularity=holdout.popularity,
    )


def train_ranker(
    holdout_ds: str | None = None, config: Config | None = None, paths: Paths | None = None
) -> dict[str, Any]:
    import mlflow
    from mlflow import MlflowClient

    config = config or load_config()
    paths = paths or Paths.from_env()
    days = available_days(paths.features(LABELS))
    if len(days) < 2:
        raise ValueError(f"training needs at least two labelled days, found {days}")
    holdout_ds = holdout_ds or days[-1]
    rc = config.ranker

    data = build_training_data(holdout_ds, config, paths)
    holdout = build_holdout(holdout_ds, config, paths)
    if len(holdout.user_ids) == 0:
        raise ValueError(f"holdout day {holdout_ds} has no user with a completed, unseen video")
    user_frame = user_feature_frame(holdout.user_ids, holdout.at, paths)
    video_frame = video_feature_frame(holdout.video_ids, holdout.at, paths)

    model_config = RankerModelConfig(
        n_users=len(data.user_vocab),
        n_videos=len(data.video_vocab),
        num_categories=config.features.num_categories,
        embedding_dim=rc.embedding_dim,
        hidden_dim=rc.hidden_dim,
        head_weights={
            "watch_time": rc.weight_watch_time,
            "completion": rc.weight_completion,
            "rewatch": rc.weight_rewatch,
            "continuation": rc.weight_continuation,
        },
        skip_penalty=rc.weight_skip_penalty,
        active_heads=data.active_heads,
    )
    seed_everything(rc.seed)  # the initial weights too, not only the batch order
    model = MultiObjectiveRanker(model_config)
    bundle = RankerBundle(model, data.user_vocab, data.video_vocab, data.scaler)
    baseline = popularity_metrics(holdout)

    setup_tracking(paths)
    mlflow.set_experiment(experiment_id=experiment(RANKER, paths))
    with mlflow.start_run(run_name=f"ranker-{holdout_ds}") as run:
        mlflow.log_params({f"ranker.{k}": v for k, v in rc.__dict__.items()})
        mlflow.log_params(
            {
                "holdout_ds": holdout_ds,
                "train_days": ",".join(data.train_days),
                "train_rows": len(data.targets["exposed"]),
                "holdout_users": len(holdout.user_ids),
                "videos": len(holdout.video_ids),
            }
        )

        def on_epoch(epoch: int, metrics: dict[str, float]) -> dict[str, float]:
            # Reported each epoch for the curves; no model selection uses the holdout.
            ndcg = evaluate_bundle(bundle, holdout, user_frame, video_frame)["ndcg@10"]
            mlflow.log_metrics(
                {"train_loss": metrics["train_loss"], "holdout_ndcg_at_10": ndcg}, step=epoch
            )
            return {"holdout_ndcg@10": ndcg, "popularity_ndcg@10": baseline["ndcg@10"]}

        history = fit(
            model,
            data.train,
            data.targets,
            TrainerConfig(
                epochs=rc.epochs,
                batch_size=rc.batch_size,
                lr=rc.lr,
                weight_decay=rc.weight_decay,
                seed=rc.seed,
            ),
            on_epoch,
        )
        metrics = evaluate_bundle(bundle, holdout, user_frame, video_frame)
        mlflow.log_metrics({k.replace("@", "_at_"): v for k, v in metrics.items()})
        mlflow.log_metrics({f"popularity_{k}".replace("@", "_at_"): v for k, v in baseline.items()})
        report = {
            "holdout_ds": holdout_ds,
            "ranker": metrics,
            "popularity": baseline,
            "history": history,
        }
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / "evaluation.json").write_text(json.dumps(report, indent=2))
            (tmp / "config.json").write_text(
                json.dumps(
                    {"reelflow": config.to_dict(), "model": model_config.to_dict()}, indent=2
                )
            )
            _learning_curves(history, tmp / "learning_curves.png")
            mlflow.log_artifacts(str(tmp), artifact_path="report")
        example = pd.concat(
            [
                user_frame.iloc[[0] * 5]
                .reset_index(drop=True)
                .drop(columns="event_timestamp")
                .add_prefix("user_features__")
                .rename(columns={"user_features__user_id": "user_id"}),
                video_frame.head(5)
                .reset_index(drop=True)
                .drop(columns="event_timestamp")
                .add_prefix("video_features__")
                .rename(columns={"video_features__video_id": "video_id"}),
            ],
            axis=1,
        )
        example["user_features__category_affinity"] = example[
            "user_features__category_affinity"
        ].apply(lambda v: [float(x) for x in v])
        log_bundle(bundle, example)
        version = mlflow.register_model(f"runs:/{run.info.run_id}/model", RANKER).version

        metric = config.gate.metric
        current = champion_version(RANKER)
        champion_metric = None
        if current is not None:
            champion_metric = evaluate_bundle(
                load_version(RANKER, current.version), holdout, user_frame, video_frame
            )[metric]
        promoted, reason = promotion_gate(
            metrics[metric], baseline[metric], champion_metric, config.gate.min_improvement
        )
        client = MlflowClient()
        client.set_model_version_tag(
            RANKER, version, "gate", "promoted" if promoted else "rejected"
        )
        client.set_model_version_tag(RANKER, version, "gate_reason", reason)
        if promoted:
            client.set_registered_model_alias(RANKER, CHAMPION, version)
        mlflow.set_tags({"gate": "promoted" if promoted else "rejected", "gate_reason": reason})
    return {
        "model": RANKER,
        "version": int(version),
        "run_id": run.info.run_id,
        "promoted": promoted,
        "gate_reason": reason,
        "holdout_ds": holdout_ds,
        "metrics": {
            k: metrics[k]
            for k in ("ndcg@10", "recall@10", "hr@10", "mrr@10", "ndcg@20", "coverage@10")
        },
        "popularity": {
            k: baseline[k]
            for k in ("ndcg@10", "recall@10", "hr@10", "mrr@10", "ndcg@20", "coverage@10")
        },
        "champion_version": int(version)
        if promoted
        else (int(current.version) if current else None),
    }
