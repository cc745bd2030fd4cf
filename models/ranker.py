"""Multi-objective ranker: shared bottom over user, video and cross features, one head per objective.

A user tower and a video tower each turn id embeddings plus dense features into a vector;
their dot product is both a retrieval score (the FAISS index holds the video vectors) and an
input of the shared bottom, whose heads predict, each in [0, 1]:
  watch_time (capped fraction), completion, rewatch, continuation, skip.
Final score = sum of weight * head - skip_penalty * skip - fatigue_penalty * fatigue
(weights from config), over the active heads only: a head whose label the dataset does not log
is switched off, never trained on invented labels. Fatigue is the user's share of the video's
category among their last views (`recent_category_share`): a fixed penalty, not learned.

Trained on logged views plus sampled unexposed videos (labels all 0, skip masked), so the
combined score ranks a whole catalog, not only what was shown. A row whose label is null for
an active head (`<head>_known` = 0) is left out of that head's loss.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from features.labels import HEADS
from models.evaluate import BLOCK_BYTES, Shortlists
from models.interface import Recommender

USER_DENSE = (
    "views_1d",
    "views_7d",
    "views_28d",
    "mean_watch_ratio_7d",
    "mean_watch_ratio_28d",
    "completion_rate_28d",
    "skip_rate_28d",
    "hours_since_last_view",
)
VIDEO_DENSE = (
    "exposures_1d",
    "exposures_7d",
    "mean_watch_ratio_7d",
    "completion_rate_7d",
    "skip_rate_7d",
    "trend_velocity",
    "duration_ms",
    "hours_since_first_view",
)


@dataclass
class RankerModelConfig:
    n_users: int  # user vocabulary size, index 0 is "unknown user"
    n_videos: int  # video vocabulary size, index 0 is "unknown video"
    num_categories: int = 31  # length of the user's category-affinity vector
    embedding_dim: int = 32  # width of the id embeddings and of the tower outputs
    hidden_dim: int = 128  # width of the shared bottom
    head_weights: dict[str, float] = field(
        default_factory=lambda: {
            "watch_time": 0.4,
            "completion": 0.2,
            "rewatch": 0.15,
            "continuation": 0.15,
        }
    )
    skip_penalty: float = 0.05
    fatigue_penalty: float = 0.05  # times the user's recent share of the video's category
    active_heads: tuple[str, ...] = HEADS  # heads whose labels the dataset has
    # Step the video table lazily (SparseAdam: only the rows a batch touched) rather than with
    # AdamW over every row: a dense step over KuaiRand-1K's videos cost more than its batch.
    sparse_videos: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def _tower(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, out_dim * 2), nn.ReLU(), nn.Linear(out_dim * 2, out_dim))


class MultiObjectiveRanker(Recommender):
    """`encode` gives each (user, video) row's head logits, `score` combines them; `query`
    and `item_vectors` are the user and video towers (their dot product is a retrieval
    score). The fatigue penalty needs the row's features: `score_batch`."""

    config_class = RankerModelConfig

    def __init__(self, config: RankerModelConfig):
        super().__init__()
        self.config = config
        d = config.embedding_dim
        self.user_emb = nn.Embedding(config.n_users, d)
        self.video_emb = nn.Embedding(config.n_videos, d, sparse=config.sparse_videos)
        self.category_emb = nn.Embedding(config.num_categories + 1, d)  # last index: no category
        self.user_tower = _tower(d + len(USER_DENSE) + config.num_categories, d)
        self.video_tower = _tower(2 * d + len(VIDEO_DENSE), d)
        self.bottom = nn.Sequential(
            nn.Linear(3 * d + 2, config.hidden_dim),
            nn.ReLU(),
            nn.Linear(config.hidden_dim, config.hidden_dim),
            nn.ReLU(),
        )
        self.heads = nn.Linear(config.hidden_dim, len(HEADS))
        # Wide part (Wide & Deep): a linear path from the popularity and taste signals straight
        # to every head, so the deep part only has to learn what they do not explain.
        self.wide = nn.Linear(len(VIDEO_DENSE) + 2, len(HEADS))
        nn.init.normal_(self.user_emb.weight, std=0.05)
        nn.init.normal_(self.video_emb.weight, std=0.05)

    @classmethod
    def config_from_dict(cls, saved: dict) -> RankerModelConfig:
        # A bundle saved before the fatigue penalty existed was evaluated and gated without it:
        # it keeps scoring as it was registered.
        return RankerModelConfig(
            **{"fatigue_penalty": 0.0, **saved, "active_heads": tuple(saved["active_heads"])}
        )

    def _category_index(self, category: torch.Tensor) -> torch.Tensor:
        c = self.config.num_categories
        return torch.where((category >= 0) & (category < c), category, torch.full_like(category, c))

    def user_vector(self, user_idx, user_dense, affinity) -> torch.Tensor:
        return self.user_tower(torch.cat([self.user_emb(user_idx), user_dense, affinity], dim=-1))

    def video_vector(self, video_idx, video_dense, category) -> torch.Tensor:
        cat = self.category_emb(self._category_index(category))
        return self.video_tower(torch.cat([self.video_emb(video_idx), cat, video_dense], dim=-1))

    def category_share(self, shares: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """`shares[i, category[i]]`, 0 where the video has no category: shape (n, 1)."""
        idx = self._category_index(category)
        return F.pad(shares, (0, 1)).gather(1, idx.unsqueeze(1))

    def head_logits(self, user_vec, video_vec, affinity, category, video_dense) -> torch.Tensor:
        # The user's affinity for this video's category: the explicit taste signal.
        taste = self.category_share(affinity, category)
        dot = (user_vec * video_vec).sum(-1, keepdim=True)
        x = torch.cat([user_vec, video_vec, user_vec * video_vec, dot, taste], dim=-1)
        wide = torch.cat([video_dense, taste, torch.log(taste + 1e-3)], dim=-1)
        return self.heads(self.bottom(x)) + self.wide(wide)

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(rows, len(HEADS)) head logits of each (user, video) row."""
        user_vec = self.query(batch)
        video_vec = self.item_vectors(batch)
        return self.head_logits(
            user_vec, video_vec, batch["affinity"], batch["category"], batch["video_dense"]
        )

    def query(self, users: dict[str, torch.Tensor]) -> torch.Tensor:
        """The user tower."""
        return self.user_vector(users["user_idx"], users["user_dense"], users["affinity"])

    def item_vectors(self, items: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The video tower of the videos in `items` (their features: a ranker has no video
        vector without them)."""
        if items is None:
            raise ValueError("the ranker's video vectors need the videos' features")
        return self.video_vector(items["video_idx"], items["video_dense"], items["category"])

    def loss(
        self,
        logits: torch.Tensor,
        targets: dict[str, torch.Tensor],
        negatives: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean BCE per active head over the rows whose label is known (`<head>_known`, all
        rows when absent); skip only over logged views. The sampled unexposed videos are rows
        of the batch (`exposed` = 0), not `negatives`."""
        total = logits.new_zeros(())
        exposed = targets["exposed"]
        for i, head in enumerate(HEADS):
            if head not in self.config.active_heads:
                continue
            known = targets.get(f"{head}_known", torch.ones_like(exposed))
            if head == "skip":
                # Whether an unshown video would be skipped is unknown: learn skip on views only.
                known = known * exposed
            # A masked row's target is replaced, not only weighted by 0: 0 * NaN is still NaN.
            target = torch.where(known > 0, targets[head], torch.zeros_like(targets[head]))
            per_row = F.binary_cross_entropy_with_logits(logits[:, i], target, reduction="none")
            total = total + (per_row * known).sum() / known.sum().clamp(min=1.0)
        return total

    def combined_score(
        self, logits: torch.Tensor, fatigue: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Weighted active heads - skip penalty - fatigue penalty; `fatigue` (n,) in [0, 1],
        None: no fatigue known (no penalty)."""
        probs = torch.sigmoid(logits)
        score = torch.zeros_like(probs[:, 0])
        for i, head in enumerate(HEADS):
            if head in self.config.active_heads and head in self.config.head_weights:
                score = score + self.config.head_weights[head] * probs[:, i]
        if "skip" in self.config.active_heads:
            score = score - self.config.skip_penalty * probs[:, HEADS.index("skip")]
        if fatigue is not None:
            score = score - self.config.fatigue_penalty * fatigue
        return score

    def fatigue(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Per row: the user's recent share of the video's category (None without the shares)."""
        if "recent_share" not in batch:
            return None
        return self.category_share(batch["recent_share"], batch["category"]).squeeze(1)

    def score(self, hidden: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """The combined score of rows' head logits (`encode`), without the fatigue penalty."""
        return self.combined_score(hidden)

    def score_batch(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The combined score of each (user, video) row of `batch`, fatigue included."""
        logits, _ = self(batch)
        return self.combined_score(logits, self.fatigue(batch))


# (user, video) pairs scored through the heads at a time: each pair's hidden layers are a few
# KB, so this bounds the memory of scoring to about a GiB.
PAIR_CHUNK = 1 << 18


def _pair_scores(
    model: MultiObjectiveRanker,
    user_vec: torch.Tensor,
    affinity: torch.Tensor,
    recent_share: torch.Tensor | None,
    videos: dict[str, torch.Tensor],
    video_vec: torch.Tensor,
    columns: torch.Tensor,
) -> torch.Tensor:
    """Combined score of user i with the videos `columns[i]` (n, c) of `videos`: (n, c)."""
    n, c = columns.shape
    flat = columns.reshape(-1)
    logits = model.head_logits(
        user_vec.repeat_interleave(c, 0),
        video_vec[flat],
        affinity.repeat_interleave(c, 0),
        videos["category"][flat],
        videos["video_dense"][flat],
    )
    fatigue = None
    if recent_share is not None:
        shares = F.pad(recent_share, (0, 1))
        fatigue = shares.gather(1, model._category_index(videos["category"][columns])).reshape(-1)
    return model.combined_score(logits, fatigue).view(n, c)


def _towers(model, users, videos, chunk: int = 1 << 20):
    """The user and video tower vectors, where the model lives; the video tower a chunk of
    rows at a time (KuaiRand-1K's catalog is 4.37M videos)."""
    model.eval()
    dev = next(model.parameters()).device
    users = {k: v.to(dev) for k, v in users.items()}
    videos = {k: v.to(dev) for k, v in videos.items()}
    user_vec = model.user_vector(users["user_idx"], users["user_dense"], users["affinity"])
    n_videos = len(videos["video_idx"])
    video_vec = torch.cat(
        [
            model.video_vector(
                videos["video_idx"][s : s + chunk],
                videos["video_dense"][s : s + chunk],
                videos["category"][s : s + chunk],
            )
            for s in range(0, n_videos, chunk)
        ]
        or [user_vec.new_zeros(0, model.config.embedding_dim)]
    )
    return users, videos, user_vec, video_vec


@torch.no_grad()
def pair_scorer(model: MultiObjectiveRanker, users, videos, chunk: int = 1 << 17):
    """score(rows, positions) -> the combined score (fatigue included) of those (user row,
    video position) pairs, as numpy: the export's candidate pools. Towers computed once,
    pairs in chunks."""
    users, videos, user_vec, video_vec = _towers(model, users, videos)
    dev = user_vec.device

    @torch.no_grad()  # called later, by the export, outside this function's no_grad
    def score(rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(rows), chunk):
            r = torch.as_tensor(np.asarray(rows[start : start + chunk], np.int64), device=dev)
            p = torch.as_tensor(np.asarray(positions[start : start + chunk], np.int64), device=dev)
            shares = users["recent_share"][r] if "recent_share" in users else None
            pairs = _pair_scores(
                model, user_vec[r], users["affinity"][r], shares, videos, video_vec, p[:, None]
            )
            out.append(pairs[:, 0].cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    return score


@torch.no_grad()
def score_matrix(
    model: MultiObjectiveRanker,
    users: dict[str, torch.Tensor],
    videos: dict[str, torch.Tensor],
    chunk_pairs: int = PAIR_CHUNK,
) -> torch.Tensor:
    """Combined score of every (user, video) pair: shape (n_users, n_videos). Fatigue is
    applied when `users` carries `recent_share`. Computed where the model lives (a GPU
    during training's per-epoch validation); the scores come back on the CPU."""
    users, videos, user_vec, video_vec = _towers(model, users, videos)
    n_videos = video_vec.shape[0]
    rows_per_chunk = max(1, chunk_pairs // max(n_videos, 1))
    every = torch.arange(n_videos, device=video_vec.device)
    out = []
    for start in range(0, user_vec.shape[0], rows_per_chunk):
        rows = slice(start, start + rows_per_chunk)
        n = len(user_vec[rows])
        shares = users["recent_share"][rows] if "recent_share" in users else None
        columns = every.expand(n, n_videos)
        out.append(
            _pair_scores(
                model, user_vec[rows], users["affinity"][rows], shares, videos, video_vec, columns
            ).cpu()
        )
    return torch.cat(out) if out else torch.zeros(0, n_videos)


@dataclass
class FirstStage:
    """What the evaluation's first stage pools besides the towers' dot product, as the
    export's candidate pool does (jobs/candidates.py: the index, each user's top categories,
    the trending and most viewed): the dot product alone is not trained as a retriever and, on
    KuaiRand-1K's 4.37M videos, its 2,000 best held 0.03% of the relevant videos.
    `popular`: every column, the most popular first (the source that fills the shortlist);
    `by_category`: (n_users, m) columns of each user's top categories' best videos (-1: none).
    """

    popular: np.ndarray
    by_category: np.ndarray
    dot_share: float = 0.5  # of the depth, the dot product's best unseen

    @classmethod
    def build(
        cls, popular: np.ndarray, categories: np.ndarray, affinity: np.ndarray, depth: int
    ) -> FirstStage:
        """From the columns most popular first, each column's category (-1: none) and the
        users' (n_users, n_categories) affinities: each user's 3 top categories (affinity above
        0) give their most popular columns, a twelfth of the depth each."""
        n = affinity.shape[1]
        per = max(1, depth // 12)
        table = np.full((n + 1, per), -1, dtype=np.int64)  # the last row: no category
        ordered = categories[popular]
        for cat in range(n):
            mine = popular[ordered == cat][:per]
            table[cat, : len(mine)] = mine
        top = np.argsort(-affinity, axis=1, kind="stable")[:, :3]
        top = np.where(np.take_along_axis(affinity, top, axis=1) > 0, top, n)
        return cls(popular, table[top].reshape(len(top), -1))

    def describe(self, depth: int) -> str:
        n_dot = int(depth * self.dot_share)
        return (
            f"{n_dot} best unseen by the towers' dot product, up to {self.by_category.shape[1]} "
            "best of the user's top categories, the most popular unseen filling to "
            f"{depth}"
        )


@torch.no_grad()
def two_stage_shortlists(
    model: MultiObjectiveRanker,
    users: dict[str, torch.Tensor],
    videos: dict[str, torch.Tensor],
    history: list[np.ndarray],
    depth: int,
    first_stage: FirstStage,
) -> Shortlists:
    """Every video ranked for each user the way the product serves a catalog too large to
    pass through the heads (KuaiRand-1K: 1,000 users x 4.37M videos = 4.4B pairs): a first
    stage picks each user's `depth` unseen videos, the heads' combined score orders them,
    every other video ranks after them (no top-k list of at most `depth` reaches them, so
    their order is never computed). The first stage pools, in this order of precedence
    (`FirstStage`): the best unseen by the towers' dot product (`dot_share` of the depth),
    the user's top categories' picks, then the most popular unseen up to `depth` (a
    `dot_share` of 1 and no picks: the dot product alone).
    `history[u]`: user u's seen columns, left out of the shortlist (the masked protocol)."""
    users, videos, user_vec, video_vec = _towers(model, users, videos)
    n_users, n_videos = user_vec.shape[0], video_vec.shape[0]
    depth = min(depth, n_videos)
    dev = video_vec.device
    n_dot = min(depth, int(depth * first_stage.dot_share))
    # A key per column that orders the pool's precedence: dot product picks (3), category
    # picks (2), then popularity (in (0, 1), the most popular highest).
    rank = np.empty(n_videos, dtype=np.float64)
    rank[np.asarray(first_stage.popular, dtype=np.int64)] = np.arange(n_videos)
    popular_key = torch.as_tensor(1.0 - (rank + 1.0) / (n_videos + 1.0), dtype=torch.float32)
    popular_key = popular_key.to(dev)
    picks = torch.as_tensor(np.asarray(first_stage.by_category, dtype=np.int64)).to(dev)

    def unseen(scores: torch.Tensor, block: slice) -> torch.Tensor:
        for row, seen in enumerate(history[block]):
            scores[row, torch.as_tensor(seen, dtype=torch.long)] = -torch.inf
        return scores

    @torch.no_grad()  # called later, by the ranking, outside this function's no_grad
    def best(block: slice) -> tuple[np.ndarray, np.ndarray]:
        dots = unseen(user_vec[block] @ video_vec.T, block)
        by_dot = torch.topk(dots, n_dot, dim=1, sorted=False).indices
        key = dots.copy_(popular_key.expand_as(dots))  # the dot products are done with
        mine = picks[block]
        rows = torch.arange(len(mine), device=dev).unsqueeze(1).expand_as(mine)
        key[rows[mine >= 0], mine[mine >= 0]] = 2.0
        key.scatter_(1, by_dot, 3.0)
        key = unseen(key, block)
        top = torch.topk(key, depth, dim=1, sorted=False).indices.sort(dim=1).values
        shares = users["recent_share"][block] if "recent_share" in users else None
        scores = _pair_scores(
            model, user_vec[block], users["affinity"][block], shares, videos, video_vec, top
        )
        # A seen video the shortlist had to take (fewer unseen than `depth`) ranks last.
        scores = torch.where(key.gather(1, top) == -torch.inf, -torch.inf, scores)
        return top.cpu().numpy(), scores.cpu().numpy()

    # A block's dot products, (rows, n_videos) float32, within the evaluator's block budget,
    # and its rows x depth pairs through the heads within PAIR_CHUNK: on a small catalog the
    # first budget alone let thousands of users' pairs through at once (KuaiRec at full
    # size: 6,000 users x 2,000 videos, killed at 19.8 GiB).
    rows = max(1, min(BLOCK_BYTES // (4 * max(n_videos, 1)), PAIR_CHUNK // max(depth, 1)))
    return Shortlists((n_users, n_videos), depth, rows, best)
