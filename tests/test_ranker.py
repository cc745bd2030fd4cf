"""Ranker smoke tests on tiny tensors: losses, masking, and batch scoring = pairwise scoring."""

import torch

from models.ranker import (
    HEADS,
    USER_DENSE,
    VIDEO_DENSE,
    MultiObjectiveRanker,
    RankerModelConfig,
    score_matrix,
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
    users = {k: batch(rows=3, seed=1)[k] for k in ("user_idx", "user_dense", "affinity")}
    videos = {k: batch(rows=4, seed=2)[k] for k in ("video_idx", "video_dense", "category")}
    matrix = score_matrix(model, users, videos, chunk_pairs=5)
    for u in range(3):
        for v in range(4):
            pair = {
                **{k: t[u : u + 1] for k, t in users.items()},
                **{k: t[v : v + 1] for k, t in videos.items()},
            }
            logits, _ = model(pair)
            assert torch.isclose(matrix[u, v], model.combined_score(logits)[0], atol=1e-5)
