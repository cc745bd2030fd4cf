"""Next-video sequences and their time-ordered leave-one-out split.

Each user's interactions, oldest first, become one sequence of dense item indices (a
`Vocabulary` that only grows; 0 is padding). The split, per user with at least three
interactions: the last one is the test target, the one before the validation target, the rest
is training. Users with fewer stay in training only. Evaluation ranks every item with the
user's history masked: for validation the training part, for test everything before the test
target (the validation item included).

Training rows are windows of `max_len + 1` items cut from the end of each training part with
stride `max_len` (left-padded with 0): a window's first `max_len` items are the model's input
and its last `max_len` items the next-item targets, so one row trains every position at once.

Sources: any (user, item, time) frame (`from_frame`), the lake's normalized interactions
(`read_lake_interactions`) for the pipeline, MovieLens `u.data` (`read_movielens`) for the bench.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import torch

from models.vocab import Vocabulary
from reelflow.paths import Paths

MAX_LEN = 50
STAGES = ("val", "test")


@dataclass
class EvalSet:
    """One evaluation stage: a history window, a target and the items to mask, per user."""

    user_ids: np.ndarray  # raw user ids
    inputs: torch.Tensor  # (users, max_len) item indices, left-padded with 0
    targets: np.ndarray  # (users,) item index of the held-out interaction
    history: list[np.ndarray]  # item indices the user saw before the target (masked)
    popularity: np.ndarray  # (n_items + 1,) interactions per item before the targets


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

    def training_windows(self) -> torch.Tensor:
        """(rows, max_len + 1) windows covering every training transition exactly once."""
        width = self.max_len + 1
        rows = []
        for i in range(len(self.sequences)):
            seq = self.train_part(i)
            end = len(seq)
            while end >= 2:
                window = seq[max(0, end - width) : end]
                rows.append(np.pad(window, (width - len(window), 0)))
                end -= self.max_len
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


def read_lake_interactions(paths: Paths | None = None) -> pd.DataFrame:
    """user_id, video_id, event_ts of every normalized interaction partition (no Spark)."""
    paths = paths or Paths.from_env()
    table = paths.normalized("interactions")
    if not any(table.glob("ds=*")):
        raise FileNotFoundError(f"no normalized interactions under {table}: run normalize first")
    dataset = pads.dataset(str(table), format="parquet", partitioning="hive")
    return dataset.to_table(columns=["user_id", "video_id", "event_ts"]).to_pandas()


def read_movielens(path: str | Path) -> pd.DataFrame:
    """MovieLens `u.data` (user, item, rating, unix seconds; tab-separated, no header)."""
    return pd.read_csv(
        path, sep="\t", header=None, names=["user_id", "video_id", "rating", "event_ts"]
    )
