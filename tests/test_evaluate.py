"""Full-ranking metrics against values computed by hand."""

import math

import numpy as np
import pytest

from models.evaluate import auc, full_ranking_metrics, gini, head_metrics, rmse, top_k


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


def test_auc_and_rmse_by_hand():
    # Positives score 0.9 and 0.4, negatives 0.4 and 0.1: of the 4 (positive, negative) pairs
    # 3 are ordered right and one is a tie (counts half) -> 3.5 / 4.
    assert auc(np.array([1, 0, 1, 0]), np.array([0.9, 0.4, 0.4, 0.1])) == pytest.approx(0.875)
    assert auc(np.array([1, 0]), np.array([0.2, 0.8])) == pytest.approx(0.0)
    assert math.isnan(auc(np.array([1, 1]), np.array([0.2, 0.8])))  # one class only
    assert rmse(np.array([0.0, 1.0]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert rmse(np.array([0.0, 1.0]), np.array([0.0, 0.0])) == pytest.approx(math.sqrt(0.5))


def test_head_metrics_skip_unknown_labels_and_omit_auc_where_undefined():
    # The NaN row is left out: errors 0.2 and 0.2 -> RMSE 0.2; the positive outranks the negative.
    m = head_metrics(np.array([1.0, np.nan, 0.0]), np.array([0.8, 0.3, 0.2]))
    assert m == pytest.approx({"rmse": 0.2, "auc": 1.0})
    # A fraction label (watch time) or a single class: RMSE only.
    assert head_metrics(np.array([0.75, 0.25]), np.array([0.5, 0.5])) == pytest.approx(
        {"rmse": 0.25}
    )
    assert set(head_metrics(np.array([1.0, 1.0]), np.array([0.5, 0.9]))) == {"rmse"}
    assert head_metrics(np.array([np.nan]), np.array([0.5])) == {}
