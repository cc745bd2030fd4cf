"""Next-video sequences and their time-ordered leave-one-out split.

Each user's interactions, oldest first, become one sequence of dense item indices (a
`Vocabulary` that only grows; 0 is padding). The split, per user with at least three
interactions: the last one is the test target, the one before the validation target, the rest
is training. Users with fewer stay in training only. Evaluation ranks every item under two
protocols (models/evaluate.py): the user's history masked (for validation the training part,
for test everything before the test target, the validation item included), and nothing masked
(`unmasked_` metrics, RecBole's protocol), each next to popularity and the item-to-item
transition baseline (models/baselines.py).

Training rows are windows of `max_len + 1` items cut from the end of each training part with
stride `max_len` (left-padded with 0): a window's first `max_len` items are the model's input
and its last `max_len` items the next-item targets, so one row trains every position at once.
A model config's `window_stride` (BERT4Rec's) overlaps them instead.

Sources: any (user, item, time) frame (`from_frame`), the lake's normalized interactions
(`lake.read.read_interactions`) for the pipeline, MovieLens `u.data` (`read_movielens`) for the
bench.

The next-item kind of model (models/registry.py `data`: GRU4Rec, SASRec, BERT4Rec, the
student) in training and in use: `SequenceBundle` (the model with its video vocabulary: scores,
top-k, the export's vectors), full-ranking evaluation next to popularity, `SequenceData` (what
one training run of such a model reads, logs and is gated on) and `train_sequence_model` (a
run without MLflow, for benchmarks and tests):

    split = from_frame(read_movielens("u.data"))
    gru = train_sequence_model("gru", split)
    bert = train_sequence_model("bert4rec", split)
    student = train_sequence_model("student", split, teacher=bert.bundle)
    gru.metrics["test_ndcg_at_10"], gru.metrics["popularity_test_ndcg_at_10"]

Model selection (early stopping, best epoch) uses the validation targets only; test metrics
per epoch (`track_test=True`) are for reporting learning curves, never for choosing. Item ids
map through the persisted vocabulary (`$REELFLOW_HOME/models/vocab/videos.json`), which only
grows: an index means the same video in every model and on every day, which is what lets the
gate score an older champion on a newer challenger's split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from lake.read import read_interactions
from models.baselines import Transitions
from models.bundle import Bundle
from models.evaluate import (
    UNMASKED,
    RowBlocks,
    both_protocols,
    metric_names,
    next_item_metrics,
    popularity_metrics,
)
from models.gate import GateSplit, run_params
from models.interface import NextItemModel
from models.registry import MODELS, SEQUENCE_DATA, spec
from models.sampled import scope_of
from models.student import Distillation
from models.tracking import champion_version, registered_name
from models.trainer import TrainerConfig, out_of_time
from models.training import Evaluation, fit_model
from models.unbiased import SLICE_METRICS, slice_metric_names, small_matrix_slice
from models.vocab import Vocabulary, persisted_vocabulary
from reelflow.config import Config, SequenceConfig
from reelflow.paths import Paths

MAX_LEN = 50
STAGES = ("val", "test")
MONITOR = "val_ndcg_at_10"  # what early stopping and the learning curves follow
SUMMARY_METRICS = ("ndcg_at_10", "recall_at_10", "mrr_at_10", "ndcg_at_20", "recall_at_20")


@dataclass
class EvalSet:
    """One evaluation stage: a history window, a target and the items to mask, per user."""

    user_ids: np.ndarray  # raw user ids
    inputs: torch.Tensor  # (users, max_len) item indices, left-padded with 0
    targets: np.ndarray  # (users,) item index of the held-out interaction
    history: list[np.ndarray]  # item indices the user saw before the target (masked)
    popularity: np.ndarray  # (n_items + 1,) interactions per item before the targets

    def relevant(self) -> list[np.ndarray]:
        """Per user: the target's score column (item index - 1)."""
        return [np.array([t]) for t in self.targets - 1]

    def seen(self) -> list[np.ndarray]:
        """Per user: the score columns of the history (masked)."""
        return [h - 1 for h in self.history]

    def metrics(
        self, scores: np.ndarray, ks: tuple[int, ...] = (10, 20), unmasked: bool = True
    ) -> dict[str, float]:
        """Full-ranking metrics of `scores` (users, n_items): column j is item index j + 1.
        The history masked (`ndcg@10`, ...) and, when `unmasked`, also nothing masked
        (`unmasked_ndcg@10`, ...; padding is no column: it is never ranked)."""

        def protocol(mask_history: bool) -> dict[str, float]:
            return next_item_metrics(
                scores,
                self.targets - 1,
                self.seen(),
                ks,
                popularity=self.popularity[1:],
                mask_history=mask_history,
            )

        return both_protocols(protocol) if unmasked else protocol(True)

    def popularity_metrics(self, ks: tuple[int, ...] = (10, 20)) -> dict[str, float]:
        """The popularity baseline on this stage, both protocols: training counts rank every
        item."""
        return both_protocols(
            lambda mask_history: popularity_metrics(
                self.popularity[1:], self.relevant(), self.seen(), ks, mask_history=mask_history
            )
        )

    def transition_metrics(
        self, transitions: Transitions, ks: tuple[int, ...] = (10, 20)
    ) -> dict[str, float]:
        """The transition baseline on this stage, both protocols: what followed each user's
        last item in `transitions` (the training sequences' counts, over item indices), this
        stage's popularity breaking ties."""
        last_items = self.inputs[:, -1].numpy()  # inputs are left-padded: the last is the latest
        scores = RowBlocks(
            (len(last_items), len(self.popularity) - 1),
            lambda rows: transitions.scores(last_items[rows], self.popularity)[:, 1:],
        )
        return self.metrics(scores, ks)


@dataclass
class SequenceSplit:
    vocab: Vocabulary  # item id -> index
    user_ids: np.ndarray  # raw user id of each sequence
    sequences: list[np.ndarray]  # item indices (>= 1), oldest first, the whole history
    max_len: int = MAX_LEN  # the longest history a model reads

    @property
    def n_items(self) -> int:
        return len(self.vocab) - 1

    def evaluated(self) -> np.ndarray:
        """Positions of the users that hold out a validation and a test interaction."""
        return np.flatnonzero(np.array([len(s) >= 3 for s in self.sequences], dtype=bool))

    def train_part(self, i: int) -> np.ndarray:
        seq = self.sequences[i]
        return seq[:-2] if len(seq) >= 3 else seq

    def training_windows(self, stride: int | None = None) -> torch.Tensor:
        """(rows, max_len + 1) windows cut from the end of each training part every `stride`
        items. The default, `max_len`, covers every training transition exactly once; a
        shorter stride overlaps the windows, so each item appears in about `max_len / stride`
        of them (BERT4Rec, which learns only from the items it masks, reads more that way)."""
        width = self.max_len + 1
        stride = self.max_len if stride is None else stride
        if not 1 <= stride <= self.max_len:
            raise ValueError(f"window stride {stride} is outside 1..max_len ({self.max_len})")
        rows = []
        for i in range(len(self.sequences)):
            seq = self.train_part(i)
            end = len(seq)
            while end >= 2:
                window = seq[max(0, end - width) : end]
                rows.append(np.pad(window, (width - len(window), 0)))
                if end <= width:  # this window already starts at the sequence's first item
                    break
                end -= stride
        if not rows:
            return torch.zeros((0, width), dtype=torch.long)
        return torch.from_numpy(np.stack(rows).astype(np.int64))

    def training_transitions(self) -> int:
        return sum(max(len(self.train_part(i)) - 1, 0) for i in range(len(self.sequences)))

    def stage(self, name: str) -> EvalSet:
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; expected one of {STAGES}")
        users = self.evaluated()
        cut = 2 if name == "val" else 1
        histories = [self.sequences[i][:-cut] for i in users]
        targets = np.array([self.sequences[i][-cut] for i in users], dtype=np.int64)
        inputs = np.zeros((len(users), self.max_len), dtype=np.int64)
        for row, seen in enumerate(histories):
            recent = seen[-self.max_len :]
            inputs[row, self.max_len - len(recent) :] = recent
        counted = [self.train_part(i) for i in range(len(self.sequences))]
        if name == "test":
            counted.append(np.array([self.sequences[i][-2] for i in users], dtype=np.int64))
        popularity = np.bincount(
            np.concatenate(counted) if counted else np.zeros(0, dtype=np.int64),
            minlength=self.n_items + 1,
        )
        return EvalSet(
            self.user_ids[users], torch.from_numpy(inputs), targets, histories, popularity
        )

    def split_frame(self) -> pd.DataFrame:
        """Every interaction with its role (train / val / test), in sequence order: the file
        another tool reads to evaluate on exactly this split."""
        users, items, roles, positions = [], [], [], []
        for user, seq in zip(self.user_ids, self.sequences, strict=True):
            role = np.full(len(seq), "train", dtype=object)
            if len(seq) >= 3:
                role[-2:] = ["val", "test"]
            users.append(np.full(len(seq), user))
            items.append(self.vocab.raw(seq))
            roles.append(role)
            positions.append(np.arange(len(seq)))
        return pd.DataFrame(
            {
                "user_id": np.concatenate(users),
                "item_id": np.concatenate(items),
                "position": np.concatenate(positions),
                "split": np.concatenate(roles),
            }
        )


def from_frame(
    frame: pd.DataFrame,
    user: str = "user_id",
    item: str = "video_id",
    time: str = "event_ts",
    vocab: Vocabulary | None = None,
    max_len: int = MAX_LEN,
) -> SequenceSplit:
    """Sequences from any (user, item, time) frame; ties in time keep the frame's order.

    A given `vocab` is extended with unseen items (existing indices never move)."""
    frame = frame[[user, item, time]].dropna()
    order = np.lexsort((np.arange(len(frame)), frame[time].to_numpy(), frame[user].to_numpy()))
    users = frame[user].to_numpy()[order]
    raw_items = frame[item].to_numpy()[order]
    vocab = Vocabulary.build(raw_items) if vocab is None else vocab.extend(raw_items)
    items = vocab.lookup(raw_items)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    return SequenceSplit(vocab, users[starts], np.split(items, starts[1:]), max_len)


def read_movielens(path: str | Path) -> pd.DataFrame:
    """MovieLens `u.data` (user, item, rating, unix seconds; tab-separated, no header)."""
    return pd.read_csv(
        path, sep="\t", header=None, names=["user_id", "video_id", "rating", "event_ts"]
    )


# ---- the model in use: scores, top-k, the export's vectors -----------------------------------


@dataclass
class SequenceBundle(Bundle):
    """A trained next-item model with its video vocabulary."""

    vocab: Vocabulary
    pyfunc_params: ClassVar[dict[str, Any]] = {"k": 10}

    def vocabularies(self) -> dict[str, Vocabulary]:
        return {"videos": self.vocab}

    @classmethod
    def restore(cls, name, model, vocabularies, settings) -> SequenceBundle:
        return cls(name, model, vocabularies["videos"])

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

    def predict(self, frame: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """The pyfunc: `seq_video_ids` (raw video ids, oldest first: the `user_sequences`
        feature) in; the `k` best unseen videos per row and their scores out."""
        k = int((params or {}).get("k", 10))
        scores = self.unseen_scores(list(frame["seq_video_ids"]))
        k = min(k, scores.shape[1])
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return pd.DataFrame(
            {
                "video_ids": [self.vocab.raw(row + 1).astype(np.int64).tolist() for row in top],
                "scores": [scores[i, row].astype(np.float64).tolist() for i, row in enumerate(top)],
            }
        )

    @torch.no_grad()
    def item_vectors(
        self, video_ids: np.ndarray, video_frame: pd.DataFrame | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The videos of `video_ids` the model knows, and their rows of the model's item table:
        an inner-product index over them retrieves what the model would rank first."""
        index = self.vocab.lookup(video_ids)  # videos the model never saw have no vector
        known = np.flatnonzero(index > 0)
        table = self.model.item_vectors().float().cpu().numpy()
        return known, table[index[known] - 1]

    @torch.no_grad()
    def queries(self, histories: list, user_frame: pd.DataFrame | None = None) -> np.ndarray:
        """(users, d) queries from raw-id histories (oldest first), in `item_vectors`' space."""
        model = self.model.eval()
        dev = next(model.parameters()).device
        inputs = self.windows(histories).to(dev)
        width = model.item_vectors().shape[1]
        # One preallocated array: keeping each batch's last step as a view would keep the whole
        # batch output alive (2.5 GiB for 100k users, bench/export.py).
        out = np.empty((len(inputs), width), dtype=np.float32)
        for start in range(0, len(inputs), 1024):
            batch = inputs[start : start + 1024]
            out[start : start + len(batch)] = model.query({"items": batch}).float().cpu().numpy()
        return out


@torch.no_grad()
def score_items(model: NextItemModel, inputs: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
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


DENSE_SCORE_BYTES = 1024**3  # above: the model scores a block of users at a time


def evaluate_model(
    model: NextItemModel, stage: EvalSet, ks=(10, 20), unmasked: bool = True
) -> dict[str, float]:
    """Full ranking of every item, the user's history masked, and when `unmasked` also with
    nothing masked (`unmasked_` keys). The model scores once for both where the (users,
    items) matrix fits in DENSE_SCORE_BYTES; a larger one (1,000 users x 908k videos is
    3.6 GB) is scored a block of users at a time, once per protocol."""
    n_items = model.config.n_items
    if len(stage.inputs) * n_items * 4 <= DENSE_SCORE_BYTES:
        return stage.metrics(score_items(model, stage.inputs), ks, unmasked)
    scores = RowBlocks(
        (len(stage.inputs), n_items), lambda rows: score_items(model, stage.inputs[rows])
    )
    return stage.metrics(scores, ks, unmasked)


def score_on(bundle: SequenceBundle, stage: EvalSet, vocab: Vocabulary) -> dict[str, float]:
    """Full-ranking metrics of any version on a stage indexed by `vocab`, both protocols:
    histories go in as raw ids, and the version's scores come back onto `vocab`'s columns; a
    video the version never saw ranks last (it cannot recommend it)."""
    raw_inputs = [vocab.raw(row[row > 0]) for row in stage.inputs.numpy()]
    return stage.metrics(bundle.scores(raw_inputs, vocab.ids))


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


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---- one training run: what it reads, logs and is gated on ------------------------------------


def video_vocabulary_path(paths: Paths) -> Path:
    return paths.models / "vocab" / "videos.json"


def build_split(paths: Paths, config: Config, through_ds: str | None) -> SequenceSplit:
    """Every user's whole history through `through_ds` (all days when None), indexed by the
    persisted vocabulary (grown with the videos it did not hold yet)."""
    frame = read_interactions(paths, through_ds)
    if frame.empty:
        raise ValueError(f"no interactions through {through_ds} under {paths.lake}")
    vocab = persisted_vocabulary(video_vocabulary_path(paths), np.sort(frame["video_id"].unique()))
    return from_frame(frame, vocab=vocab, max_len=config.features.sequence_length)


class SequenceData:
    """One run of a next-item model: the training windows of `split`, early stopping on
    validation NDCG@10, full-ranking evaluation of validation and test next to popularity.
    `teacher` (a model whose spec names one): the frozen model it distills."""

    bundle_class = SequenceBundle
    source = "lake/normalized/interactions: every user's whole history"
    monitor = MONITOR

    def __init__(
        self,
        name: str,
        split: SequenceSplit,
        *,
        model_overrides: dict[str, Any] | None = None,
        trainer_overrides: dict[str, Any] | None = None,
        teacher: NextItemModel | None = None,
        track_test: bool = False,
        sequence: SequenceConfig | None = None,
    ):
        self.name, self.split, self.teacher, self.track_test = name, split, teacher, track_test
        self.trainer, self.model_config = resolved_configs(
            name, split, model_overrides, trainer_overrides, sequence
        )
        self.val, self.test = split.stage("val"), split.stage("test")
        stride = getattr(self.model_config, "window_stride", None)  # BERT4Rec's; None: max_len
        windows = split.training_windows(None if stride is None else min(stride, split.max_len))
        self.train, self.targets = {"items": windows[:, :-1]}, {"next": windows[:, 1:]}
        self.through_ds: str | None = None
        self.notes: dict[str, Any] = {}  # the teacher's name and version, when it has one
        self.run_name = name

    @classmethod
    def for_run(
        cls,
        name: str,
        ds: str | None,
        config: Config,
        paths: Paths,
        teacher_version: int | None = None,
    ) -> SequenceData:
        """The interactions through `ds` (all when None); the teacher, when the model has
        one: its version `teacher_version`, else its champion."""
        split = build_split(paths, config, ds)
        teacher, notes = None, {}
        teacher_name = spec(name).teacher
        if teacher_name is not None:
            bundle, version = _teacher(name, teacher_name, teacher_version)
            if not np.array_equal(bundle.vocab.ids, split.vocab.ids):
                raise ValueError(
                    f"{registered_name(teacher_name)} version {version} knows "
                    f"{len(bundle.vocab) - 1} videos, the data through {ds} has "
                    f"{len(split.vocab) - 1}: train {teacher_name} on this data first, the "
                    f"{name} distills a teacher over the same catalog"
                )
            teacher = bundle.model
            notes = {"teacher_model": registered_name(teacher_name), "teacher_version": version}
        sc = config.sequence
        values = {"epochs": sc.epochs, "patience": sc.patience, "batch_size": sc.batch_size}
        overrides = {
            "seed": sc.seed,
            "max_rows_per_epoch": sc.max_windows_per_epoch,
            "max_seconds": sc.max_train_minutes * 60,
            **{k: v for k, v in values.items() if v > 0},
        }
        data = cls(
            name,
            split,
            trainer_overrides={**overrides, "progress": False},
            teacher=teacher,
            sequence=config.sequence,
        )
        data.through_ds, data.notes = ds, notes
        data.run_name = f"{name}-{ds or 'all'}"
        return data

    @staticmethod
    def scheduled_day(ds: str, paths: Paths) -> str:
        """The data day a scheduled run for `ds` trains through: `ds` itself."""
        return ds

    @staticmethod
    def version_split(
        name: str, version: int, bundle: SequenceBundle, config: Config, paths: Paths
    ) -> GateSplit:
        """The leave-one-out validation split of a registered version's own data."""
        through = run_params(registered_name(name), version).get("data_through_ds", "all")
        frame = read_interactions(paths, None if through == "all" else through)
        split = from_frame(frame, vocab=bundle.vocab, max_len=bundle.model.config.max_len)
        return _gate_split(split, through)

    def wrap(self, model: NextItemModel) -> nn.Module:
        """What the trainer fits: the model, or the model beside its frozen teacher."""
        sampler = getattr(model, "sampler", None)
        if sampler is not None:  # popularity sampling draws by the training targets' counts
            sampler.fit(item_counts(self.targets["next"], self.split.n_items))
        return model if self.teacher is None else Distillation(model, self.teacher)

    def bundle(self, model: NextItemModel) -> SequenceBundle:
        return SequenceBundle(self.name, model, self.split.vocab)

    def on_epoch(self, bundle: SequenceBundle, log: Callable[[int, dict[str, float]], None]):
        """The trainer's callback: validation NDCG@10 (the early-stopping metric); `log`
        receives every metric of the epoch."""

        def epoch_metrics(epoch: int, metrics: dict[str, float]) -> dict[str, float]:
            model = bundle.model
            # Early stopping follows the masked metric only: one ranking per epoch.
            val = evaluate_model(model, self.val, ks=(10,), unmasked=False)
            out = metric_names(val, "val", only=("ndcg@10",))
            if self.track_test:
                test = evaluate_model(model, self.test, ks=(10,))
                out.update(metric_names(test, "test", only=("ndcg@10", "hr@10")))
            log(epoch, {**metrics, **out})
            return out

        return epoch_metrics

    def configs(self) -> dict[str, Any]:
        """The model's and the trainer's configuration, as the run logs them."""
        return config_dicts(self.trainer, self.model_config)

    def params(self) -> dict[str, Any]:
        configs = self.configs()
        return {
            "model": self.name,
            **{f"model.{k}": v for k, v in configs["model"].items()},
            **{f"trainer.{k}": v for k, v in configs["trainer"].items()},
            **self.notes,
            "data_through_ds": self.through_ds or "all",
            "users": len(self.split.sequences),
            "evaluated_users": len(self.val.targets),
            "videos": self.split.n_items,
            "softmax": softmax_name(self.model_config),
            "split": "leave-one-out by time: last view test, the one before validation",
        }

    def metrics(self, model: NextItemModel, history, seconds: float) -> dict[str, float]:
        """The trained model's metrics (best epoch's weights), popularity's and the transition
        baseline's on validation and test, both protocols (`[unmasked_][popularity_|transition_]
        <val|test>_<metric>`), and the run's numbers."""
        model.eval()
        best_epoch = 1 + int(np.argmax([h[MONITOR] for h in history]))
        split = self.split
        # What the models train on: each user's training part, never a held-out target.
        transitions = Transitions.count(
            [split.train_part(i) for i in range(len(split.sequences))], len(split.vocab)
        )
        metrics = {}
        for name, stage in (("val", self.val), ("test", self.test)):
            metrics.update(metric_names(evaluate_model(model, stage), name))
            metrics.update(metric_names(stage.popularity_metrics(), f"popularity_{name}"))
            metrics.update(
                metric_names(stage.transition_metrics(transitions), f"transition_{name}")
            )
        metrics |= {
            "parameters": float(count_parameters(model)),
            "epochs_run": float(len(history)),
            # 1 when the time budget (sequence.max_train_minutes) ended the training
            "stopped_by_time_budget": float(out_of_time(history, self.trainer)),
            "best_epoch": float(best_epoch),
            "train_seconds": seconds,
            "training_sequences": float(len(self.train["items"])),
            "training_transitions": float(self.split.training_transitions()),
        }
        if self.teacher is not None:
            metrics["teacher_parameters"] = float(count_parameters(self.teacher))
        return metrics

    def evaluate(
        self,
        bundle: SequenceBundle,
        history: list[dict[str, float]],
        seconds: float,
        config: Config,
        paths: Paths,
    ) -> Evaluation:
        metrics = self.metrics(bundle.model, history, seconds)
        unbiased = small_matrix_metrics(bundle, self.split, paths, config)
        unbiased_metrics = {
            k: v
            for name, found in unbiased.items()
            for k, v in slice_metric_names(name, found, SLICE_METRICS).items()
        }
        report = {
            "model": registered_name(self.name),
            "data_through_ds": self.through_ds,
            "split": "leave-one-out",
            "metrics": metrics,
            "history": history,
            "unbiased": unbiased,
            **self.notes,
        }

        def picked(who: str) -> dict[str, float]:
            """`who`'s SUMMARY_METRICS on validation and test, both protocols."""
            names = {
                f"{protocol}{who}{stage}_{m}"
                for protocol in ("", UNMASKED)
                for stage in STAGES
                for m in SUMMARY_METRICS
            }
            return {k: v for k, v in metrics.items() if k in names}

        summary = {
            "data_through_ds": self.through_ds,
            "metrics": picked(""),
            "popularity": picked("popularity_"),
            "transition": picked("transition_"),
            "unbiased": unbiased_metrics,
            "parameters": int(metrics["parameters"]),
            "epochs_run": int(metrics["epochs_run"]),
        }
        return Evaluation(
            metrics={**metrics, **unbiased_metrics},
            report=report,
            baseline=metrics["popularity_val_ndcg_at_10"],
            baselines={"transition": metrics["transition_val_ndcg_at_10"]},
            gate=_gate_split(self.split, self.through_ds or "all"),
            summary=summary,
        )

    def example(self) -> pd.DataFrame:
        """Five users' histories in the pyfunc's input format, for the MLflow signature."""
        split = self.split
        return pd.DataFrame(
            {
                "seq_video_ids": [
                    split.vocab.raw(s[-split.max_len :]).tolist() for s in split.sequences[:5]
                ]
            }
        )


def _gate_split(split: SequenceSplit, through: str) -> GateSplit:
    val = split.stage("val")
    return GateSplit(
        f"leave-one-out val, data_through_ds={through}",
        lambda bundle: score_on(bundle, val, split.vocab),
        val.popularity_metrics(),
    )


def _teacher(name: str, teacher_name: str, version: int | None) -> tuple[SequenceBundle, int]:
    """The given version of the teacher's registered model, else its champion."""
    from models.bundle import load_version

    if version is None:
        current = champion_version(registered_name(teacher_name))
        if current is None:
            raise ValueError(
                f"the {name} distills a registered {registered_name(teacher_name)}: train "
                f"{teacher_name} first (reelflow train --model {teacher_name}) or pass its version"
            )
        version = int(current.version)
    return load_version(teacher_name, version), int(version)


# ---- a run without MLflow: benchmarks, tests ----------------------------------------------------


@dataclass
class SequenceTrainingResult:
    name: str
    model: NextItemModel
    bundle: SequenceBundle
    metrics: dict[str, float]  # val_/test_/popularity_test_ metric_at_k, plain floats
    history: list[dict[str, float]]  # one dict per epoch run: train_loss, val_ndcg_at_10, ...
    model_config: dict[str, Any]
    trainer_config: dict[str, Any]
    teacher: SequenceTrainingResult | None = field(default=None, repr=False)


def train_sequence_model(
    name: str,
    data: SequenceSplit | pd.DataFrame,
    *,
    model_overrides: dict[str, Any] | None = None,
    trainer_overrides: dict[str, Any] | None = None,
    teacher: SequenceTrainingResult | SequenceBundle | NextItemModel | str | Path | None = None,
    teacher_overrides: dict[str, Any] | None = None,
    teacher_name: str | None = None,
    track_test: bool = False,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    sequence: SequenceConfig | None = None,
) -> SequenceTrainingResult:
    """Trains `name` (a next-item model of MODELS) on the split's training windows with early
    stopping on validation NDCG@10, then evaluates validation and test by full ranking.

    `data`: a `SequenceSplit`, or a (user_id, video_id, event_ts) frame to build one from.
    `teacher` (a model whose spec names a teacher, the student): the trained teacher (result,
    bundle, module or saved folder; any next-item model); when None, one is trained first in
    this call, `teacher_name` (default the spec's, `sequence.teacher`) with
    `teacher_overrides` for its model. `on_epoch(epoch, metrics)`: called after each epoch
    with that epoch's metrics (to log). `sequence`: the full or sampled softmax choice
    (`full_softmax_max_items`, ...; default SequenceConfig's); `model_overrides` win over it
    (e.g. `{"sampled_negatives": 128}` samples whatever the catalog's size).
    """
    known = [n for n, s in MODELS.items() if s.data == SEQUENCE_DATA]
    if name not in known:
        raise ValueError(f"unknown sequence model {name!r}; expected one of {sorted(known)}")
    model_spec = spec(name)
    split = data if isinstance(data, SequenceSplit) else from_frame(data)
    teacher_result = teacher_module = None
    if model_spec.teacher is not None:
        if teacher is None:
            teacher_result = train_sequence_model(
                teacher_name or model_spec.teacher,
                split,
                model_overrides=teacher_overrides,
                trainer_overrides=trainer_overrides,
                track_test=track_test,
                sequence=sequence,
            )
            teacher = teacher_result
        teacher_module = _teacher_model(name, teacher)
    run = SequenceData(
        name,
        split,
        model_overrides=model_overrides,
        trainer_overrides=trainer_overrides,
        teacher=teacher_module,
        track_test=track_test,
        sequence=sequence,
    )

    bundle, history, seconds = fit_model(run, on_epoch or (lambda epoch, metrics: None))
    configs = run.configs()
    return SequenceTrainingResult(
        name=name,
        model=bundle.model,
        bundle=bundle,
        metrics=run.metrics(bundle.model, history, seconds),
        history=history,
        model_config=configs["model"],
        trainer_config=configs["trainer"],
        teacher=teacher_result,
    )


def _teacher_model(name: str, teacher: Any) -> NextItemModel:
    """The teacher's module: any next-item model (models/student.py distills each kind)."""
    if isinstance(teacher, SequenceTrainingResult):
        teacher = teacher.bundle
    if isinstance(teacher, str | Path):
        teacher = Bundle.load(teacher)
    if isinstance(teacher, SequenceBundle):
        teacher = teacher.model
    if not isinstance(teacher, NextItemModel):
        raise TypeError(
            f"the {name}'s teacher must be a next-item model, got {type(teacher).__name__}"
        )
    return teacher


# ---- the training loss: full softmax or sampled (models/sampled.py) ---------------------------


def resolved_configs(
    name: str,
    split: SequenceSplit,
    model_overrides: dict[str, Any] | None = None,
    trainer_overrides: dict[str, Any] | None = None,
    sequence: SequenceConfig | None = None,
) -> tuple[TrainerConfig, Any]:
    """The trainer's and the model's configs `name` trains with on `split`: the model's
    `trainer_defaults` and config defaults, the softmax chosen by the catalog's size, then the
    overrides. A cached result can be checked against them (bench/train_seq.py): a default
    changed since it was made is then seen, where its overrides alone would still match."""
    model_cls = spec(name).model_class()
    trainer = TrainerConfig(
        **{
            "monitor": MONITOR,
            "grad_clip": 5.0,
            **model_cls.trainer_defaults,
            **(trainer_overrides or {}),
        }
    )
    model_config = model_cls.config_class(
        n_items=split.n_items,
        max_len=split.max_len,
        **{
            **softmax_choice(model_cls.config_class, split.n_items, sequence or SequenceConfig()),
            **(model_overrides or {}),
        },
    )
    return trainer, model_config


def config_dicts(trainer: TrainerConfig, model_config: Any) -> dict[str, dict[str, Any]]:
    """The two configs as the run logs them: {"model": ..., "trainer": ...}."""
    return {
        "model": model_config.to_dict(),
        "trainer": {f.name: getattr(trainer, f.name) for f in fields(trainer)},
    }


def softmax_choice(config_class: type, n_items: int, sequence: SequenceConfig) -> dict[str, Any]:
    """The model config's loss fields for a catalog of `n_items`: a full softmax up to
    `sequence.full_softmax_max_items`, sampled above; none for a model without the fields."""
    names = {f.name for f in fields(config_class)}
    if "sampled_negatives" not in names:
        return {}
    sampled = n_items > sequence.full_softmax_max_items
    return {
        "sampled_negatives": sequence.sampled_negatives if sampled else 0,
        "negative_sampler": sequence.negative_sampler,
        "negative_scope": sequence.negative_scope,
    }


def softmax_name(model_config: Any) -> str:
    """The loss a model config trains with, as its run logs it."""
    negatives = getattr(model_config, "sampled_negatives", 0)
    if negatives <= 0:
        return "full"
    return (
        f"sampled: {negatives} {model_config.negative_sampler} negatives per "
        f"{scope_of(model_config)}"
    )


def item_counts(targets: torch.Tensor, n_items: int) -> torch.Tensor:
    """(n_items + 1,) how often each item index is a training target (index 0: padding)."""
    return torch.bincount(targets[targets > 0].reshape(-1), minlength=n_items + 1)
