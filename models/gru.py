"""GRU4Rec-style next-video model: a GRU over the item sequence, scored against every item.

Training reads a window of items and predicts the next item at every position at once (full
softmax cross-entropy over the catalog, padding ignored); inference reads a user's history
and scores every item for the position after its last one. Output scores are dot products with
the (tied) item embeddings, so one matrix multiply ranks the whole catalog.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class GRU4RecConfig:
    n_items: int  # catalog size; item indices are 1..n_items, 0 is padding
    max_len: int = 50  # the longest history read
    embedding_dim: int = 64  # item embedding width, also the output space
    hidden_dim: int = 128  # GRU state width
    num_layers: int = 1  # stacked GRU layers
    dropout: float = 0.2  # on the embeddings and the GRU output

    def to_dict(self) -> dict:
        return asdict(self)


class GRU4Rec(nn.Module):
    def __init__(self, config: GRU4RecConfig):
        super().__init__()
        self.config = config
        self.item_emb = nn.Embedding(config.n_items + 1, config.embedding_dim, padding_idx=0)
        self.gru = nn.GRU(
            config.embedding_dim, config.hidden_dim, config.num_layers, batch_first=True
        )
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(config.hidden_dim, config.embedding_dim)
        nn.init.normal_(self.item_emb.weight, std=0.05)

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        """(batch, length) item indices -> (batch, length, embedding_dim) next-item queries."""
        states, _ = self.gru(self.dropout(self.item_emb(items)))
        return self.out(self.dropout(states))

    def logits(self, queries: torch.Tensor) -> torch.Tensor:
        return queries @ self.item_emb.weight.T

    def forward(
        self, batch: dict[str, torch.Tensor], targets: dict[str, torch.Tensor] | None = None
    ):
        """`batch["items"]` (B, L) inputs; `targets["next"]` (B, L) the item after each one."""
        logits = self.logits(self.encode(batch["items"]))
        if targets is None:
            return logits, None
        nxt = targets["next"]
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), nxt.reshape(-1), ignore_index=0
        )
        return logits, loss

    @torch.no_grad()
    def predict_next(self, history: torch.Tensor) -> torch.Tensor:
        """(users, max_len) left-padded histories -> (users, n_items + 1) scores; column 0 is
        padding and scores -inf."""
        scores = self.logits(self.encode(history)[:, -1])
        scores[:, 0] = -torch.inf
        return scores
