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
with, from its `candidate_logits`; and whether it reads left to right (the student's teachers do).
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
        sampled when the config samples or `negatives` are given. BERT4Rec has its own."""
        nxt = targets["next"]
        if negatives is not None or self.sampler is not None:
            return self.sampled_loss(hidden, nxt, negatives)
        keep = nxt > 0
        return F.cross_entropy(self.catalog_scores(hidden[keep]), nxt[keep] - 1)

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
    ) -> torch.Tensor:
        """Sampled-softmax cross-entropy of the target positions: `hidden` (B, L, d) and
        `positives` (B, L) item indices (0: no target there); `negatives` given ((N,) or
        (B, N)), or drawn by the sampler."""
        if negatives is None:
            negatives = self.draw_negatives(len(positives), hidden.device)
        logits = self.candidate_logits(hidden, positives, negatives)
        return sampled_softmax_loss(logits, positives, negatives, getattr(self, "sampler", None))
