"""Ranker smoke tests on tiny tensors: losses, masking, heads off for missing labels, the
fatigue penalty, batch scoring = pairwise scoring, and the evaluation's two stages."""

import numpy as np
import pandas as pd
import pytest
import torch

from features.labels import HEADS
from models.evaluate import full_ranking_metrics, top_k
from models.ranker import (
    USER_DENSE,
    VIDEO_DENSE,
    FirstStage,
    MultiObjectiveRanker,
    RankerModelConfig,
    pair_scorer,
    score_matrix,
    two_stage_shortlists,
)


def batch(n_users=3, n_videos=5, rows=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "user_idx": torch.randint(0, n_users, (rows,), generator=g),
        "user_dense": torch.randn(rows, len(USER_DENSE), generator=g),
        "affinity": torch.softmax(torch.randn(rows, 31, generator=g), -1),
        "video_idx": torch.randint(0, n_videos, (rows,), generator=g),
        "video_dense": torch.randn(rows, len(VIDEO_DENSE), generator=g),
        "category": torch.randint(-1, 31, (rows,), generator=g),
        "recent_share": torch.softmax(torch.randn(rows, 31, generator=g), -1),
    }


def test_forward_returns_logits_and_a_finite_loss_that_trains():
    torch.manual_seed(0)
    model = MultiObjectiveRanker(RankerModelConfig(n_users=3, n_videos=5))
    inputs = batch()
    targets = {h: torch.randint(0, 2, (8,)).float() for h in HEADS}
    targets["exposed"] = torch.ones(8)
    logits, loss = model(inputs, targets)
    assert logits.shape == (8, len(HEADS)) and torch.isfinite(loss)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(50):
        _, loss_i = model(inputs, targets)
        opt.zero_grad()
        loss_i.backward()
        opt.step()
    assert loss_i.item() < loss.item()


def test_skip_head_ignores_unexposed_rows_and_switched_off_heads_do_not_train():
    model = MultiObjectiveRanker(
        RankerModelConfig(n_users=3, n_videos=5, active_heads=("completion",))
    )
    inputs = batch()
    targets = {h: torch.zeros(8) for h in HEADS}
    targets["exposed"] = torch.zeros(8)
    logits, loss = model(inputs, targets)
    only_completion = torch.nn.functional.binary_cross_entropy_with_logits(
        logits[:, 1], targets["completion"]
    )
    assert torch.isclose(loss, only_completion)


def test_score_matrix_equals_scoring_each_pair():
    torch.manual_seed(0)
    model = MultiObjectiveRanker(RankerModelConfig(n_users=3, n_videos=5)).eval()
    users = {
        k: batch(rows=3, seed=1)[k] for k in ("user_idx", "user_dense", "affinity", "recent_share")
    }
    videos = {k: batch(rows=4, seed=2)[k] for k in ("video_idx", "video_dense", "category")}
    videos["category"][0] = -1  # a video without a category: no fatigue
    matrix = score_matrix(model, users, videos, chunk_pairs=5)
    for u in range(3):
        for v in range(4):
            pair = {
                **{k: t[u : u + 1] for k, t in users.items()},
                **{k: t[v : v + 1] for k, t in videos.items()},
            }
            assert torch.isclose(matrix[u, v], model.score_batch(pair)[0], atol=1e-5)
    # The export's scorer of (user row, video position) pairs, in chunks: the same scores.
    rows, positions = np.array([2, 0, 1, 2, 2]), np.array([3, 0, 1, 0, 3])
    scores = pair_scorer(model, users, videos, chunk=2)(rows, positions)
    np.testing.assert_allclose(scores, matrix.numpy()[rows, positions], rtol=1e-6)


def catalog_of_30(n_users: int):
    """An untrained ranker (seeded), `n_users` users and a catalog of 30 videos, encoded."""
    torch.manual_seed(0)
    model = MultiObjectiveRanker(RankerModelConfig(n_users=n_users, n_videos=40)).eval()
    users = {
        k: batch(rows=n_users, seed=1)[k]
        for k in ("user_idx", "user_dense", "affinity", "recent_share")
    }
    videos = {
        k: batch(n_videos=40, rows=30, seed=2)[k] for k in ("video_idx", "video_dense", "category")
    }
    return model, users, videos


def test_two_stage_ranks_the_best_unseen_by_dot_product_first_by_the_heads_then_the_rest():
    """A catalog past `ranker.eval_rerank_depth`: each user's `depth` best unseen videos by
    the towers' dot product come first, in the heads' order (the same scores as scoring
    every pair), every other video after them. Ranking reads the shortlists alone and gives
    what ranking the whole row would (the rest ordered by the dot product, below them)."""
    model, users, videos = catalog_of_30(n_users=4)
    history = [np.array([0, 5]), np.array([], dtype=np.int64), np.array([7]), np.arange(10)]
    depth = 6
    dot_only = FirstStage(np.arange(30), np.full((4, 0), -1), dot_share=1.0)
    shortlists = two_stage_shortlists(model, users, videos, history, depth, dot_only)
    assert shortlists.shape == (4, 30)
    every = score_matrix(model, users, videos).numpy()
    with torch.no_grad():
        dots = (model.query(users) @ model.item_vectors(videos).T).numpy()
    whole = np.empty((4, 30))
    for start in (0, 3):  # two blocks, one of a single row
        columns, scores = shortlists.best(slice(start, start + 3))
        for r in range(len(columns)):
            u = start + r
            unseen = np.setdiff1d(np.arange(30), history[u])
            first = unseen[np.argsort(-dots[u, unseen], kind="stable")[:depth]]
            assert (np.diff(columns[r]) > 0).all() and set(columns[r]) == set(first)
            np.testing.assert_allclose(scores[r], every[u, columns[r]], rtol=1e-6)
            # The same ranking over the whole row: the rest by the dot product, below.
            whole[u] = dots[u] - dots[u].max() + scores[r].min() - 1.0
            whole[u, columns[r]] = scores[r]
    for k in (1, 5, depth):
        np.testing.assert_array_equal(top_k(shortlists, history, k), top_k(whole, history, k))
    relevant = [np.array([1, 2]), np.array([3]), np.array([29]), np.array([12, 20])]
    assert full_ranking_metrics(shortlists, relevant, history, ks=(1, 5)) == full_ranking_metrics(
        whole, relevant, history, ks=(1, 5)
    )
    with pytest.raises(ValueError, match="masked only"):
        top_k(shortlists, history, 5, mask_history=False)
    with pytest.raises(ValueError, match="past the shortlists"):
        top_k(shortlists, history, depth + 1)


def test_the_pooled_first_stage_takes_the_dot_product_then_categories_then_popularity():
    """The evaluation's first stage pools as the export does: each user's `dot_share` of the
    depth best unseen by the dot product, then their category picks, then the most popular
    unseen up to the depth; a seen video never (unless fewer unseen than the depth, then it
    ranks last); the heads' scores are those of scoring every pair."""
    model, users, videos = catalog_of_30(n_users=3)
    history = [np.array([0, 5, 29]), np.array([], dtype=np.int64), np.arange(27)]
    popular = np.random.default_rng(0).permutation(30)
    # user 0: a seen pick (5) and a repeat; user 1: none; user 2: picks beyond its 3 unseen
    by_category = np.array([[5, 11, 11], [-1, -1, -1], [1, 2, 28]])
    depth = 8
    stage = FirstStage(popular, by_category, dot_share=0.25)
    shortlists = two_stage_shortlists(model, users, videos, history, depth, stage)
    every = score_matrix(model, users, videos).numpy()
    with torch.no_grad():
        dots = (model.query(users) @ model.item_vectors(videos).T).numpy()
    columns, scores = shortlists.best(slice(0, 3))
    for u in range(2):
        unseen = np.setdiff1d(np.arange(30), history[u])
        pool = list(unseen[np.argsort(-dots[u, unseen], kind="stable")[:2]])
        for c in [*by_category[u], *popular]:  # categories first, popularity filling
            if c in unseen and c not in pool and len(pool) < depth:
                pool.append(c)
        assert (np.diff(columns[u]) > 0).all() and set(columns[u]) == set(pool)
        np.testing.assert_allclose(scores[u], every[u, columns[u]], rtol=1e-6)
    # Three unseen videos for a depth of 8: all of them, then seen ones, which rank last.
    assert {27, 28, 29} <= set(columns[2])
    assert np.isfinite(scores[2][np.isin(columns[2], [27, 28, 29])]).all()
    assert np.isneginf(scores[2][~np.isin(columns[2], [27, 28, 29])]).all()
    assert set(top_k(shortlists, history, 3)[2]) == {27, 28, 29}
    assert "2 best unseen by the towers' dot product, up to 3 best" in stage.describe(depth)


def test_first_stage_build_picks_the_most_popular_of_each_users_top_categories():
    """`FirstStage.build`: per user, the 3 categories of highest affinity (above 0), each
    giving its most popular columns (depth // 12 of them); no category, no picks."""
    popular = np.array([5, 3, 0, 4, 1, 2, 6])  # the most popular first
    categories = np.array([0, 1, 0, 1, 2, -1, 0])
    affinity = np.array([[0.6, 0.4, 0.0], [0.0, 0.0, 0.0]])
    stage = FirstStage.build(popular, categories, affinity, depth=24)  # 2 per category
    assert stage.by_category.shape == (2, 6)
    assert stage.by_category[0].tolist() == [0, 2, 3, 1, -1, -1]  # categories 0, 1; not 2
    assert (stage.by_category[1] == -1).all()
    assert stage.popular is popular


def test_fatigue_lowers_the_score_of_the_category_the_user_just_binged():
    torch.manual_seed(0)
    model = MultiObjectiveRanker(RankerModelConfig(n_users=3, n_videos=5, fatigue_penalty=0.05))
    model.eval()
    # Four rows of one user and one video's features; only the video's category and the
    # user's recent views change. Row 0: nothing recent; row 1: the last views were all
    # category 3 and the video is category 3; row 2: same binge, a category-4 video;
    # row 3: same binge, a video without a category.
    one = batch(rows=1)
    rows = {k: v.repeat(4, *([1] * (v.dim() - 1))) for k, v in one.items()}
    rows["category"] = torch.tensor([3, 3, 4, -1])
    binge = torch.zeros(31)
    binge[3] = 1.0
    rows["recent_share"] = torch.stack([torch.zeros(31), binge, binge, binge])
    with torch.no_grad():
        scores = model.score_batch(rows)
        unpenalized = model.combined_score(model(rows)[0])
    assert scores[1] < scores[0]
    assert scores[0] - scores[1] == pytest.approx(0.05, abs=1e-6)  # penalty * share 1.0
    assert torch.allclose(scores[2:], unpenalized[2:])  # other category, or none: no fatigue
    assert torch.allclose(model.fatigue(rows), torch.tensor([0.0, 1.0, 0.0, 0.0]))


def microlens_like_rows() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training rows as build_training_data assembles them for a log without watch time
    (labels as features/labels.py writes them: null where not logged): three views, one
    whose rewatch label is unknown, and three sampled unexposed videos (labels 0)."""
    views = pd.DataFrame(
        {
            "label_watch_time": pd.array([None, None, None], dtype="Float32"),
            "label_completion": pd.array([None, None, None], dtype="Int32"),
            "label_rewatch": pd.array([1, None, 0], dtype="Int32"),
            "label_continuation": pd.array([None, None, None], dtype="Int32"),
            "label_skip": pd.array([None, None, None], dtype="Int32"),
            "exposed": 1.0,
        }
    )
    negatives = pd.DataFrame({c: [0.0] * 3 for c in views.columns if c.startswith("label_")})
    negatives["exposed"] = 0.0
    return views, pd.concat([views.astype("float64"), negatives], ignore_index=True)


def test_heads_without_labels_are_off_reported_and_the_loss_has_no_nan(one_torch_thread):
    from models.ranker_data import label_heads, label_targets
    from models.trainer import TrainerConfig, fit

    views, rows = microlens_like_rows()
    active, inactive = label_heads(views)
    assert active == ("rewatch",)
    assert set(inactive) == {"watch_time", "completion", "continuation", "skip"}
    assert inactive["watch_time"] == (
        "label_watch_time is null for every row: the dataset logs no watch time"
    )
    targets = label_targets(rows, active)
    assert set(targets) == {"rewatch", "rewatch_known", "exposed"}  # nothing invented
    assert targets["rewatch_known"].tolist() == [1, 0, 1, 1, 1, 1]  # the null view is masked
    assert not any(torch.isnan(t).any() for t in targets.values())

    torch.manual_seed(0)
    model = MultiObjectiveRanker(RankerModelConfig(n_users=3, n_videos=5, active_heads=active))
    inputs = batch(rows=6)
    logits, loss = model(inputs, targets)
    # The loss is the rewatch BCE over the five known rows, whatever the unknown row says.
    known = targets["rewatch_known"].bool()
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        logits[known, HEADS.index("rewatch")], targets["rewatch"][known]
    )
    assert torch.isclose(loss, expected)
    targets_nan = {**targets, "rewatch": targets["rewatch"].clone()}
    targets_nan["rewatch"][1] = float("nan")  # even a NaN label under the mask stays out
    assert torch.isclose(model(inputs, targets_nan)[1], expected)
    history = fit(model, inputs, targets, TrainerConfig(epochs=2, batch_size=4, progress=False))
    assert all(np.isfinite(h["train_loss"]) for h in history)
    # The combined score only counts the rewatch head (skip is off: no skip penalty).
    logits, _ = model(inputs)
    rewatch = torch.sigmoid(logits[:, HEADS.index("rewatch")])
    assert torch.allclose(model.combined_score(logits), 0.15 * rewatch)


def test_a_bundle_saved_before_the_fatigue_penalty_loads_and_scores_as_registered(tmp_path):
    import json

    from models.bundle import Bundle
    from models.ranker_data import FeatureScaler, RankerBundle

    torch.manual_seed(0)
    model = MultiObjectiveRanker(RankerModelConfig(n_users=3, n_videos=5)).eval()
    keys = [f"user:{c}" for c in USER_DENSE] + [f"video:{c}" for c in VIDEO_DENSE]
    scaler = FeatureScaler(dict.fromkeys(keys, 0.0), dict.fromkeys(keys, 1.0))
    # The files of a ranker version logged before the one bundle format (`ranker/`).
    folder = tmp_path / "ranker"
    folder.mkdir()
    torch.save(model.state_dict(), folder / "weights.pt")
    config = model.config.to_dict()
    del config["fatigue_penalty"]  # what an older version wrote
    (folder / "model_config.json").write_text(json.dumps(config))
    np.save(folder / "user_ids.npy", np.array([7, 8]))
    np.save(folder / "video_ids.npy", np.arange(4))
    (folder / "scaler.json").write_text(json.dumps({"mean": scaler.mean, "std": scaler.std}))
    old = Bundle.load(folder)
    assert old.model.config.fatigue_penalty == 0.0
    rows = pd.DataFrame({"user_id": [7, 7], "video_id": [1, 2]})
    for c in USER_DENSE:
        rows[f"user_features__{c}"] = 1.0
    rows["user_features__category_affinity"] = [[0.5] * 31] * 2
    rows["user_features__recent_category_share"] = [[1.0] + [0.0] * 30] * 2
    for c in VIDEO_DENSE:
        rows[f"video_features__{c}"] = 1.0
    rows["video_features__primary_category"] = [0, 0]  # the category just binged
    # Scored as registered: the recent shares change nothing.
    unpenalized = old.score_rows(rows.drop(columns="user_features__recent_category_share"))
    np.testing.assert_allclose(old.score_rows(rows), unpenalized, atol=1e-6)
    # The same weights with today's default config do pay the penalty.
    current = RankerBundle("ranker", model, old.user_vocab, old.video_vocab, scaler)
    np.testing.assert_allclose(current.score_rows(rows), unpenalized - 0.05, atol=1e-6)
