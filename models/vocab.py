"""Raw id -> dense index, persisted next to model artifacts and only ever grown.

Index 0 means "not in the vocabulary" (and is the padding index of the sequence models);
the id at position i of `ids` has index i + 1. `extend` appends unseen ids at the end, so an
index once given never changes: a model trained on an older vocabulary still reads its rows
correctly after new videos arrive (their rows simply do not exist in it yet).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass
class Vocabulary:
    """Raw id -> dense index; index 0 means "not seen in training"."""

    ids: np.ndarray

    def __post_init__(self) -> None:
        self._index = pd.Index(self.ids)

    def lookup(self, raw: np.ndarray) -> np.ndarray:
        pos = self._index.get_indexer(raw)
        return np.where(pos >= 0, pos + 1, 0).astype(np.int64)

    def __len__(self) -> int:
        return len(self.ids) + 1

    def raw(self, index: np.ndarray) -> np.ndarray:
        """Dense indices (>= 1) back to raw ids."""
        return self.ids[np.asarray(index) - 1]

    def extend(self, raw: np.ndarray) -> Vocabulary:
        """A vocabulary with the unseen ids of `raw` appended in first-seen order."""
        raw = pd.unique(np.asarray(raw))
        new = raw[self._index.get_indexer(raw) < 0]
        return Vocabulary(np.concatenate([self.ids, new.astype(self.ids.dtype, copy=False)]))

    @classmethod
    def build(cls, raw: np.ndarray) -> Vocabulary:
        """A fresh vocabulary over the sorted distinct ids of `raw`."""
        return cls(np.sort(pd.unique(np.asarray(raw))))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"ids": self.ids.tolist()}))

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        ids = np.asarray(json.loads(Path(path).read_text())["ids"])
        return cls(ids if ids.size else ids.astype(np.int64))


def persisted_vocabulary(path: str | Path, raw: np.ndarray | None = None) -> Vocabulary:
    """The vocabulary kept at `path` (empty when there is none yet), grown with the unseen ids
    of `raw` and written back, so that every model and every day shares one id -> index map.
    The write is a rename: a crash leaves the old or the new file, never half of one."""
    path = Path(path)
    dtype = np.int64 if raw is None else np.asarray(raw).dtype
    vocab = Vocabulary.load(path) if path.exists() else Vocabulary(np.zeros(0, dtype=dtype))
    if raw is not None:
        grown = vocab.extend(raw)
        if len(grown) != len(vocab) or not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            staging = path.with_suffix(".tmp")
            grown.save(staging)
            staging.replace(path)
        vocab = grown
    return vocab
