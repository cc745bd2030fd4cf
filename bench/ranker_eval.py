"""Benchmark: ranking a 4.37M-video catalog for the ranker's evaluation, from shortlists
against whole rows, and the popularity baseline likewise.

KuaiRand-1K's catalog (4,369,953 videos) and a random-initialised ranker (its trained weights
do not change the cost): each user's 2,000 unseen videos pooled as the evaluation pools them
(`models.ranker.two_stage_shortlists` with a `FirstStage`: 1,000 by the towers' dot product,
166 from each of the user's 3 top categories, the most popular filling), ranked by the heads. The reference ranks the same
two-stage scores as whole rows (`models.evaluate.RowBlocks`: the shortlist's scores, every
other video below them by the dot product), the way the evaluator read them before
shortlists. Popularity: `popularity_shortlists` against the broadcast counts ranked row by
row. Both sides run in this one process, one after the other, on the same inputs; their
metrics are checked identical and the ratio is printed and written, with the commit, to
bench/results/ranker_eval.json. Users have 2,000 seen videos each (masked) and 5 relevant.

    .venv/bin/python bench/ranker_eval.py [--users 200] [--videos 4369953] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.train_seq import git_state, machine, refuse_dirty, write_json  # noqa: E402
from models.baselines import popularity_scores  # noqa: E402
from models.evaluate import RowBlocks, full_ranking_metrics, rows_per_block  # noqa: E402
from models.ranker import (  # noqa: E402
    USER_DENSE,
    VIDEO_DENSE,
    FirstStage,
    MultiObjectiveRanker,
    RankerModelConfig,
    two_stage_shortlists,
)

DEPTH = 2000


def whole_rows(shortlists, user_vec, video_vec) -> RowBlocks:
    """The same ranking as whole rows: the shortlist's scores, the rest by the dot product
    shifted below them."""

    def rows(block: slice) -> np.ndarray:
        columns, scores = shortlists.best(block)
        dots = (user_vec[block] @ video_vec.T).double().numpy()
        out = dots - dots.max(axis=1, keepdims=True) + scores.min(axis=1, keepdims=True) - 1.0
        np.put_along_axis(out, columns, scores, axis=1)
        return out

    return RowBlocks(shortlists.shape, rows)


def timed(fn):
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--videos", type=int, default=4_369_953)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--allow-dirty", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "ranker_eval.json")
    args = parser.parse_args()
    state = git_state()
    refuse_dirty(state, args.allow_dirty, "the record")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    n_users, n_videos = args.users, args.videos
    model = MultiObjectiveRanker(
        RankerModelConfig(n_users=n_users + 1, n_videos=200_001, sparse_videos=True)
    ).eval()
    users = {
        "user_idx": torch.arange(1, n_users + 1),
        "user_dense": torch.randn(n_users, len(USER_DENSE)),
        "affinity": torch.rand(n_users, 31),
        "recent_share": torch.rand(n_users, 31),
    }
    videos = {
        "video_idx": torch.from_numpy(rng.integers(0, 200_001, n_videos)),
        "video_dense": torch.randn(n_videos, len(VIDEO_DENSE)),
        "category": torch.from_numpy(rng.integers(-1, 31, n_videos)),
    }
    history = [rng.choice(n_videos, 2000, replace=False) for _ in range(n_users)]
    relevant = [rng.choice(n_videos, 5, replace=False) for _ in range(n_users)]
    counts = rng.poisson(0.5, n_videos).astype(np.float64)
    categories = videos["category"].numpy()

    popular = np.argsort(-counts, kind="stable")
    stage = FirstStage.build(popular, categories, users["affinity"].numpy(), DEPTH)
    shortlists, towers_s = timed(
        lambda: two_stage_shortlists(model, users, videos, history, DEPTH, stage)
    )
    with torch.no_grad():
        user_vec, video_vec = model.query(users), model.item_vectors(videos)
    metrics = lambda scores: full_ranking_metrics(  # noqa: E731
        scores, relevant, history, categories=categories, popularity=counts
    )
    fast, fast_s = timed(lambda: metrics(shortlists))
    slow, slow_s = timed(lambda: metrics(whole_rows(shortlists, user_vec, video_vec)))
    from models.evaluate import popularity_metrics

    pop_fast, pop_fast_s = timed(
        lambda: popularity_metrics(counts, relevant, history, categories=categories)
    )
    pop_slow, pop_slow_s = timed(
        lambda: full_ranking_metrics(
            popularity_scores(counts, n_users),
            relevant,
            history,
            categories=categories,
            popularity=counts,
        )
    )
    if fast != slow or pop_fast != pop_slow:
        raise SystemExit("shortlists and whole rows ranked differently")
    record = {
        "benchmark": "ranker_eval",
        **state,
        "seed": args.seed,
        "machine": machine(args.threads),
        "data": {"users": n_users, "videos": n_videos, "depth": DEPTH, "seen_per_user": 2000},
        "first_stage": stage.describe(DEPTH),
        "ranker": {
            "towers_seconds": round(towers_s, 2),
            "shortlists_seconds": round(fast_s, 2),
            "whole_rows_seconds": round(slow_s, 2),
            "speedup": round(slow_s / fast_s, 2),
            "block_rows": rows_per_block(n_videos),
        },
        "popularity": {
            "shortlists_seconds": round(pop_fast_s, 2),
            "whole_rows_seconds": round(pop_slow_s, 2),
            "speedup": round(pop_slow_s / pop_fast_s, 2),
        },
        "identical_metrics": True,
    }
    write_json(args.out, record)
    print(
        f"ranker: shortlists {fast_s:.1f} s, whole rows {slow_s:.1f} s "
        f"({slow_s / fast_s:.1f}x); popularity: {pop_fast_s:.1f} s vs {pop_slow_s:.1f} s "
        f"({pop_slow_s / pop_fast_s:.1f}x); {n_users} users x {n_videos} videos"
    )


if __name__ == "__main__":
    main()
