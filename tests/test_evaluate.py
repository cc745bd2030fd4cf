"""Full-ranking metrics and the baselines against values computed by hand."""

import math

import numpy as np
import pandas as pd
import pytest

from models.baselines import Transitions, popularity_scores
from models.evaluate import (
    auc,
    both_protocols,
    full_ranking_metrics,
    gini,
    head_metrics,
    metric_names,
    next_item_metrics,
    popularity_metrics,
    popularity_shortlists,
    rmse,
    top_k,
)


def test_history_is_masked_and_order_is_best_first():
    scores = np.array([[0.9, 0.8, 0.1, 0.5]])
    assert top_k(scores, [np.array([0])], 2).tolist() == [[1, 3]]


def test_equal_scores_rank_the_lower_column_first_and_nan_last():
    scores = np.array([[1.0, 3.0, 3.0, np.nan, 3.0, 2.0]])
    # Masked column 1 and the NaN both rank as -inf: last, lower column first.
    assert top_k(scores, [np.array([1])], 6).tolist() == [[2, 4, 5, 0, 1, 3]]
    assert top_k(scores, [np.array([1])], 6, mask_history=False).tolist() == [[1, 2, 4, 5, 0, 3]]


def test_masked_and_unmasked_by_hand():
    # Both users' seen items score highest. User 0: target 2 after seen 0 and 1. User 1: target
    # 3 ties 1 and 2 (seen) at 0.6, the lower column first. Masked: each target ranks first.
    # Unmasked: each ranks third (DCG 1 / log2(4) = 0.5 exactly, reciprocal rank 1/3).
    scores = np.array([[0.9, 0.8, 0.7, 0.1], [0.3, 0.6, 0.6, 0.6]])
    targets, seen = np.array([2, 3]), [np.array([0, 1]), np.array([1, 2])]
    m = both_protocols(
        lambda mask: next_item_metrics(scores, targets, seen, ks=(2, 3), mask_history=mask)
    )
    assert (m["ndcg@2"], m["hr@2"], m["mrr@3"]) == (1.0, 1.0, 1.0)
    assert (m["unmasked_ndcg@2"], m["unmasked_hr@2"]) == (0.0, 0.0)
    assert (m["unmasked_ndcg@3"], m["unmasked_hr@3"], m["unmasked_mrr@3"]) == (0.5, 1.0, 1 / 3)
    # One place names what is logged: the protocol's mark heads the name.
    assert metric_names(m, "test", only=("ndcg@3",)) == {
        "test_ndcg_at_3": 1.0,
        "unmasked_test_ndcg_at_3": 0.5,
    }


def test_transition_baseline_by_hand():
    # Items 1..5 (0 is padding): 1 -> 2 twice, 1 -> 3 once, 2 -> 3 twice, 2 -> 4 once; 4 and 5
    # are never followed by anything; no pair across two sequences (3 -> 1 never occurs).
    transitions = Transitions.count(
        [np.array([1, 2, 3]), np.array([1, 2, 4]), np.array([1, 3]), np.array([2, 3, 4, 5])], 6
    )
    popularity = np.array([0.0, 3.0, 4.0, 3.0, 1.0, 0.0])
    scores = transitions.scores(np.array([1, 2, 5, 3]), popularity)
    tie_break = popularity / 5.0  # below one: orders only what the counts leave equal
    assert np.array_equal(scores[0], np.array([0, 0, 2, 1, 0, 0]) + tie_break)
    assert np.array_equal(scores[1], np.array([0, 0, 0, 2, 1, 0]) + tie_break)
    ranked = top_k(scores, [], 6, mask_history=False).tolist()
    assert ranked[0] == [2, 3, 1, 4, 0, 5]  # 2 and 3 followed 1, then by popularity
    assert ranked[1] == [3, 4, 2, 1, 0, 5]
    assert ranked[2] == [2, 1, 3, 4, 0, 5]  # 5 never followed: popularity, 1 before 3 (equal)
    assert ranked[3] == [4, 2, 1, 3, 0, 5]  # 3 -> 4 once, then popularity


def test_popularity_scores_rank_every_row_alike():
    assert popularity_scores(np.array([2, 5, 1]), 2).tolist() == [[2, 5, 1], [2, 5, 1]]


def test_sequence_run_scores_transitions_of_the_training_part_only(one_torch_thread):
    from models.sequence_data import from_frame, train_sequence_model

    # User 1: 10 20 30 40 (train 10 20, val 30, test 40); user 2: 10 20 30 (train 10, val 20,
    # test 30); user 3: 10 20 (training only). Training transitions: 10 -> 20 twice, nothing
    # else (20 -> 30 is a validation or test target). Validation: user 2 (last 10) ranks 20
    # first; user 1 (last 20, never followed in training) falls back to popularity 10, 20, 30,
    # 40: the target 30 third unmasked, first with 10 and 20 masked.
    frame = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 2, 2, 2, 3, 3],
            "video_id": [10, 20, 30, 40, 10, 20, 30, 10, 20],
            "event_ts": [1, 2, 3, 4, 1, 2, 3, 1, 2],
        }
    )
    run = train_sequence_model(
        "gru", from_frame(frame, max_len=4), trainer_overrides={"epochs": 1, "progress": False}
    )
    m = run.metrics
    assert m["transition_val_ndcg_at_10"] == 1.0
    assert m["unmasked_transition_val_ndcg_at_10"] == (0.5 + 1.0) / 2
    for name in ("val", "test", "popularity_val", "popularity_test", "transition_test"):
        assert {f"{name}_ndcg_at_10", f"unmasked_{name}_ndcg_at_10"} <= set(m), name


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


def test_a_wide_catalog_is_ranked_and_scored_in_blocks_with_the_same_result(
    one_torch_thread, monkeypatch
):
    """Ranking reads at most BLOCK_BYTES of float64 rows at once, and a model whose (users,
    items) scores pass DENSE_SCORE_BYTES scores a block of users at a time (KuaiRand-1K's
    908k videos ran training out of memory); neither changes a metric."""
    import models.evaluate as evaluate
    import models.sequence_data as sequence_data
    from models.sequence_data import SequenceData, evaluate_model, from_frame

    rng = np.random.default_rng(0)
    scores = rng.random((40, 300))
    scores[3, :] = 0.5  # ties everywhere: the lower column first
    history = [rng.choice(300, size=5, replace=False) for _ in range(40)]
    whole = top_k(scores, history, 20)
    monkeypatch.setattr(evaluate, "BLOCK_BYTES", 8 * 300 * 3)  # three rows at a time
    assert evaluate.rows_per_block(300) == 3
    assert np.array_equal(top_k(scores, history, 20), whole)
    assert evaluate.rows_per_block(10**9) == 1  # a row is the least

    users = np.repeat(np.arange(30), 8)
    frame = pd.DataFrame(
        {
            "user_id": users,
            "video_id": rng.integers(0, 60, size=len(users)),
            "event_ts": np.tile(np.arange(8), 30),
        }
    )
    data = SequenceData("gru", from_frame(frame, max_len=6), trainer_overrides={"epochs": 1})
    config = data.model_config  # a fresh model: any weights rank the same way in both paths
    from models.gru import GRU4Rec

    net = GRU4Rec(config)
    dense = evaluate_model(net, data.val)
    monkeypatch.setattr(sequence_data, "DENSE_SCORE_BYTES", 0)
    assert evaluate_model(net, data.val) == dense


@pytest.mark.parametrize("mask_history", [True, False])
def test_popularity_shortlists_rank_as_the_whole_rows_do(mask_history):
    """The popularity baseline ranked from shortlists gives what ranking every row of the
    broadcast counts gives: ties (equal counts) lower column first, history masked, a user
    who has seen nearly everything included."""
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 4, size=40).astype(float)  # many ties
    history = [rng.choice(40, size=n, replace=False) for n in (0, 3, 12, 36, 40)]
    relevant = [rng.choice(40, size=2, replace=False) for _ in history]
    for k in (1, 5, 10):
        np.testing.assert_array_equal(
            top_k(
                popularity_shortlists(counts, history, k, mask_history), history, k, mask_history
            ),
            top_k(popularity_scores(counts, len(history)), history, k, mask_history),
        )
    assert popularity_metrics(
        counts, relevant, history, ks=(5, 10), mask_history=mask_history
    ) == full_ranking_metrics(
        popularity_scores(counts, len(history)),
        relevant,
        history,
        ks=(5, 10),
        popularity=counts,
        mask_history=mask_history,
    )
