"""The one interface every model in models/ implements, as RecBole has one for its models.

A model is a file in models/ holding a dataclass config (`config_class`) and an
`nn.Module` subclass of `Recommender`:

    encode(batch) -> hidden                 what the model makes of a batch of its inputs
    loss(hidden, targets, negatives=None)   the training loss; `negatives` (item indices) lets a
                                            model score a sample instead of the whole catalog
    score(hidden, items=None)               scores of every item, or of the `items` given
    item_vectors(items=None), query(users)  what the export indexes and searches with:
                                            query . item vector = the model's retrieval score

`forward(batch, targets)` is what the trainer (models/trainer.py) calls: `prepare` (a
model's training-time corruption of its inputs, BERT4Rec's masking; none by default), then
`encode` and `loss`. `NextItemModel` adds what every model of the next video after a history
shares (GRU4Rec, SASRec, BERT4Rec, the student): the last position's hidden state and
full-catalog scores for it; the sampled softmax (models/sampled.py) a large catalog trains
with, from its `candidate_logits`; whether it reads left to right (the student's teachers do);
and the window bias.

The window bias (a config's `window_bias`): one learned scalar added to the score of every
video already in the model's input window, at every target position in training (the window up
to that position; BERT4Rec, every video its input shows) and at prediction. It is RepeatNet's
repeat-or-explore split (Ren et al. 2019) at its simplest: whether a user re-watches is one
number to learn, not something every item vector must encode. Without it the models ranked
what the user had just watched above the next video (bench/unmasked_gap.py) and stayed below
the item-to-item transition baseline unmasked; with it, on the demo's data (3 seeds, one-off
runs at ec31351) SASRec's unmasked test NDCG@10 rose from 0.101 to 0.125 and its masked from
0.146 to 0.151, and on MovieLens-100K (seed 0), where a rated movie is never rated again and
the bias learns about -1.5, unmasked from 0.059 to 0.106. Retrieval (`query` . `item_vectors`,
the export's index) carries no bias: it touches only videos in the window, which the product
masks as already seen.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from models.sampled import NegativeSampler, draw, sampled_softmax_loss


class Recommender(nn.Module):
    config_class: ClassVar[type]  # the model's dataclass config, saved as JSON in its bundle
    # Trainer settings (models/trainer.py TrainerConfig fields) the model was tuned with.
    trainer_defaults: ClassVar[dict[str, Any]] = {}
    config: Any

    @classmethod
    def config_from_dict(cls, saved: dict[str, Any]) -> Any:
        """The config as a bundle saved it (`dataclasses.asdict`, through JSON)."""
        return cls.config_class(**saved)

    def prepare(
        self, batch: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The training batch and targets as `encode` and `loss` read them."""
        return batch, targets

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def loss(
        self,
        hidden: torch.Tensor,
        targets: dict[str, torch.Tensor],
        negatives: torch.Tensor | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError

    def score(self, hidden: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def item_vectors(self, items: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        raise NotImplementedError

    def query(self, users: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self, batch: dict[str, torch.Tensor], targets: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if targets is not None:
            batch, targets = self.prepare(batch, targets)
        hidden = self.encode(batch)
        return hidden, None if targets is None else self.loss(hidden, targets)


class NextItemModel(Recommender):
    """A model of the next video after a history of item indices (1..n_items, 0 padding)."""

    # Set in __init__ (models/sampled.py `sampler_for`) by a model whose config samples its
    # negatives; None: its loss is a full softmax over the catalog. Annotated only: a class
    # attribute would hide the submodule nn.Module registers under the same name.
    sampler: NegativeSampler | None
    # The state at position t reads items 1..t only (GRU4Rec, SASRec): such a model can teach
    # the distilled student (models/student.py). BERT4Rec reads both sides.
    left_to_right: ClassVar[bool] = True
    # The learned window bias (`window_bias_for`, set by a model's __init__ after this one's),
    # or None: a model whose config has none, one added outside models/ included.
    window_bias: nn.Parameter | None

    def __init__(self) -> None:
        super().__init__()
        self.window_bias = None

    @classmethod
    def config_from_dict(cls, saved: dict[str, Any]) -> Any:
        """A model saved before its config had `window_bias` was trained without one."""
        if "window_bias" in cls.config_class.__dataclass_fields__:
            saved = {"window_bias": False, **saved}
        return super().config_from_dict(saved)

    def prepare(
        self, batch: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """With a window bias, the loss reads the input window (`targets["window"]`)."""
        if self.window_bias is not None:
            targets = {**targets, "window": batch["items"]}
        return batch, targets

    def reads(self, length: int, device: torch.device) -> torch.Tensor:
        """(L, L) bool: the state at position t reads the input at position s (the window
        bias's "already seen" there). Left to right: s <= t."""
        steps = torch.arange(length, device=device)
        return steps[None, :] <= steps[:, None]

    def visible(self, window: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """(P, L) the input `window` (B, L) as each of the P target positions of `keep` (B, L)
        reads it, row-major; 0 at the positions it does not read (`reads`)."""
        rows, positions = keep.nonzero(as_tuple=True)
        unread = ~self.reads(window.shape[1], window.device)[positions]
        return window[rows].masked_fill(unread, 0)

    def history_visible(self, history: torch.Tensor) -> torch.Tensor:
        """(users, L) what `next_hidden(history)` reads: the whole history."""
        return history

    def with_window_bias(self, logits: torch.Tensor, visible: torch.Tensor | None) -> torch.Tensor:
        """`logits` (P, C) over the catalog, items 1..n_items (C = n_items) or 0..n_items (C =
        n_items + 1, column 0 padding), plus the window bias on the row's `visible` items (P,
        L; 0, or a token past the catalog such as BERT4Rec's [MASK], reads as none). No bias,
        or no window: unchanged."""
        if self.window_bias is None or visible is None:
            return logits
        n = self.config.n_items
        # (P, n + 1), as the logits are: what is no item lands in column 0, cleared here.
        seen = torch.zeros(len(visible), n + 1, dtype=torch.bool, device=logits.device)
        seen.scatter_(1, visible.masked_fill(visible > n, 0), True)
        seen[:, 0] = False
        return logits + self.window_bias.to(logits.dtype) * seen[:, n + 1 - logits.shape[1] :]

    def biased_catalog_logits(
        self, logits: torch.Tensor, window: torch.Tensor | None, keep: torch.Tensor
    ) -> torch.Tensor:
        """`logits` over the catalog at the target positions `keep` (B, L) of the input
        `window` (B, L), plus the window bias (`with_window_bias`); no bias or no window: as
        they are, and nothing of the window is gathered."""
        if self.window_bias is None or window is None:
            return logits
        return self.with_window_bias(logits, self.visible(window, keep))

    def next_hidden(self, history: torch.Tensor) -> torch.Tensor:
        """(users, max_len) left-padded histories -> the hidden state of the next position."""
        return self.encode({"items": history})[:, -1]

    def query(self, users: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.next_hidden(users["items"])

    @torch.no_grad()
    def predict_next(self, history: torch.Tensor) -> torch.Tensor:
        """(users, max_len) left-padded histories -> (users, n_items + 1) scores; column 0 is
        padding and scores -inf."""
        scores = self.score(self.next_hidden(history))
        if self.window_bias is not None:
            # In place, on the (users, L) window columns only: `with_window_bias` would build
            # (users, n_items + 1) tables beside scores a large catalog already fills memory
            # with. A repeated item reads its score before any is written, so it gets the bias
            # once; what is no item (padding, [MASK]) lands in column 0, cleared below.
            seen = self.history_visible(history)
            seen = seen.masked_fill(seen > self.config.n_items, 0)
            scores.scatter_(1, seen, scores.gather(1, seen) + self.window_bias.to(scores.dtype))
        scores[:, 0] = -torch.inf
        return scores

    def catalog_scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """(P, n_items) scores of items 1..n_items for `hidden` (P, d): `score` without its
        padding column, which is no class."""
        return self.score(hidden)[:, 1 : self.config.n_items + 1]

    def loss(
        self,
        hidden: torch.Tensor,
        targets: dict[str, torch.Tensor],
        negatives: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """A left-to-right model's (GRU4Rec, SASRec): `targets["next"]` (B, L), the item after
        each input position (0: none). Full softmax over items 1..n_items, scored only where
        there is a target (a window of a user with 7 views is 43 padding positions of 50);
        sampled when the config samples or `negatives` are given. BERT4Rec has its own. With a
        window bias, `targets["window"]` is the input window (`prepare`)."""
        nxt = targets["next"]
        window = targets.get("window")
        if negatives is not None or self.sampler is not None:
            return self.sampled_loss(hidden, nxt, negatives, window)
        keep = nxt > 0
        logits = self.biased_catalog_logits(self.catalog_scores(hidden[keep]), window, keep)
        return F.cross_entropy(logits, nxt[keep] - 1)

    def candidate_logits(
        self, hidden: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor
    ) -> torch.Tensor:
        """(P, 1 + N) scores of `hidden` (B, L, d) at the P positions where `positives` (B, L)
        has a target: column 0 its positive, then its N `negatives`, (N,) shared by the batch
        or (B, N) its sequence's own (models/sampled.py `candidate_logits`)."""
        raise NotImplementedError

    def draw_negatives(self, sequences: int, device: torch.device) -> torch.Tensor:
        """The negatives of one training batch of `sequences` rows (the config's
        `sampled_negatives` and `negative_scope`)."""
        sampler = getattr(self, "sampler", None)
        if sampler is None:
            raise ValueError(f"{type(self).__name__} trains a full softmax: it draws no negatives")
        return draw(self.config, sampler, sequences, device)

    def sampled_loss(
        self,
        hidden: torch.Tensor,
        positives: torch.Tensor,
        negatives: torch.Tensor | None = None,
        window: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sampled-softmax cross-entropy of the target positions: `hidden` (B, L, d) and
        `positives` (B, L) item indices (0: no target there); `negatives` given ((N,) or
        (B, N)), or drawn by the sampler; the window bias from the input `window` (B, L)."""
        if negatives is None:
            negatives = self.draw_negatives(len(positives), hidden.device)
        logits = self.biased_candidate_logits(hidden, positives, negatives, window)
        return sampled_softmax_loss(logits, positives, negatives, getattr(self, "sampler", None))

    def biased_candidate_logits(
        self,
        hidden: torch.Tensor,
        positives: torch.Tensor,
        negatives: torch.Tensor,
        window: torch.Tensor | None,
    ) -> torch.Tensor:
        """`candidate_logits` plus the window bias on the candidates each target position has
        read in the input `window` (B, L), if the model has a bias and a window is given."""
        logits = self.candidate_logits(hidden, positives, negatives)
        if self.window_bias is None or window is None:
            return logits
        keep = positives > 0
        reads = self.reads(window.shape[1], window.device)  # (Lt, Ls)
        is_item = (window > 0) & (window <= self.config.n_items)
        # The positive: is it at a position s the target position t reads? (B, Lt, Ls)
        positive = (positives[:, :, None] == window[:, None, :]) & reads & is_item[:, None, :]
        # Each sequence's negatives ((N,) shared: the same row for all): where they are in its
        # window (B, Ls, N), then read up to each position by one product, (B, Lt, N): B x L x N
        # comparisons, not a position's N against its L items one by one (P x N x L).
        drawn = negatives if negatives.dim() == 2 else negatives.expand(len(window), -1)
        where = (window[:, :, None] == drawn[:, None, :]) & is_item[:, :, None]
        negative = torch.matmul(reads.to(logits.dtype), where.to(logits.dtype)) > 0
        seen = torch.cat([positive.any(-1)[keep][:, None], negative[keep]], dim=1)
        return logits + self.window_bias.to(logits.dtype) * seen


def window_bias_for(config: Any) -> nn.Parameter | None:
    """The window bias a model's config asks for (`window_bias`), starting at 0 (no effect),
    or None: a config without it, or off."""
    return nn.Parameter(torch.zeros(())) if getattr(config, "window_bias", False) else None
