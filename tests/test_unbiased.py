"""Unbiased-slice evaluation (KuaiRec small_matrix, KuaiRand random exposure) by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models.unbiased import (
    from_outcomes,
    random_exposure_slice,
    slice_metric_names,
    small_matrix_slice,
)

# User 1 saw videos 10, 20, 30 and completed 20 (a repeat of 10: the best outcome counts).
# User 2 saw 10 and 30 only (random exposure: a partial row) and completed 30.
# User 3 completed nothing: no signal, dropped.
OUTCOMES = pd.DataFrame(
    {
        "user_id": [1, 1, 1, 1, 2, 2, 3],
        "video_id": [10, 20, 30, 10, 10, 30, 20],
        "watch_ratio": [0.2, 1.3, 0.5, 0.4, 0.9, 1.0, 0.1],
    }
)


def test_slice_by_hand():
    found = from_outcomes("small_matrix", OUTCOMES, completion_threshold=1.0)
    assert found.user_ids.tolist() == [1, 2]
    assert found.video_ids.tolist() == [10, 20, 30]
    assert [c.tolist() for c in found.candidates] == [[0, 1, 2], [0, 2]]
    assert [r.tolist() for r in found.relevant] == [[1], [2]]

    # User 1 ranks 30, 20, 10 -> the hit at rank 2. User 2 may not rank 20 (never shown to
    # them) even though it scores highest: 30 comes first -> a hit at rank 1.
    scores = np.array([[0.1, 0.5, 0.9], [0.2, 5.0, 0.3]])
    m = found.metrics(scores)
    assert m["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1.0) / 2)
    assert m["mrr@10"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["recall@10"] == pytest.approx(1.0)

    # Popularity ranks every user's candidates by training views: 10 (5) > 30 (3) > 20 (1).
    pop = found.popularity_metrics(np.array([5.0, 1.0, 3.0]))
    assert pop["mrr@10"] == pytest.approx((1 / 3 + 1 / 2) / 2)

    results = found.evaluate(lambda users, videos: scores, np.array([5.0, 1.0, 3.0]))
    names = slice_metric_names("small_matrix", results, ("ndcg@10", "mrr@10"))
    assert names["small_matrix_mrr_at_10"] == pytest.approx(0.75)
    assert names["popularity_small_matrix_mrr_at_10"] == pytest.approx(5 / 12)
    assert names["small_matrix_users"] == 2


def test_slices_read_from_the_lake(home):
    assert small_matrix_slice(home, 1.0) is None  # KuaiRand, MicroLens: no block
    block = home.normalized("small_matrix")
    block.mkdir(parents=True)
    OUTCOMES.to_parquet(block / "part-0.parquet", index=False)
    assert small_matrix_slice(home, 1.0).user_ids.tolist() == [1, 2]

    day = home.normalized("interactions") / "ds=2022-04-22"
    day.mkdir(parents=True)
    log = OUTCOMES.assign(is_rand=[1, 1, 1, 1, 0, 0, 1])
    log.to_parquet(day / "part-0.parquet", index=False)
    random = random_exposure_slice(home, "2022-04-22", 1.0)
    # Only randomly exposed views count: user 2's views came from the recommender.
    assert random.user_ids.tolist() == [1] and random.video_ids.tolist() == [10, 20, 30]
    assert random_exposure_slice(home, "2022-04-23", 1.0) is None

    OUTCOMES.to_parquet(day / "part-0.parquet", index=False)  # no is_rand column: KuaiRec
    assert random_exposure_slice(home, "2022-04-22", 1.0) is None
