"""The baselines every model is evaluated next to, as score matrices for the same full ranking
(models/evaluate.py): a model that cannot beat them has learned nothing worth serving.

- Popularity: every row ranks the columns by their training counts.
- Transition (a first-order Markov chain, item to item): the row of a user whose last item is
  i ranks column j by how often j directly followed i in the training sequences; equal counts
  (and a last item never followed by anything in training) fall back to popularity.

Both count only interactions before the targets they are scored on (models/sequence_data.py:
transitions within the training sequences the models learn from, popularity as each stage
counts it), never a target itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def popularity_scores(counts: np.ndarray, n_rows: int) -> np.ndarray:
    """The popularity baseline's score matrix: every row ranks by the training counts."""
    return np.broadcast_to(counts.astype(np.float64), (n_rows, len(counts)))


@dataclass
class Transitions:
    """How often item b directly followed item a in training, for the pairs that occurred
    (compressed rows: a catalog of 100k items has 10^10 pairs, a log a few million of them):
    the items that followed `a` are `following[starts[a]:starts[a + 1]]`, each `counts` times."""

    starts: np.ndarray  # (n_items + 1,) where each item's followers begin
    following: np.ndarray  # the followers, ascending within an item
    counts: np.ndarray  # how often each followed

    @classmethod
    def count(cls, sequences: list[np.ndarray], n_items: int) -> Transitions:
        """The transitions of `sequences` (item indices below `n_items`, oldest first): each
        consecutive pair within a sequence, never one across two sequences."""
        pairs = [(s[:-1], s[1:]) for s in sequences if len(s) >= 2]
        empty = np.zeros(0, dtype=np.int64)
        before = np.concatenate([b for b, _ in pairs]).astype(np.int64) if pairs else empty
        after = np.concatenate([a for _, a in pairs]).astype(np.int64) if pairs else empty
        keys, counts = np.unique(before * n_items + after, return_counts=True)
        starts = np.searchsorted(keys // n_items, np.arange(n_items + 1))
        return cls(starts, keys % n_items, counts)

    def scores(self, last_items: np.ndarray, popularity: np.ndarray) -> np.ndarray:
        """(len(last_items), n_items) scores of the transition baseline: row u is the counts of
        `last_items[u]` -> j, plus popularity scaled below one, so that popularity orders only
        what the counts leave equal (whole counts never swap) and ranks every column of a last
        item nothing ever followed. Column j of `popularity` and of the scores is item j."""
        popularity = np.asarray(popularity, dtype=np.float64)
        out = np.tile(popularity / (popularity.max(initial=0.0) + 1.0), (len(last_items), 1))
        last_items = np.asarray(last_items, dtype=np.int64)
        first, end = self.starts[last_items], self.starts[last_items + 1]
        lengths = end - first
        rows = np.repeat(np.arange(len(last_items)), lengths)
        # Position of each of row u's followers: first[u], first[u] + 1, ..., end[u] - 1.
        at = np.repeat(first - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        out[rows, self.following[at]] += self.counts[at]
        return out
