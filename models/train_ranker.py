"""Train the ranker on a point-in-time training set, log it to MLflow, register it and gate it.

Usage (what the `reelflow_train` DAG's task calls):
    from models.train_ranker import train_ranker
    summary = train_ranker(holdout_ds="2020-07-10")
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from lake.partitions import available_days
from lake.schema import LABELS
from models.evaluate import full_ranking_metrics, head_metrics
from models.gate import gate_version, run_params
from models.ranker import HEADS, MultiObjectiveRanker, RankerModelConfig
from models.ranker_data import (
    build_holdout,
    build_training_data,
    user_feature_frame,
    video_feature_frame,
)
from models.registry import (
    RANKER,
    RankerBundle,
    experiment,
    load_version,
    log_bundle,
    setup_tracking,
)
from models.report import log_report
from models.trainer import TrainerConfig, fit, seed_everything
from models.unbiased import (
    SLICE_METRICS,
    random_exposure_slice,
    slice_metric_names,
    small_matrix_slice,
)
from reelflow.config import Config, load_config
from reelflow.paths import Paths


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


KEY_METRICS = ("ndcg@10", "recall@10", "hr@10", "mrr@10", "ndcg@20", "recall@20", "mrr@20")


def logged(
    prefix: str, metrics: dict[str, float], only: tuple[str, ...] | None = None
) -> dict[str, float]:
    """MLflow names: `val_ndcg_at_10`, `popularity_test_recall_at_20`, ... (of `only`)."""
    return {
        f"{prefix}{k}".replace("@", "_at_"): v
        for k, v in metrics.items()
        if only is None or k in only
    }


@dataclass
class Split:
    """One evaluation day: its holdout and the features as of its first moment. `user_frame`:
    the holdout's users (full ranking); `viewer_frame`: every user who viewed that day (the
    per-head metrics, on the day's logged views)."""

    ds: str
    holdout: Any
    user_frame: pd.DataFrame
    video_frame: pd.DataFrame
    viewer_frame: pd.DataFrame | None = None

    @classmethod
    def build(cls, ds: str, config: Config, paths: Paths) -> Split:
        holdout = build_holdout(ds, config, paths)
        if len(holdout.user_ids) == 0:
            raise ValueError(f"evaluation day {ds} has no user with a completed, unseen video")
        # One feature lookup for both: the holdout's users are among the day's viewers.
        viewers = np.union1d(holdout.user_ids, holdout.views["user_id"].to_numpy(np.int64))
        viewer_frame = user_feature_frame(viewers, holdout.at, paths)
        return cls(
            ds,
            holdout,
            viewer_frame[viewer_frame["user_id"].isin(holdout.user_ids)].reset_index(drop=True),
            video_feature_frame(holdout.video_ids, holdout.at, paths),
            viewer_frame,
        )

    def score(self, bundle: RankerBundle) -> dict[str, float]:
        return evaluate_bundle(bundle, self.holdout, self.user_frame, self.video_frame)

    @torch.no_grad()
    def per_head_metrics(self, bundle: RankerBundle) -> dict[str, float]:
        """Per active head on the day's logged views (features as of the day's start):
        `<head>_rmse` of the predicted probability against the label, `<head>_auc` where the
        label is binary and both classes occur."""
        videos = self.video_frame.set_index("video_id")
        # A view of a video missing from the day's catalog has no features to score it with.
        views = self.holdout.views[self.holdout.views["video_id"].isin(videos.index)]
        users = self.viewer_frame.set_index("user_id")
        batch = {
            **bundle.encode(users.loc[views["user_id"]].reset_index()),
            **bundle.encode(videos.loc[views["video_id"]].reset_index()),
        }
        bundle.model.eval()
        logits, _ = bundle.model(batch)
        probabilities = torch.sigmoid(logits).numpy()
        out = {}
        for i, head in enumerate(HEADS):
            if head not in bundle.model.config.active_heads:
                continue
            labels = views[f"label_{head}"].to_numpy(dtype=np.float64, na_value=np.nan)
            for name, value in head_metrics(labels, probabilities[:, i]).items():
                out[f"{head}_{name}"] = value
        return out

    def popularity(self) -> dict[str, float]:
        return popularity_metrics(self.holdout)


def unbiased_metrics(
    bundle: RankerBundle, test: Split, config: Config, paths: Paths
) -> dict[str, float]:
    """The unbiased slices the data has (models/unbiased.py), scored with the features as of
    the test day's start, next to popularity (training-period views)."""
    threshold = config.features.completion_threshold
    slices = (
        small_matrix_slice(paths, threshold),
        random_exposure_slice(paths, test.ds, threshold),
    )
    views = pd.Series(test.holdout.popularity, index=test.holdout.video_ids)
    out: dict[str, float] = {}
    for found in (s for s in slices if s is not None):
        results = found.evaluate(
            lambda users, videos: bundle.score_all(
                user_feature_frame(users, test.holdout.at, paths),
                video_feature_frame(videos, test.holdout.at, paths),
            ),
            views.reindex(found.video_ids, fill_value=0.0).to_numpy(np.float64),
        )
        out.update(slice_metric_names(found.name, results, SLICE_METRICS))
    return out


def evaluation_days(test_ds: str | None, paths: Paths) -> tuple[str, str]:
    """(validation day, test day): the test day (default the last) and the day before it."""
    days = available_days(paths.features(LABELS))
    test_ds = test_ds or (days[-1] if days else None)
    earlier = [d for d in days if d < (test_ds or "")]
    if len(earlier) < 2:
        raise ValueError(
            f"training needs two labelled days before the test day {test_ds} (one to train on, "
            f"one to validate on); found {days}"
        )
    return earlier[-1], test_ds


def train_ranker(
    holdout_ds: str | None = None, config: Config | None = None, paths: Paths | None = None
) -> dict[str, Any]:
    """Trains on the days before the validation day (the day before `holdout_ds`, the test
    day), selects nothing on the test day, logs, registers and gates the new version."""
    import mlflow

    config = config or load_config()
    paths = paths or Paths.from_env()
    val_ds, test_ds = evaluation_days(holdout_ds, paths)
    rc = config.ranker

    data = build_training_data(val_ds, config, paths)
    val, test = Split.build(val_ds, config, paths), Split.build(test_ds, config, paths)

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
        fatigue_penalty=rc.weight_fatigue_penalty,
        active_heads=data.active_heads,
    )
    seed_everything(rc.seed)  # the initial weights too, not only the batch order
    model = MultiObjectiveRanker(model_config)
    bundle = RankerBundle(model, data.user_vocab, data.video_vocab, data.scaler)
    baseline = {"val": val.popularity(), "test": test.popularity()}

    setup_tracking(paths)
    mlflow.set_experiment(experiment_id=experiment(RANKER, paths))
    with mlflow.start_run(run_name=f"ranker-{test_ds}") as run:
        mlflow.log_params({f"ranker.{k}": v for k, v in rc.__dict__.items()})
        mlflow.log_params(
            {
                "val_ds": val_ds,
                "test_ds": test_ds,
                "holdout_ds": test_ds,
                "train_days": ",".join(data.train_days),
                "train_rows": len(data.targets["exposed"]),
                "val_users": len(val.holdout.user_ids),
                "test_users": len(test.holdout.user_ids),
                "videos": len(test.holdout.video_ids),
                "active_heads": ",".join(data.active_heads),
                # head -> why it is off ("{}": every head trained)
                "inactive_heads": json.dumps(data.inactive_heads),
            }
        )

        def on_epoch(epoch: int, metrics: dict[str, float]) -> dict[str, float]:
            # The curves use the validation day; the test day is scored once, at the end.
            ndcg = val.score(bundle)["ndcg@10"]
            # `epoch_` names: the curves stay apart from the final metrics.
            mlflow.log_metrics(
                {"epoch_train_loss": metrics["train_loss"], "epoch_val_ndcg_at_10": ndcg},
                step=epoch,
            )
            return {"val_ndcg@10": ndcg}

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
        metrics = {"val": val.score(bundle), "test": test.score(bundle)}
        heads = {"val": val.per_head_metrics(bundle), "test": test.per_head_metrics(bundle)}
        for split in ("val", "test"):
            mlflow.log_metrics(logged(f"{split}_", metrics[split]))
            mlflow.log_metrics(logged(f"popularity_{split}_", baseline[split]))
            mlflow.log_metrics(logged(f"{split}_head_", heads[split]))
        unbiased = unbiased_metrics(bundle, test, config, paths)
        mlflow.log_metrics(unbiased)
        report = {
            "val_ds": val_ds,
            "test_ds": test_ds,
            "active_heads": list(data.active_heads),
            "inactive_heads": data.inactive_heads,
            "ranker": metrics,
            "heads": heads,
            "popularity": baseline,
            "unbiased": unbiased,
            "history": history,
        }
        log_report(
            report,
            {"reelflow": config.to_dict(), "model": model_config.to_dict()},
            history,
            "val_ndcg@10",
            baseline["val"]["ndcg@10"],
            label="ranker",
        )
        log_bundle(bundle, _signature_example(test))
        version = int(mlflow.register_model(f"runs:/{run.info.run_id}/model", RANKER).version)
        decision = gate_ranker(
            version, val, bundle, config, scored=(metrics["val"], baseline["val"])
        )
        mlflow.set_tags({"gate": decision["decision"], "gate_reason": decision["reason"]})
    return {
        "model": RANKER,
        "version": version,
        "run_id": run.info.run_id,
        "promoted": decision["promoted"],
        "gate_reason": decision["reason"],
        "gate": decision,
        "val_ds": val_ds,
        "test_ds": test_ds,
        "holdout_ds": test_ds,
        "active_heads": list(data.active_heads),
        "inactive_heads": data.inactive_heads,
        "unbiased": unbiased,
        "metrics": {
            **logged("val_", metrics["val"], KEY_METRICS),
            **logged("test_", metrics["test"], KEY_METRICS),
            **logged("val_head_", heads["val"]),
            **logged("test_head_", heads["test"]),
        },
        "popularity": {
            **logged("popularity_val_", baseline["val"], KEY_METRICS),
            **logged("popularity_test_", baseline["test"], KEY_METRICS),
        },
        "champion_version": decision["champion_version"],
    }


def gate_ranker(
    version: int,
    val: Split,
    bundle: RankerBundle,
    config: Config,
    force: bool = False,
    scored: tuple[dict[str, float], dict[str, float]] | None = None,
) -> dict[str, Any]:
    """The promotion gate (models/gate.py) on the ranker's validation day. `scored`: the
    challenger's and popularity's metrics on `val` when training just computed them (scoring
    a whole catalog again would give the same numbers)."""
    challenger, popularity = scored or (val.score(bundle), val.popularity())
    return gate_version(
        RANKER,
        version,
        f"val_ds={val.ds}",
        challenger,
        popularity,
        lambda champion: val.score(load_version(RANKER, champion)),
        config,
        force=force,
    )


def promote_ranker(
    version: int, force: bool = False, config: Config | None = None, paths: Paths | None = None
) -> dict[str, Any]:
    """`reelflow promote`: the same gate, on the version's own validation day."""
    config = config or load_config()
    paths = paths or Paths.from_env()
    setup_tracking(paths)
    val = Split.build(run_params(RANKER, version)["val_ds"], config, paths)
    return gate_ranker(int(version), val, load_version(RANKER, version), config, force=force)


def _signature_example(split: Split) -> pd.DataFrame:
    """Five (user, video) rows in the pyfunc's input format, for the MLflow signature."""
    example = pd.concat(
        [
            split.user_frame.iloc[[0] * 5]
            .reset_index(drop=True)
            .drop(columns="event_timestamp")
            .add_prefix("user_features__")
            .rename(columns={"user_features__user_id": "user_id"}),
            split.video_frame.head(5)
            .reset_index(drop=True)
            .drop(columns="event_timestamp")
            .add_prefix("video_features__")
            .rename(columns={"video_features__video_id": "video_id"}),
        ],
        axis=1,
    )
    for column in ("user_features__category_affinity", "user_features__recent_category_share"):
        example[column] = example[column].apply(lambda v: [float(x) for x in v])
    return example
