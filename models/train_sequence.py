"""Train a sequence model (GRU4Rec, BERT4Rec, or a student distilled from BERT4Rec) and
evaluate it by full ranking on the time-ordered leave-one-out split, next to popularity.

Usage:
    from models.sequence_data import from_frame, read_lake_interactions
    from models.train_sequence import train_sequence_model

    split = from_frame(read_lake_interactions())          # the pipeline's lake
    gru = train_sequence_model("gru", split)
    bert = train_sequence_model("bert4rec", split)
    student = train_sequence_model("student", split, teacher=bert.bundle)
    gru.metrics["test_ndcg_at_10"], gru.metrics["popularity_test_ndcg_at_10"]
    gru.bundle.save("var/models/gru")                     # weights + JSON config + vocab

Model selection (early stopping, best epoch) uses the validation targets only; test metrics
per epoch (`track_test=True`) are for reporting learning curves, never for choosing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from models.bert4rec import BERT4Rec, BERT4RecConfig
from models.evaluate import metric_names, next_item_metrics, popularity_scores
from models.gru import GRU4Rec, GRU4RecConfig
from models.sequence_data import EvalSet, SequenceSplit, from_frame
from models.student import Distillation, Student, StudentConfig
from models.trainer import TrainerConfig, fit, seed_everything
from models.vocab import Vocabulary

MODELS: dict[str, tuple[type, type]] = {
    "gru": (GRU4Rec, GRU4RecConfig),
    "bert4rec": (BERT4Rec, BERT4RecConfig),
    "student": (Student, StudentConfig),
}
MONITOR = "val_ndcg_at_10"

# Picked from a few tries on MovieLens-100K, by validation NDCG@10 (bench/train_seq.py) and
# a CPU time budget; override per call with `trainer_overrides`.
TRAINER_DEFAULTS: dict[str, dict[str, Any]] = {
    "gru": {"epochs": 15, "batch_size": 64, "lr": 3e-3, "weight_decay": 1e-4, "patience": 3},
    "bert4rec": {"epochs": 25, "batch_size": 64, "lr": 3e-3, "weight_decay": 1e-4, "patience": 5},
    # The student runs its whole cosine schedule (patience = epochs): its validation NDCG@10
    # moves by ±0.005 from epoch to epoch and kept rising into the low-learning-rate end
    # (best epochs 44-49 of 50), where patience 5 had stopped it at epochs 13-22.
    "student": {"epochs": 50, "batch_size": 64, "lr": 5e-3, "weight_decay": 1e-4, "patience": 50},
}


def trainer_config(name: str, **overrides: Any) -> TrainerConfig:
    values = {"monitor": MONITOR, "grad_clip": 5.0, **TRAINER_DEFAULTS[name], **overrides}
    return TrainerConfig(**values)


def model_config(name: str, split: SequenceSplit, **overrides: Any):
    _, config_cls = MODELS[name]
    return config_cls(n_items=split.n_items, max_len=split.max_len, **overrides)


@dataclass
class SequenceBundle:
    """A trained sequence model with its item vocabulary; saved as state dict + JSON, never a
    pickled module, and loaded with `weights_only=True`."""

    name: str  # gru | bert4rec | student
    model: nn.Module
    vocab: Vocabulary

    def config(self) -> dict[str, Any]:
        return asdict(self.model.config)

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), folder / "state_dict.pt")
        (folder / "config.json").write_text(
            json.dumps({"name": self.name, "model": self.config()}, indent=2)
        )
        self.vocab.save(folder / "vocab.json")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> SequenceBundle:
        folder = Path(folder)
        spec = json.loads((folder / "config.json").read_text())
        model_cls, config_cls = MODELS[spec["name"]]
        model = model_cls(config_cls(**spec["model"]))
        state = torch.load(folder / "state_dict.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        model.eval()
        return cls(spec["name"], model, Vocabulary.load(folder / "vocab.json"))

    def windows(self, histories: list) -> torch.Tensor:
        """Raw-id histories (oldest first) -> the model's left-padded index windows (one
        vocabulary lookup for all users: 100k separate lookups took seconds)."""
        max_len = self.model.config.max_len
        inputs = np.zeros((len(histories), max_len), dtype=np.int64)
        raw = [np.asarray(h if h is not None else [], dtype=np.int64) for h in histories]
        lengths = np.array([len(h) for h in raw], dtype=np.int64)
        if lengths.sum() == 0:
            return torch.from_numpy(inputs)
        looked = np.split(self.vocab.lookup(np.concatenate(raw)), np.cumsum(lengths)[:-1])
        for row, idx in enumerate(looked):
            idx = idx[idx > 0][-max_len:]
            inputs[row, max_len - len(idx) :] = idx
        return torch.from_numpy(inputs)

    def scores(self, histories: list, video_ids: np.ndarray | None = None) -> np.ndarray:
        """(users, videos) next-video scores after raw-id histories: over this bundle's whole
        vocabulary (column j = index j + 1), or over the raw `video_ids` given, where a video
        the model never saw scores -inf (it cannot recommend it)."""
        own = score_items(self.model, self.windows(histories))
        if video_ids is None:
            return own
        columns = self.vocab.lookup(np.asarray(video_ids)) - 1
        out = np.full((len(histories), len(columns)), -np.inf, dtype=np.float32)
        out[:, columns >= 0] = own[:, columns[columns >= 0]]
        return out

    def unseen_scores(self, histories: list) -> np.ndarray:
        """`scores` with each user's own history masked (-inf)."""
        scores = self.scores(histories)
        for row, raw in enumerate(histories):
            seen = self.vocab.lookup(np.asarray(raw if raw is not None else [], dtype=np.int64))
            scores[row, seen[seen > 0] - 1] = -np.inf
        return scores

    def recommend(self, histories: list[np.ndarray], k: int = 10) -> np.ndarray:
        """Raw item ids of the k best unseen items after each raw-id history (oldest first)."""
        top = np.argsort(-self.unseen_scores(histories), axis=1)[:, :k]
        return self.vocab.raw(top + 1)


@dataclass
class SequenceTrainingResult:
    name: str
    model: nn.Module
    bundle: SequenceBundle
    metrics: dict[str, float]  # val_/test_/popularity_test_ metric_at_k, plain floats
    history: list[dict[str, float]]  # one dict per epoch run: train_loss, val_ndcg_at_10, ...
    model_config: dict[str, Any]
    trainer_config: dict[str, Any]
    teacher: SequenceTrainingResult | None = field(default=None, repr=False)

    def params(self) -> dict[str, Any]:
        """Flat parameters, ready for `mlflow.log_params`."""
        return {
            "model": self.name,
            **{f"model.{k}": v for k, v in self.model_config.items()},
            **{f"trainer.{k}": v for k, v in self.trainer_config.items()},
        }


@torch.no_grad()
def score_items(model: nn.Module, inputs: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    """(users, n_items) scores; column j is item index j + 1 (padding dropped)."""
    model.eval()
    # Wherever the model lives (a GPU during training's per-epoch validation): inputs go
    # there, scores come back to the CPU.
    dev = next(model.parameters()).device
    parts = [
        model.predict_next(inputs[start : start + batch_size].to(dev))[:, 1:].float().cpu().numpy()
        for start in range(0, len(inputs), batch_size)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, model.config.n_items), np.float32)


def evaluate_model(model: nn.Module, stage: EvalSet, ks=(10, 20)) -> dict[str, float]:
    """Full ranking of every item, the user's history masked."""
    return next_item_metrics(
        score_items(model, stage.inputs),
        stage.targets - 1,
        [h - 1 for h in stage.history],
        ks,
        popularity=stage.popularity[1:],
    )


def popularity_metrics(stage: EvalSet, ks=(10, 20)) -> dict[str, float]:
    counts = stage.popularity[1:]
    return next_item_metrics(
        popularity_scores(counts, len(stage.targets)),
        stage.targets - 1,
        [h - 1 for h in stage.history],
        ks,
        popularity=counts,
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _teacher_model(teacher: Any) -> BERT4Rec:
    if isinstance(teacher, SequenceTrainingResult):
        teacher = teacher.bundle
    if isinstance(teacher, str | Path):
        teacher = SequenceBundle.load(teacher)
    if isinstance(teacher, SequenceBundle):
        teacher = teacher.model
    if not isinstance(teacher, BERT4Rec) or isinstance(teacher, Student):
        raise TypeError(f"the student's teacher must be a BERT4Rec, got {type(teacher).__name__}")
    return teacher


def train_sequence_model(
    name: str,
    data: SequenceSplit | pd.DataFrame,
    *,
    model_overrides: dict[str, Any] | None = None,
    trainer_overrides: dict[str, Any] | None = None,
    teacher: SequenceTrainingResult | SequenceBundle | BERT4Rec | str | Path | None = None,
    teacher_overrides: dict[str, Any] | None = None,
    track_test: bool = False,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> SequenceTrainingResult:
    """Trains `name` (gru | bert4rec | student) on the split's training windows with early
    stopping on validation NDCG@10, then evaluates validation and test by full ranking.

    `data`: a `SequenceSplit`, or a (user_id, video_id, event_ts) frame to build one from.
    `teacher` (student only): a trained BERT4Rec (result, bundle, module or saved folder);
    when None, one is trained first in this call with `teacher_overrides` for its model.
    `on_epoch(epoch, metrics)`: called after each epoch with that epoch's metrics (to log).
    """
    if name not in MODELS:
        raise ValueError(f"unknown sequence model {name!r}; expected one of {sorted(MODELS)}")
    split = data if isinstance(data, SequenceSplit) else from_frame(data)
    teacher_result = None
    if name == "student":
        if teacher is None:
            teacher_result = train_sequence_model(
                "bert4rec",
                split,
                model_overrides=teacher_overrides,
                trainer_overrides=trainer_overrides,
                track_test=track_test,
            )
            teacher = teacher_result
        teacher_module = _teacher_model(teacher)

    tconf = trainer_config(name, **(trainer_overrides or {}))
    mconf = model_config(name, split, **(model_overrides or {}))
    seed_everything(tconf.seed)  # the initial weights too, not only the batch order
    model_cls, _ = MODELS[name]
    model = model_cls(mconf)
    trained = Distillation(model, teacher_module) if name == "student" else model

    val, test = split.stage("val"), split.stage("test")

    def epoch_metrics(epoch: int, metrics: dict[str, float]) -> dict[str, float]:
        out = metric_names({"ndcg@10": evaluate_model(model, val, ks=(10,))["ndcg@10"]}, "val")
        if track_test:
            out.update(metric_names(evaluate_model(model, test, ks=(10,)), "test"))
            out = {
                k: v for k, v in out.items() if k in (MONITOR, "test_ndcg_at_10", "test_hr_at_10")
            }
        if on_epoch is not None:
            on_epoch(epoch, {**metrics, **out})
        return out

    windows = split.training_windows()
    started = time.perf_counter()
    history = fit(
        trained,
        {"items": windows[:, :-1]},
        {"next": windows[:, 1:]},
        tconf,
        epoch_metrics,
    )
    seconds = time.perf_counter() - started
    model.eval()
    best_epoch = 1 + int(np.argmax([h[MONITOR] for h in history]))
    metrics = {
        **metric_names(evaluate_model(model, val), "val"),
        **metric_names(evaluate_model(model, test), "test"),
        **metric_names(popularity_metrics(test), "popularity_test"),
        **metric_names(popularity_metrics(val), "popularity_val"),
        "parameters": float(count_parameters(model)),
        "epochs_run": float(len(history)),
        "best_epoch": float(best_epoch),
        "train_seconds": seconds,
        "training_sequences": float(len(windows)),
        "training_transitions": float(split.training_transitions()),
    }
    if teacher_result is not None or name == "student":
        metrics["teacher_parameters"] = float(count_parameters(teacher_module))
    return SequenceTrainingResult(
        name=name,
        model=model,
        bundle=SequenceBundle(name, model, split.vocab),
        metrics=metrics,
        history=history,
        model_config=mconf.to_dict(),
        trainer_config={f.name: getattr(tconf, f.name) for f in fields(tconf)},
        teacher=teacher_result,
    )
