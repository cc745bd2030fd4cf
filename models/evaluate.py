"""Full-ranking evaluation: every video scored, no sampled negatives.

Two protocols (`mask_history`): masked, each user's history left out of the ranking (the
product's use: never recommend what the user saw; the metrics' plain names), and unmasked,
nothing left out (RecBole's protocol for sequential models, which masks only padding; logged
as `unmasked_<name>`). A model is compared with a reference only on the same protocol.

Equal scores rank the lower column first (what a stable sort gives, as the pyfunc's ranking
does), on every machine: numpy's argpartition + argsort broke ties by its SIMD path, so the
popularity baseline, whose counts tie, scored differently on AVX-512, AVX2 and plain x86.

Metrics at each k: NDCG, Recall, HR, MRR; over the top-k lists: catalog coverage, intra-list
diversity over categories, novelty (mean self-information of the recommended videos' training
popularity) and the Gini of how often each video is recommended. The baselines
(models/baselines.py: popularity, item-to-item transitions) are evaluated on the same split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

UNMASKED = "unmasked_"  # marks a metric measured with nothing masked (the logged name's head)
ROWS_PER_BLOCK = 1024  # rows ranked at once: a float64 copy of every user's row ran to GiBs
# ... and at most this many bytes of them: KuaiRand-1K's first week has 908k videos, where
# 1,024 rows in float64 (7.3 GB, and as much again for the partition) ran training out of
# memory.
BLOCK_BYTES = 256 * 1024**2


def rows_per_block(n_columns: int) -> int:
    """How many rows of `n_columns` float64 scores to rank at once."""
    return max(1, min(ROWS_PER_BLOCK, BLOCK_BYTES // (8 * max(n_columns, 1))))


@dataclass
class RowBlocks:
    """A score matrix made a block of rows at a time, where the whole would not fit in memory
    (a baseline's 100k users x 20k videos in float64: 16 GB): `rows(slice)` -> those rows.
    Ranking reads any score matrix only through `shape` and row slices."""

    shape: tuple[int, int]
    rows: Callable[[slice], np.ndarray]

    def __getitem__(self, rows: slice) -> np.ndarray:
        return self.rows(rows)


@dataclass
class Shortlists:
    """A ranking whose rows put a shortlist of columns first and every other column after
    them: a two-stage ranking (models/ranker.py), where a cheap score picks each row's `depth`
    best unseen columns and the full model orders those. `best(rows)` -> (columns, scores),
    each (n, depth), columns ascending within a row, history already left out. A top k of at
    most `depth` lies within the shortlists, so ranking reads them alone, never a row of the
    whole catalog (KuaiRand-1K: 4.37M columns a row)."""

    shape: tuple[int, int]
    depth: int
    block_rows: int  # rows `best` makes at once
    best: Callable[[slice], tuple[np.ndarray, np.ndarray]]
    masked: bool = True  # whether the shortlists leave each row's history out


def _top_of_shortlists(scores: Shortlists, k: int, mask_history: bool) -> np.ndarray:
    if mask_history != scores.masked:
        which = "masked" if scores.masked else "unmasked"
        raise ValueError(f"these shortlists rank {which} only")
    if k > scores.depth:
        raise ValueError(f"a top {k} reaches past the shortlists' {scores.depth} columns")
    ranked = np.empty((scores.shape[0], k), dtype=np.int64)
    for start in range(0, scores.shape[0], scores.block_rows):
        columns, values = scores.best(slice(start, start + scores.block_rows))
        values = np.where(np.isnan(values), -np.inf, values.astype(np.float64))
        order = _best_first(values, k)  # ties: the lower position, the lower column
        ranked[start : start + len(columns)] = np.take_along_axis(columns, order, axis=1)
    return ranked


def top_k(
    scores: np.ndarray | RowBlocks | Shortlists,
    history: list[np.ndarray],
    k: int,
    mask_history: bool = True,
) -> np.ndarray:
    """Indices of the k best columns per row, best first, equal scores lower column first;
    with `mask_history`, each row's `history` columns are left out (NaN ranks last too)."""
    n_rows, n_columns = scores.shape
    k = min(k, n_columns)
    if isinstance(scores, Shortlists):
        return _top_of_shortlists(scores, k, mask_history)
    ranked = np.empty((n_rows, k), dtype=np.int64)
    if k == 0:
        return ranked
    step = rows_per_block(n_columns)
    for start in range(0, n_rows, step):
        block = scores[start : start + step].astype(np.float64, copy=True)
        block[np.isnan(block)] = -np.inf
        if mask_history:
            for row, seen in enumerate(history[start : start + step]):
                block[row, seen] = -np.inf
        ranked[start : start + len(block)] = _best_first(block, k)
    return ranked


def _best_first(block: np.ndarray, k: int) -> np.ndarray:
    """The k best columns of each row of `block` (no NaN), best first, ties lower column first:
    every column above the row's k-th best value, then the lowest columns equal to it."""
    n_columns = block.shape[1]
    kth = np.partition(block, n_columns - k, axis=1)[:, n_columns - k : n_columns - k + 1]
    above = block > kth
    tied = block == kth
    room = k - above.sum(axis=1)
    # Only rows with more ties than room choose among them (popularity's equal counts; a
    # model's float scores rarely tie): the lowest columns first.
    crowded = np.flatnonzero(tied.sum(axis=1) > room)
    if len(crowded):
        rows, columns = np.nonzero(tied[crowded])  # row-major: each row's ties in column order
        nth = np.arange(len(rows)) - np.searchsorted(rows, np.arange(len(crowded)))[rows]
        keep = nth < room[crowded][rows]
        tied[crowded] = False
        tied[crowded[rows[keep]], columns[keep]] = True
    columns = np.nonzero(above | tied)[1].reshape(len(block), k)  # ascending within each row
    order = np.argsort(-np.take_along_axis(block, columns, axis=1), axis=1, kind="stable")
    return np.take_along_axis(columns, order, axis=1)


def gini(counts: np.ndarray) -> float:
    x = np.sort(counts.astype(np.float64))
    if x.sum() == 0:
        return 0.0
    n = len(x)
    return float((2 * np.arange(1, n + 1) - n - 1).dot(x) / (n * x.sum()))


def full_ranking_metrics(
    scores: np.ndarray | RowBlocks | Shortlists,
    relevant: list[np.ndarray],
    history: list[np.ndarray],
    ks: tuple[int, ...] = (10, 20),
    categories: np.ndarray | None = None,
    popularity: np.ndarray | None = None,
    mask_history: bool = True,
) -> dict[str, float]:
    """`scores[u, v]` for every evaluated user u and every video v; `relevant[u]` are columns,
    `history[u]` the columns left out of user u's ranking when `mask_history`."""
    n_users, n_videos = scores.shape
    ranked = top_k(scores, history, max(ks), mask_history)
    metrics: dict[str, float] = {"users": float(n_users), "videos": float(n_videos)}
    discounts = 1.0 / np.log2(np.arange(2, max(ks) + 2))
    for k in ks:
        ndcg = recall = hr = mrr = 0.0
        for u in range(n_users):
            rel = set(relevant[u].tolist())
            hits = np.array([v in rel for v in ranked[u, :k]], dtype=np.float64)
            ideal = discounts[: min(len(rel), k)].sum()
            # A catalog smaller than k gives shorter lists.
            ndcg += (hits * discounts[: len(hits)]).sum() / ideal if ideal > 0 else 0.0
            recall += hits.sum() / len(rel) if rel else 0.0
            hr += float(hits.any())
            mrr += 1.0 / (np.argmax(hits) + 1) if hits.any() else 0.0
        for name, value in (("ndcg", ndcg), ("recall", recall), ("hr", hr), ("mrr", mrr)):
            metrics[f"{name}@{k}"] = value / max(n_users, 1)
        lists = ranked[:, :k]
        rec_counts = np.bincount(lists.ravel(), minlength=n_videos)
        metrics[f"coverage@{k}"] = float((rec_counts > 0).mean())
        metrics[f"gini@{k}"] = gini(rec_counts)
        if categories is not None:
            cats = categories[lists]
            same = (cats[:, :, None] == cats[:, None, :]).sum(axis=(1, 2)) - k
            metrics[f"diversity@{k}"] = float(1.0 - (same / (k * (k - 1))).mean()) if k > 1 else 0.0
        if popularity is not None:
            share = (popularity + 1.0) / (popularity.sum() + n_videos)
            metrics[f"novelty@{k}"] = float(-np.log2(share[lists]).mean())
    return metrics


def next_item_metrics(
    scores: np.ndarray | RowBlocks,
    targets: np.ndarray,
    history: list[np.ndarray],
    ks: tuple[int, ...] = (10, 20),
    popularity: np.ndarray | None = None,
    mask_history: bool = True,
) -> dict[str, float]:
    """Leave-one-out: one relevant column per row (`targets[u]`), so Recall@k equals HR@k."""
    return full_ranking_metrics(
        scores,
        [np.array([t]) for t in targets],
        history,
        ks,
        popularity=popularity,
        mask_history=mask_history,
    )


def popularity_metrics(
    counts: np.ndarray,
    relevant: list[np.ndarray],
    history: list[np.ndarray],
    ks: tuple[int, ...] = (10, 20),
    categories: np.ndarray | None = None,
    mask_history: bool = True,
) -> dict[str, float]:
    """The popularity baseline on a split: every user's columns ranked by the training
    `counts` (per column), the user's `history` masked when `mask_history`, next to any model
    on the same split."""
    return full_ranking_metrics(
        popularity_shortlists(counts, history, max(ks), mask_history),
        relevant,
        history,
        ks,
        categories=categories,
        popularity=counts,
        mask_history=mask_history,
    )


def popularity_shortlists(
    counts: np.ndarray, history: list[np.ndarray], depth: int, mask_history: bool = True
) -> Shortlists:
    """The popularity ranking as shortlists: every row ranks the columns in one order (most
    counted first, equal counts lower column first), less its history when `mask_history`.
    The rows of a 4.37M-video catalog, ranked each in full, took minutes per evaluation."""
    counts = np.asarray(counts, dtype=np.float64)
    order = np.argsort(-counts, kind="stable")
    depth = min(depth, len(counts))

    def best(rows: slice) -> tuple[np.ndarray, np.ndarray]:
        seen = history[rows]
        columns = np.empty((len(seen), depth), dtype=np.int64)
        values = np.empty((len(seen), depth), dtype=np.float64)
        for r, past in enumerate(seen):
            head = order[: depth + (len(past) if mask_history else 0)]
            if mask_history and len(past):
                head = head[~np.isin(head, past)][:depth]
                # Fewer unseen columns than the depth: the seen ones follow, lowest first.
                masked = np.sort(np.asarray(past, dtype=np.int64))[: depth - len(head)]
                head = np.concatenate([head, masked])
            columns[r] = np.sort(head[:depth])
            values[r] = np.where(
                np.isin(columns[r], past) & mask_history, -np.inf, counts[columns[r]]
            )
        return columns, values

    return Shortlists((len(history), len(counts)), depth, 1024, best, masked=mask_history)


def both_protocols(metrics: Callable[[bool], dict[str, float]]) -> dict[str, float]:
    """`metrics(mask_history)` under both protocols in one dict: the masked metrics under
    their keys (`ndcg@10`), the unmasked ones marked (`unmasked_ndcg@10`)."""
    return {**metrics(True), **{UNMASKED + k: v for k, v in metrics(False).items()}}


def metric_names(
    metrics: dict[str, float], prefix: str, only: tuple[str, ...] | None = None
) -> dict[str, float]:
    """`ndcg@10` -> `<prefix>_ndcg_at_10` and `unmasked_ndcg@10` ->
    `unmasked_<prefix>_ndcg_at_10` (of the metrics in `only`, named without the mark; all when
    None): names MLflow accepts, ready to log as they are. The one place a logged name is built,
    so every split, model and baseline reads `[unmasked_]<who>_<split>_<metric>_at_<k>`."""
    out = {}
    for key, value in metrics.items():
        mark, name = (UNMASKED, key[len(UNMASKED) :]) if key.startswith(UNMASKED) else ("", key)
        if only is None or name in only:
            out[f"{mark}{prefix}_{name}".replace("@", "_at_")] = float(value)
    return out


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of binary `labels` by `scores`: the Mann-Whitney rank statistic, ties counted
    half (average ranks). NaN unless both classes are present."""
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int((labels == 1).sum())
    n_neg = int((labels == 0).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)  # 1-based, ties averaged
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def rmse(labels: np.ndarray, predictions: np.ndarray) -> float:
    diff = np.asarray(predictions, dtype=np.float64) - np.asarray(labels, dtype=np.float64)
    return float(np.sqrt(np.mean(diff**2))) if len(diff) else float("nan")


def head_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """One ranker head on logged views: RMSE of the predicted probability against the label
    over the rows whose label is known (not NaN), and AUC where the label is binary with both
    classes present (watch time is a fraction: RMSE only)."""
    labels = np.asarray(labels, dtype=np.float64)
    known = ~np.isnan(labels)
    y, p = labels[known], np.asarray(probabilities, dtype=np.float64)[known]
    if len(y) == 0:
        return {}
    out = {"rmse": rmse(y, p)}
    if np.isin(y, (0.0, 1.0)).all() and 0 < y.sum() < len(y):
        out["auc"] = auc(y, p)
    return out
