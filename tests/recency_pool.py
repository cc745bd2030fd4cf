"""A tiny next-video model in one file, registered by tests/test_model_registry.py the way
README.md's "Adding a model" shows: recency-weighted pooling of the history's item embeddings.

The query after position t is a weighted mean of the embeddings of the items up to t, each
weighted `decay` ** (its distance from t) (padding weighs nothing), through one linear layer;
scores are dot products with the same item embeddings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from models.interface import NextItemModel


@dataclass
class RecencyPoolConfig:
    n_items: int  # catalog size; item indices are 1..n_items, 0 is padding
    max_len: int = 50  # the longest history read
    embedding_dim: int = 16
    decay: float = 0.5  # weight of an item one step further back

    def to_dict(self) -> dict:
        return asdict(self)


class RecencyPool(NextItemModel):
    config_class = RecencyPoolConfig
    trainer_defaults = {
        "epochs": 5,
        "batch_size": 64,
        "lr": 1e-2,
        "weight_decay": 0.0,
        "patience": 5,
    }

    def __init__(self, config: RecencyPoolConfig):
        super().__init__()
        self.config = config
        self.item_emb = nn.Embedding(config.n_items + 1, config.embedding_dim, padding_idx=0)
        self.out = nn.Linear(config.embedding_dim, config.embedding_dim)

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        items = batch["items"]
        steps = torch.arange(items.shape[1], device=items.device)
        back = steps[:, None] - steps[None, :]  # (t, s): how far s is behind t
        weights = torch.where(back >= 0, self.config.decay ** back.clamp(min=0).float(), 0.0)
        weights = weights[None] * (items > 0)[:, None, :].float()  # (B, t, s)
        pooled = weights @ self.item_emb(items) / weights.sum(-1, keepdim=True).clamp(min=1e-6)
        return self.out(pooled)

    def score(self, hidden: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        table = self.item_emb.weight if items is None else self.item_emb(items)
        return hidden @ table.T

    def loss(self, hidden, targets, negatives=None) -> torch.Tensor:
        logits = self.score(hidden)
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets["next"].reshape(-1), ignore_index=0
        )

    def item_vectors(self, items=None) -> torch.Tensor:
        return self.item_emb.weight[1 : self.config.n_items + 1]
