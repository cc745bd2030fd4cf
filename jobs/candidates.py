"""Candidate lists: several sources pooled, watched videos removed, the ranker's score, a
diversity re-rank with a per-category cap, and reserved exploration slots.

Per active user, K slots (`export.candidates_per_user`):
1. The pool: the ANN top-N of the user's query in the video index (`ann`), the trending videos
   (highest trend velocity, `trending`), the best performers of the user's top categories
   (`affinity`). A video from several sources keeps the first (that order). Everything the
   user watched is removed.
2. The ranker scores the pool with its multi-objective weights (done by the caller).
3. MMR picks K - E of them, one at a time: lambda * relevance (the score scaled to [0, 1] per
   user) - (1 - lambda) * redundancy, where redundancy is 1 for a video whose category is
   already in the list (cosine similarity to the closest chosen video where the dataset has no
   categories); no category may fill more than `max_share_per_category` of the list.
4. E = round(exploration_share * K) slots go to exploration: the user's cold-start cohort
   videos (`cold_start`, jobs/cold_start.py) first, then the best-performing little-seen
   videos (`explore`). They are spread over the list, not appended, so a feed that shows the
   top 10 still shows some.

Everything here is numpy/pandas over whole matrices, users in chunks, so 100k users fit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from reelflow.config import CandidateConfig

SOURCES = ("ann", "affinity", "trending")  # pool order: a video keeps its first source
EXPLORATION_SOURCES = ("cold_start", "explore")


@dataclass
class DayCatalog:
    """The day's videos: positions 0..n-1 index every array."""

    video_ids: np.ndarray
    categories: np.ndarray  # primary category, -1 where none
    trend_velocity: np.ndarray
    performance: np.ndarray  # normalized performance (NaN where unknown)
    exposures_7d: np.ndarray

    def positions(self, video_ids: np.ndarray) -> np.ndarray:
        """Positions of raw ids, -1 where not in the catalog."""
        index = pd.Index(self.video_ids)
        return index.get_indexer(np.asarray(video_ids))

    @property
    def has_categories(self) -> bool:
        return bool((self.categories >= 0).any())


def slots(cfg: CandidateConfig, k: int) -> tuple[int, int]:
    """(exploitation slots, exploration slots) of a K-long list."""
    explore = min(k, int(round(cfg.exploration_share * k)))
    return k - explore, explore


def trending(catalog: DayCatalog, n: int) -> np.ndarray:
    """Positions of the n videos with the highest trend velocity (then most exposures)."""
    velocity = np.nan_to_num(catalog.trend_velocity, nan=0.0)
    order = np.lexsort((-catalog.exposures_7d, -velocity))
    return order[:n]


def best_by_category(catalog: DayCatalog, n: int) -> dict[int, np.ndarray]:
    """Per category: positions of its n best performers (normalized performance, exposures)."""
    perf = np.nan_to_num(catalog.performance, nan=0.0)
    order = np.lexsort((-catalog.exposures_7d, -perf))
    out: dict[int, list[int]] = {}
    for pos in order.tolist():
        cat = int(catalog.categories[pos])
        if cat >= 0 and len(out.setdefault(cat, [])) < n:
            out[cat].append(pos)
    return {c: np.asarray(v, dtype=np.int64) for c, v in out.items()}


def little_seen(catalog: DayCatalog, n: int) -> np.ndarray:
    """Exploration filler: the best performers among the less-exposed half of the catalog."""
    exposures = np.nan_to_num(catalog.exposures_7d.astype(np.float64), nan=0.0)
    cut = np.median(exposures) if len(exposures) else 0.0
    few = np.flatnonzero(exposures <= cut)
    perf = np.nan_to_num(catalog.performance[few], nan=0.0)
    return few[np.lexsort((exposures[few], -perf))][:n]


def pool(
    ann: np.ndarray,
    top_categories: np.ndarray,
    catalog: DayCatalog,
    cfg: CandidateConfig,
) -> pd.DataFrame:
    """Long frame (row, pos, source) of each user's pooled candidates, duplicates removed.
    `ann`: (users, N) positions (-1: none); `top_categories`: (users, c) (-1: none)."""
    users = ann.shape[0]
    rows = np.arange(users)
    parts = [pd.DataFrame({"row": np.repeat(rows, ann.shape[1]), "pos": ann.ravel(), "source": 0})]
    best = best_by_category(catalog, cfg.affinity_candidates)
    if best and top_categories.size:
        width = cfg.affinity_candidates
        table = np.full((int(max(best)) + 2, width), -1, dtype=np.int64)  # last row: none
        for cat, positions in best.items():
            table[cat, : len(positions)] = positions
        cats = np.where(top_categories >= 0, top_categories, table.shape[0] - 1)
        cats = np.minimum(cats, table.shape[0] - 1)
        picked = table[cats].reshape(users, -1)
        parts.append(
            pd.DataFrame(
                {"row": np.repeat(rows, picked.shape[1]), "pos": picked.ravel(), "source": 1}
            )
        )
    hot = trending(catalog, cfg.trending_candidates)
    parts.append(
        pd.DataFrame({"row": np.repeat(rows, len(hot)), "pos": np.tile(hot, users), "source": 2})
    )
    frame = pd.concat(parts, ignore_index=True)
    frame = frame[frame["pos"] >= 0]
    frame = frame.sort_values(["row", "source"], kind="stable").drop_duplicates(["row", "pos"])
    return frame.reset_index(drop=True)


def watched_pairs(seen: pd.DataFrame, users: np.ndarray, catalog: DayCatalog) -> pd.DataFrame:
    """(row, pos) of every seen (user_id, video_id) pair whose user is one of `users` (row =
    index in `users`) and whose video is in the catalog."""
    row_of = pd.Series(np.arange(len(users)), index=users)
    pairs = pd.DataFrame(
        {
            "row": row_of.reindex(seen["user_id"]).to_numpy(),
            "pos": catalog.positions(seen["video_id"].to_numpy()),
        }
    ).dropna()
    return pairs[pairs["pos"] >= 0].astype(np.int64).reset_index(drop=True)


def drop_watched(frame: pd.DataFrame, watched: pd.DataFrame) -> pd.DataFrame:
    """Removes (row, pos) pairs present in `watched` (row, pos)."""
    if watched.empty:
        return frame
    key = frame["row"].to_numpy(np.int64) * (1 << 32) + frame["pos"].to_numpy(np.int64)
    seen = watched["row"].to_numpy(np.int64) * (1 << 32) + watched["pos"].to_numpy(np.int64)
    return frame[~np.isin(key, seen)].reset_index(drop=True)


def _padded(frame: pd.DataFrame, users: int, column: str, fill) -> np.ndarray:
    """(users, P) matrix of `column` per user in the frame's order, padded with `fill`."""
    counts = np.bincount(frame["row"].to_numpy(), minlength=users)
    width = int(counts.max()) if len(counts) else 0
    out = np.full((users, width), fill, dtype=np.asarray(frame[column]).dtype)
    slot = frame.groupby("row").cumcount().to_numpy()
    out[frame["row"].to_numpy(), slot] = frame[column].to_numpy()
    return out


def mmr(
    scored: pd.DataFrame,
    users: int,
    catalog: DayCatalog,
    picks: int,
    cfg: CandidateConfig,
    embeddings: np.ndarray | None = None,
    max_per_category: int | None = None,
) -> np.ndarray:
    """(users, picks) positions chosen by MMR from `scored` (row, pos, score); -1 where the pool
    ran out. Redundancy is category equality, or embedding cosine without categories."""
    if picks <= 0 or scored.empty:
        return np.full((users, max(picks, 0)), -1, dtype=np.int64)
    scored = scored.sort_values(["row", "score"], ascending=[True, False], kind="stable")
    pos = _padded(scored, users, "pos", -1)
    score = _padded(scored.assign(score=scored["score"].astype(np.float64)), users, "score", np.nan)
    valid = pos >= 0
    # A candidate the scorer cannot score (-inf: no vector for a brand-new video) ranks as the
    # least relevant, but stays a candidate.
    finite = valid & np.isfinite(score)
    low = np.min(np.where(finite, score, np.inf), axis=1, keepdims=True)
    high = np.max(np.where(finite, score, -np.inf), axis=1, keepdims=True)
    span = np.where(high > low, high - low, 1.0)
    with np.errstate(invalid="ignore"):
        relevance = np.where(finite, (score - low) / span, 0.0)
    by_category = catalog.has_categories
    cats = np.where(valid, catalog.categories[np.maximum(pos, 0)], -1)
    n_cat = int(catalog.categories.max()) + 2 if by_category else 1
    cap = max_per_category or max(1, math.ceil(cfg.max_share_per_category * picks))
    counts = np.zeros((users, n_cat), dtype=np.int64)
    redundancy = np.zeros(pos.shape, dtype=np.float64)
    if not by_category and embeddings is not None:
        unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
        vectors = unit[np.maximum(pos, 0)]
    taken = ~valid
    chosen = np.full((users, picks), -1, dtype=np.int64)
    rows = np.arange(users)
    for step in range(picks):
        value = cfg.mmr_lambda * relevance - (1 - cfg.mmr_lambda) * redundancy
        if by_category:
            known = cats >= 0
            full = np.take_along_axis(counts, np.where(known, cats, n_cat - 1), axis=1) >= cap
            value = np.where(known & full, -np.inf, value)
        value = np.where(taken, -np.inf, value)
        best = value.argmax(axis=1)
        ok = np.isfinite(value[rows, best])
        chosen[ok, step] = pos[rows[ok], best[ok]]
        taken[rows[ok], best[ok]] = True
        if by_category:
            cat = cats[rows[ok], best[ok]]
            has = cat >= 0
            counts[rows[ok][has], cat[has]] += 1
            redundancy = np.maximum(
                redundancy, (cats == np.where(ok, cats[rows, best], -2)[:, None]) & (cats >= 0)
            )
        elif embeddings is not None:
            picked = vectors[rows, best]  # (users, d)
            sim = np.einsum("upd,ud->up", vectors, picked)
            redundancy = np.where(ok[:, None], np.maximum(redundancy, sim), redundancy)
    return chosen


def exploration(
    users: np.ndarray,
    cohorts: pd.DataFrame,
    filler: np.ndarray,
    catalog: DayCatalog,
    watched: pd.DataFrame,
    taken: np.ndarray,
    count: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(users, count) positions and source codes (0 cold_start, 1 explore): each user's cohort
    videos first, then the filler, skipping watched and already chosen videos."""
    out = np.full((len(users), count), -1, dtype=np.int64)
    source = np.full((len(users), count), -1, dtype=np.int64)
    if count <= 0:
        return out, source
    row_of = pd.Series(np.arange(len(users)), index=users)
    cohort_rows = row_of.reindex(cohorts["user_id"]).to_numpy()
    cohort_pos = catalog.positions(cohorts["video_id"].to_numpy())
    ok = ~np.isnan(cohort_rows) & (cohort_pos >= 0)
    offered: dict[int, list[int]] = {}
    for r, p in zip(
        cohort_rows[ok].astype(np.int64).tolist(), cohort_pos[ok].tolist(), strict=True
    ):
        offered.setdefault(r, []).append(p)
    seen: dict[int, set[int]] = {}
    for r, p in zip(watched["row"].tolist(), watched["pos"].tolist(), strict=True):
        seen.setdefault(r, set()).add(p)
    for r in range(len(users)):
        skip = seen.get(r, set()) | set(taken[r][taken[r] >= 0].tolist())
        filled = 0
        for code, options in ((0, offered.get(r, ())), (1, filler)):
            for p in options:
                if filled == count:
                    break
                if p not in skip:
                    out[r, filled], source[r, filled] = p, code
                    skip.add(p)
                    filled += 1
    return out, source


def interleave(exploit: np.ndarray, explore: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One list per user: exploration slots spread evenly among the exploitation picks.
    Returns (positions, is_exploration), each (users, K)."""
    users, a = exploit.shape
    e = explore.shape[1]
    k = a + e
    marks = np.zeros(k, dtype=bool)
    if e:
        # Slots (i + 1) * K / (E + 1) - 1: e.g. K=20, E=3 -> ranks 5, 10, 15 (0-based 4, 9, 14).
        marks[[int((i + 1) * k / (e + 1)) - 1 for i in range(e)]] = True
    out = np.empty((users, k), dtype=np.int64)
    out[:, marks] = explore
    out[:, ~marks] = exploit
    return out, np.broadcast_to(marks, (users, k))


def build_lists(
    user_ids: np.ndarray,
    ann: np.ndarray,
    top_categories: np.ndarray,
    catalog: DayCatalog,
    watched: pd.DataFrame,
    cohorts: pd.DataFrame,
    score: Callable[[np.ndarray, np.ndarray], np.ndarray],
    cfg: CandidateConfig,
    k: int,
    embeddings: np.ndarray | None = None,
) -> pd.DataFrame:
    """The candidate table rows (user_id, rank, video_id, score, source) of these users.
    `watched`: (row, pos) pairs; `score(rows, positions)` -> ranker scores of those pairs."""
    users = len(user_ids)
    exploit_n, explore_n = slots(cfg, k)
    frame = drop_watched(pool(ann, top_categories, catalog, cfg), watched)
    frame["score"] = score(frame["row"].to_numpy(), frame["pos"].to_numpy()) if len(frame) else []
    exploit = mmr(frame, users, catalog, exploit_n, cfg, embeddings)
    explore, explore_source = exploration(
        user_ids,
        cohorts,
        little_seen(catalog, 4 * max(explore_n, 1) + exploit_n),
        catalog,
        watched,
        exploit,
        explore_n,
    )
    positions, is_explore = interleave(exploit, explore)
    sources = np.full(positions.shape, "", dtype=object)
    lookup = frame.set_index(["row", "pos"])["source"]
    rows = np.repeat(np.arange(users), positions.shape[1]).reshape(positions.shape)
    exploit_keys = pd.MultiIndex.from_arrays([rows[~is_explore], positions[~is_explore]])
    codes = lookup.reindex(exploit_keys).to_numpy()
    sources[~is_explore] = [SOURCES[int(c)] if c == c else "" for c in codes]
    sources[is_explore] = [
        EXPLORATION_SOURCES[c] if c >= 0 else "" for c in explore_source.ravel().tolist()
    ]
    long = pd.DataFrame({"row": rows.ravel(), "pos": positions.ravel(), "source": sources.ravel()})
    long = long[long["pos"] >= 0].copy()
    long["score"] = score(long["row"].to_numpy(), long["pos"].to_numpy()) if len(long) else []
    long["rank"] = long.groupby("row").cumcount() + 1
    return pd.DataFrame(
        {
            "user_id": user_ids[long["row"].to_numpy()].astype(np.int64),
            "rank": long["rank"].to_numpy(np.int64),
            "video_id": catalog.video_ids[long["pos"].to_numpy()].astype(np.int64),
            "score": long["score"].to_numpy(np.float64),
            "source": long["source"].to_numpy(),
        }
    )
