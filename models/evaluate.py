"""Full-ranking evaluation: every video scored, the user's history masked, no sampled negatives.

Metrics at each k: NDCG, Recall, HR, MRR; over the top-k lists: catalog coverage, intra-list
diversity over categories, novelty (mean self-information of the recommended videos' training
popularity) and the Gini of how often each video is recommended. A popularity baseline is
always evaluated on the same split next to the model.
"""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, history: list[np.ndarray], k: int) -> np.ndarray:
    """Indices of the k best unseen columns per row, best first."""
    masked = scores.astype(np.float64, copy=True)
    for row, seen in enumerate(history):
        masked[row, seen] = -np.inf
    k = min(k, masked.shape[1])
    part = np.argpartition(-masked, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(masked, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1)


def gini(counts: np.ndarray) -> float:
    x = np.sort(counts.astype(np.float64))
    if x.sum() == 0:
        return 0.0
    n = len(x)
    return float((2 * np.arange(1, n + 1) - n - 1).dot(x) / (n * x.sum()))


def full_ranking_metrics(
    scores: np.ndarray,
    relevant: list[np.ndarray],
    history: list[np.ndarray],
    ks: tuple[int, ...] = (10, 20),
    categories: np.ndarray | None = None,
    popularity: np.ndarray | None = None,
) -> dict[str, float]:
    """`scores[u, v]` for every evaluated user u and every video v; `relevant[u]` are columns."""
    n_users, n_videos = scores.shape
    ranked = top_k(scores, history, max(ks))
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
    scores: np.ndarray,
    targets: np.ndarray,
    history: list[np.ndarray],
    ks: tuple[int, ...] = (10, 20),
    popularity: np.ndarray | None = None,
) -> dict[str, float]:
    """Leave-one-out: one relevant column per row (`targets[u]`), so Recall@k equals HR@k."""
    return full_ranking_metrics(
        scores, [np.array([t]) for t in targets], history, ks, popularity=popularity
    )


def popularity_scores(counts: np.ndarray, n_rows: int) -> np.ndarray:
    """The popularity baseline's score matrix: every row ranks by the training counts."""
    return np.broadcast_to(counts.astype(np.float64), (n_rows, len(counts)))


def popularity_metrics(
    counts: np.ndarray,
    relevant: list[np.ndarray],
    history: list[np.ndarray],
    ks: tuple[int, ...] = (10, 20),
    categories: np.ndarray | None = None,
) -> dict[str, float]:
    """The popularity baseline on a split: every user's columns ranked by the training
    `counts` (per column), the user's `history` masked, next to any model on the same split."""
    return full_ranking_metrics(
        popularity_scores(counts, len(relevant)),
        relevant,
        history,
        ks,
        categories=categories,
        popularity=counts,
    )


def metric_names(
    metrics: dict[str, float], prefix: str, only: tuple[str, ...] | None = None
) -> dict[str, float]:
    """`ndcg@10` -> `<prefix>_ndcg_at_10` (of the metrics in `only`, all when None): names
    MLflow accepts, ready to log as they are."""
    return {
        f"{prefix}_{k}".replace("@", "_at_"): float(v)
        for k, v in metrics.items()
        if only is None or k in only
    }


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
