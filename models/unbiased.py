"""Evaluation on the unbiased slices some datasets ship, next to the logged-data metrics.

Logged views only show what the old recommender chose to expose, so metrics on them reward
imitating it. Two releases hold data without that bias:
- KuaiRec's `small_matrix` (lake/normalized/small_matrix): a block of users x videos where
  every user watched every video: each user's outcome is known for every video of the block.
- KuaiRand's random-exposure log (`is_rand` = 1 in the interactions): videos shown to users
  at random; the outcome is known for exactly the videos each user was shown.

Per user, a model ranks the slice's videos whose outcome that user has (the `candidates`);
the relevant ones are those watched to completion (watch_ratio >= the completion threshold).
Every candidate is ranked (no sampling); the rest of the slice is masked. Popularity ranks
the same candidates by training views, every time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow.dataset as pads

from lake.partitions import partition
from models.evaluate import full_ranking_metrics, metric_names, popularity_metrics
from reelflow.paths import Paths

SMALL_MATRIX = "small_matrix"
RANDOM_EXPOSURE = "random_exposure"
SLICE_METRICS = ("ndcg@10", "recall@10", "mrr@10", "ndcg@20", "recall@20")  # what runs log


@dataclass
class UnbiasedSlice:
    name: str  # small_matrix | random_exposure
    user_ids: np.ndarray  # raw ids of the evaluated users
    video_ids: np.ndarray  # raw ids of the slice's videos: the score matrix's columns
    candidates: list[np.ndarray]  # per user: columns whose outcome the user has
    relevant: list[np.ndarray]  # per user: candidate columns watched to completion

    def masked(self) -> list[np.ndarray]:
        """Per user: the slice's columns that are not the user's candidates."""
        every = np.arange(len(self.video_ids))
        return [np.setdiff1d(every, c, assume_unique=True) for c in self.candidates]

    def metrics(self, scores: np.ndarray, popularity: np.ndarray | None = None) -> dict:
        """`scores`: (users, videos) in this slice's order; non-candidates are masked."""
        return full_ranking_metrics(scores, self.relevant, self.masked(), popularity=popularity)

    def popularity_metrics(self, counts: np.ndarray) -> dict:
        """The popularity baseline: every user ranks the candidates by `counts` (per column)."""
        counts = np.asarray(counts, dtype=np.float64)
        return popularity_metrics(counts, self.relevant, self.masked())

    def evaluate(
        self, score: Callable[[np.ndarray, np.ndarray], np.ndarray], counts: np.ndarray
    ) -> dict[str, dict[str, float]]:
        """`score(user_ids, video_ids)` -> (users, videos) matrix; `counts`: training views
        per slice video. Returns the model's and popularity's metrics."""
        scores = score(self.user_ids, self.video_ids)
        return {
            "model": self.metrics(scores, popularity=counts),
            "popularity": self.popularity_metrics(counts),
        }


def from_outcomes(name: str, outcomes: pd.DataFrame, completion_threshold: float) -> UnbiasedSlice:
    """`outcomes`: user_id, video_id, watch_ratio, one row per observed (user, video) pair
    (repeats keep the best outcome). Users with no completed video carry no signal: dropped."""
    outcomes = (
        outcomes.dropna(subset=["user_id", "video_id", "watch_ratio"])
        .groupby(["user_id", "video_id"], as_index=False)["watch_ratio"]
        .max()
    )
    video_ids = np.sort(outcomes["video_id"].unique()).astype(np.int64)
    column = pd.Series(np.arange(len(video_ids)), index=video_ids)
    outcomes["col"] = column.reindex(outcomes["video_id"]).to_numpy()
    outcomes["relevant"] = outcomes["watch_ratio"] >= completion_threshold
    user_ids, candidates, relevant = [], [], []
    for user, rows in outcomes.groupby("user_id", sort=True):
        if not rows["relevant"].any():
            continue
        user_ids.append(user)
        candidates.append(np.sort(rows["col"].to_numpy(np.int64)))
        relevant.append(np.sort(rows.loc[rows["relevant"], "col"].to_numpy(np.int64)))
    return UnbiasedSlice(
        name, np.asarray(user_ids, dtype=np.int64), video_ids, candidates, relevant
    )


def small_matrix_slice(paths: Paths, completion_threshold: float) -> UnbiasedSlice | None:
    """KuaiRec's fully observed block, when this home normalized one."""
    table = paths.normalized(SMALL_MATRIX)
    if not table.exists() or not any(table.rglob("*.parquet")):
        return None
    frame = (
        pads.dataset(str(table), format="parquet", partitioning="hive")
        .to_table(columns=["user_id", "video_id", "watch_ratio"])
        .to_pandas()
    )
    found = from_outcomes(SMALL_MATRIX, frame, completion_threshold)
    return found if len(found.user_ids) else None


def random_exposure_slice(
    paths: Paths, ds: str, completion_threshold: float
) -> UnbiasedSlice | None:
    """The day's randomly exposed views (KuaiRand `is_rand` = 1), when the data has them."""
    table = paths.normalized("interactions")
    day = partition(table, ds)
    if not day.exists():
        return None
    dataset = pads.dataset(str(day), format="parquet")
    if "is_rand" not in dataset.schema.names or "watch_ratio" not in dataset.schema.names:
        return None
    frame = dataset.to_table(
        columns=["user_id", "video_id", "watch_ratio"], filter=pads.field("is_rand") == 1
    ).to_pandas()
    found = from_outcomes(RANDOM_EXPOSURE, frame, completion_threshold)
    return found if len(found.user_ids) else None


def slice_metric_names(
    name: str, results: dict[str, dict[str, float]], keep: tuple[str, ...]
) -> dict[str, float]:
    """MLflow names: `small_matrix_ndcg_at_10`, `popularity_small_matrix_ndcg_at_10`, ..."""
    out = {
        **metric_names(results["model"], name, only=keep),
        **metric_names(results["popularity"], f"popularity_{name}", only=keep),
    }
    out[f"{name}_users"] = float(results["model"]["users"])
    return out
