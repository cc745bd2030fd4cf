"""One pipeline run of a sequence model: the lake's interactions -> leave-one-out split ->
train (models/train_sequence.py) -> MLflow (params, per-epoch metrics, report, the model as
weights + config with a pyfunc loader) -> `reelflow-<model>` -> the promotion gate.

Usage (what the `reelflow_train` DAG's tasks and `reelflow train --model gru` call):
    from models.sequence_run import train_sequence_run
    bert = train_sequence_run("bert4rec", ds="2020-07-11")
    train_sequence_run("student", ds="2020-07-11", teacher_version=bert["version"])

Item ids map through the persisted vocabulary (`$REELFLOW_HOME/models/vocab/videos.json`),
which only grows: an index means the same video in every model and on every day, which is what
lets the gate score an older champion on a newer challenger's split.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lake.read import read_interactions
from models.evaluate import next_item_metrics
from models.gate import gate_version, run_params
from models.registry import experiment, setup_tracking
from models.report import log_report
from models.sequence_data import EvalSet, SequenceSplit, from_frame
from models.train_sequence import (
    MODELS,
    SequenceBundle,
    popularity_metrics,
    train_sequence_model,
)
from models.unbiased import SLICE_METRICS, slice_metric_names, small_matrix_slice
from models.vocab import Vocabulary, persisted_vocabulary
from reelflow.config import Config, load_config
from reelflow.paths import Paths

SEQUENCE_MODELS = tuple(MODELS)  # gru, bert4rec, student
SUMMARY_METRICS = ("ndcg_at_10", "recall_at_10", "mrr_at_10", "ndcg_at_20", "recall_at_20")


def registered_name(model: str) -> str:
    if model not in MODELS:
        raise ValueError(f"unknown sequence model {model!r}; expected one of {sorted(MODELS)}")
    return f"reelflow-{model}"


def video_vocabulary_path(paths: Paths) -> Path:
    return paths.models / "vocab" / "videos.json"


def build_split(paths: Paths, config: Config, through_ds: str | None) -> SequenceSplit:
    frame = read_interactions(paths, through_ds)
    if frame.empty:
        raise ValueError(f"no interactions through {through_ds} under {paths.lake}")
    vocab = persisted_vocabulary(video_vocabulary_path(paths), np.sort(frame["video_id"].unique()))
    return from_frame(frame, vocab=vocab, max_len=config.features.sequence_length)


# ---- the model in MLflow: weights + JSON config + vocabulary, a pyfunc, a signature ----------


try:
    import mlflow.pyfunc

    class SequencePyfunc(mlflow.pyfunc.PythonModel):
        """Input: `seq_video_ids` (raw video ids, oldest first: the `user_sequences` feature);
        output: the `k` best unseen videos per row and their scores."""

        def load_context(self, context) -> None:
            self.bundle = SequenceBundle.load(context.artifacts["sequence_model"])

        def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
            return recommend_frame(self.bundle, model_input, int((params or {}).get("k", 10)))
except ImportError:  # pragma: no cover - mlflow is a hard dependency; keeps import errors clear
    SequencePyfunc = None  # type: ignore[assignment,misc]


def recommend_frame(bundle: SequenceBundle, frame: pd.DataFrame, k: int) -> pd.DataFrame:
    scores = bundle.unseen_scores(list(frame["seq_video_ids"]))
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return pd.DataFrame(
        {
            "video_ids": [bundle.vocab.raw(row + 1).astype(np.int64).tolist() for row in top],
            "scores": [scores[i, row].astype(np.float64).tolist() for i, row in enumerate(top)],
        }
    )


def log_sequence_bundle(bundle: SequenceBundle, example: pd.DataFrame) -> None:
    from mlflow.models import infer_signature

    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        folder = bundle.save(Path(tmp) / "sequence_model")
        mlflow.log_artifacts(str(folder), artifact_path="sequence_model")
        output = recommend_frame(bundle, example, 10)
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).with_name("pyfunc_sequence.py")),
            artifacts={"sequence_model": str(folder)},
            signature=infer_signature(example, output, params={"k": 10}),
            input_example=example,
        )


@torch.no_grad()
def item_table(bundle: SequenceBundle) -> np.ndarray:
    """(n_items, d) video embeddings, row j = vocabulary index j + 1, such that a user's query
    (`user_queries`) dotted with a row is the model's next-video score: an inner-product index
    over these rows retrieves what the model would rank first."""
    return bundle.model.item_vectors().float().cpu().numpy()


@torch.no_grad()
def user_queries(bundle: SequenceBundle, histories: list) -> np.ndarray:
    """(users, d) queries from raw-id histories (oldest first), in `item_table`'s space."""
    model = bundle.model.eval()
    dev = next(model.parameters()).device
    inputs = bundle.windows(histories).to(dev)
    width = item_table(bundle).shape[1]
    # One preallocated array: keeping each batch's last step as a view would keep the whole
    # batch output alive (2.5 GiB for 100k users, bench/export.py).
    out = np.empty((len(inputs), width), dtype=np.float32)
    for start in range(0, len(inputs), 1024):
        batch = inputs[start : start + 1024]
        out[start : start + len(batch)] = model.query({"items": batch}).float().cpu().numpy()
    return out


def load_sequence_version(model: str, version: int | str) -> SequenceBundle:
    import mlflow
    from mlflow import MlflowClient

    mv = MlflowClient().get_model_version(registered_name(model), str(version))
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            run_id=mv.run_id, artifact_path="sequence_model", dst_path=tmp
        )
        return SequenceBundle.load(local)


def score_on(bundle: SequenceBundle, stage: EvalSet, vocab: Vocabulary) -> dict[str, float]:
    """Full-ranking metrics of any version on a stage indexed by `vocab`: histories go in as
    raw ids, and the version's scores come back onto `vocab`'s columns; a video the version
    never saw ranks last (it cannot recommend it)."""
    raw_inputs = [vocab.raw(row[row > 0]) for row in stage.inputs.numpy()]
    scores = bundle.scores(raw_inputs, vocab.ids)
    return next_item_metrics(
        scores, stage.targets - 1, [h - 1 for h in stage.history], popularity=stage.popularity[1:]
    )


def small_matrix_metrics(
    bundle: SequenceBundle, split: SequenceSplit, paths: Paths, config: Config
) -> dict[str, Any]:
    """KuaiRec's fully observed block (models/unbiased.py), when the home has one: each user's
    whole sequence in, the block's videos ranked."""
    found = small_matrix_slice(paths, config.features.completion_threshold)
    if found is None:
        return {}
    position = {user: i for i, user in enumerate(split.user_ids.tolist())}

    def score(user_ids: np.ndarray, video_ids: np.ndarray) -> np.ndarray:
        histories = [
            split.vocab.raw(split.sequences[position[u]]) if u in position else []
            for u in user_ids.tolist()
        ]
        return bundle.scores(histories, video_ids)

    seen = np.bincount(np.concatenate(split.sequences), minlength=len(split.vocab))
    counts = seen[split.vocab.lookup(found.video_ids)].astype(np.float64)
    counts[split.vocab.lookup(found.video_ids) == 0] = 0.0
    return {found.name: found.evaluate(score, counts)}


# ---- training run -----------------------------------------------------------------------------


def _overrides(config: Config) -> dict[str, Any]:
    sc = config.sequence
    values = {"epochs": sc.epochs, "patience": sc.patience, "batch_size": sc.batch_size}
    return {"seed": sc.seed, **{k: v for k, v in values.items() if v > 0}}


def _teacher(version: int | None) -> tuple[SequenceBundle, int]:
    """The student's teacher: the given reelflow-bert4rec version, else its champion."""
    from models.registry import champion_version

    if version is None:
        current = champion_version(registered_name("bert4rec"))
        if current is None:
            raise ValueError(
                "the student distills a registered reelflow-bert4rec: train bert4rec first "
                "(reelflow train --model bert4rec) or pass its version"
            )
        version = int(current.version)
    return load_sequence_version("bert4rec", version), int(version)


def train_sequence_run(
    model: str,
    ds: str | None = None,
    teacher_version: int | None = None,
    config: Config | None = None,
    paths: Paths | None = None,
) -> dict[str, Any]:
    """Trains `model` on the interactions through `ds` (all when None), logs, registers and
    gates it; returns the summary `reelflow train` prints."""
    import mlflow

    config = config or load_config()
    paths = paths or Paths.from_env()
    name = registered_name(model)
    split = build_split(paths, config, ds)
    teacher, teacher_note = None, {}
    if model == "student":
        teacher, version = _teacher(teacher_version)
        if not np.array_equal(teacher.vocab.ids, split.vocab.ids):
            raise ValueError(
                f"reelflow-bert4rec version {version} knows {len(teacher.vocab) - 1} videos, "
                f"the data through {ds} has {len(split.vocab) - 1}: train bert4rec on this data "
                "first, the student distills a teacher over the same catalog"
            )
        teacher_note = {"teacher_model": "reelflow-bert4rec", "teacher_version": version}

    setup_tracking(paths)
    mlflow.set_experiment(experiment_id=experiment(name, paths))
    val = split.stage("val")
    with mlflow.start_run(run_name=f"{model}-{ds or 'all'}") as run:

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            # `epoch_` names: the curves stay apart from the final metrics of the best epoch.
            mlflow.log_metrics({f"epoch_{k}": float(v) for k, v in metrics.items()}, step=epoch)

        result = train_sequence_model(
            model,
            split,
            trainer_overrides={**_overrides(config), "progress": False},
            teacher=teacher,
            on_epoch=on_epoch,
        )
        mlflow.log_params(
            {
                **result.params(),
                **teacher_note,
                "data_through_ds": ds or "all",
                "users": len(split.sequences),
                "evaluated_users": len(val.targets),
                "videos": split.n_items,
                "split": "leave-one-out by time: last view test, the one before validation",
            }
        )
        mlflow.log_metrics(result.metrics)
        unbiased = small_matrix_metrics(result.bundle, split, paths, config)
        unbiased_metrics = {
            k: v
            for name, found in unbiased.items()
            for k, v in slice_metric_names(name, found, SLICE_METRICS).items()
        }
        mlflow.log_metrics(unbiased_metrics)
        report = {
            "model": name,
            "data_through_ds": ds,
            "split": "leave-one-out",
            "metrics": result.metrics,
            "history": result.history,
            "unbiased": unbiased,
            **teacher_note,
        }
        log_report(
            report,
            {
                "reelflow": config.to_dict(),
                "model": result.model_config,
                "trainer": result.trainer_config,
            },
            result.history,
            "val_ndcg_at_10",
            result.metrics["popularity_val_ndcg_at_10"],
            label=model,
        )
        example = pd.DataFrame(
            {
                "seq_video_ids": [
                    split.vocab.raw(s[-split.max_len :]).tolist() for s in split.sequences[:5]
                ]
            }
        )
        log_sequence_bundle(result.bundle, example)
        version = int(mlflow.register_model(f"runs:/{run.info.run_id}/model", name).version)
        decision = gate_version(
            name,
            version,
            f"leave-one-out val, data_through_ds={ds or 'all'}",
            score_on(result.bundle, val, split.vocab),
            popularity_metrics(val),
            lambda champion: score_on(load_sequence_version(model, champion), val, split.vocab),
            config,
        )
        mlflow.set_tags({"gate": decision["decision"], "gate_reason": decision["reason"]})
    pick = {
        f"{p}_{m}"
        for p in ("val", "test", "popularity_val", "popularity_test")
        for m in SUMMARY_METRICS
    }
    return {
        "model": name,
        "version": version,
        "run_id": run.info.run_id,
        "promoted": decision["promoted"],
        "gate_reason": decision["reason"],
        "gate": decision,
        "data_through_ds": ds,
        "metrics": {
            k: v for k, v in result.metrics.items() if k in pick and not k.startswith("popularity")
        },
        "popularity": {
            k: v for k, v in result.metrics.items() if k.startswith("popularity") and k in pick
        },
        "unbiased": unbiased_metrics,
        "parameters": int(result.metrics["parameters"]),
        "epochs_run": int(result.metrics["epochs_run"]),
        "champion_version": decision["champion_version"],
        **teacher_note,
    }


def promote_sequence(
    model: str,
    version: int,
    force: bool = False,
    config: Config | None = None,
    paths: Paths | None = None,
) -> dict[str, Any]:
    """`reelflow promote --model gru --version N`: the gate on the version's own split."""
    config = config or load_config()
    paths = paths or Paths.from_env()
    setup_tracking(paths)
    through = run_params(registered_name(model), version).get("data_through_ds", "all")
    bundle = load_sequence_version(model, version)
    frame = read_interactions(paths, None if through == "all" else through)
    split = from_frame(frame, vocab=bundle.vocab, max_len=bundle.model.config.max_len)
    val = split.stage("val")
    return gate_version(
        registered_name(model),
        int(version),
        f"leave-one-out val, data_through_ds={through}",
        score_on(bundle, val, split.vocab),
        popularity_metrics(val),
        lambda champion: score_on(load_sequence_version(model, champion), val, split.vocab),
        config,
        force=force,
    )
