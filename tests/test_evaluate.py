"""Full-ranking metrics against values computed by hand."""

import math

import numpy as np
import pytest

from models.evaluate import full_ranking_metrics, gini, top_k


def test_history_is_masked_and_order_is_best_first():
    scores = np.array([[0.9, 0.8, 0.1, 0.5]])
    assert top_k(scores, [np.array([0])], 2).tolist() == [[1, 3]]


def test_metrics_by_hand():
    # User 0: relevant {2}; ranking with video 0 masked: 1, 2, 3 -> hit at rank 2.
    # User 1: relevant {0, 3}; ranking: 3, 2, 1, 0 -> hits at ranks 1 and 4.
    scores = np.array([[9.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    relevant = [np.array([2]), np.array([0, 3])]
    history = [np.array([0]), np.array([], dtype=int)]
    m = full_ranking_metrics(
        scores, relevant, history, ks=(2, 4), categories=np.array([0, 0, 1, 1])
    )
    ndcg_u0_k2 = (1 / math.log2(3)) / 1.0
    ndcg_u1_k2 = 1.0 / (1.0 + 1 / math.log2(3))
    assert m["ndcg@2"] == pytest.approx((ndcg_u0_k2 + ndcg_u1_k2) / 2)
    assert m["recall@2"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["hr@2"] == pytest.approx(1.0)
    assert m["mrr@2"] == pytest.approx((0.5 + 1.0) / 2)
    ndcg_u1_k4 = (1.0 + 1 / math.log2(5)) / (1.0 + 1 / math.log2(3))
    assert m["ndcg@4"] == pytest.approx((ndcg_u0_k2 + ndcg_u1_k4) / 2)
    assert m["recall@4"] == pytest.approx(1.0)
    # top-2 lists: [1, 2] and [3, 2] -> videos 1, 2, 3 of 4.
    assert m["coverage@2"] == pytest.approx(0.75)
    # categories [0, 1] and [1, 1]: one of two lists mixes categories.
    assert m["diversity@2"] == pytest.approx(0.5)


def test_gini():
    assert gini(np.array([5, 5, 5, 5])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 8])) == pytest.approx(0.75)
