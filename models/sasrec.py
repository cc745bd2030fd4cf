"""SASRec: causal self-attention over the item sequence, trained on the next item at every
position (Kang & McAuley 2018), with the cross-entropy loss of "SASRec+" (Klenitskiy &
Vasilev 2023), which made it the strongest of the full-ranking leave-one-out benchmarks.

Item embeddings plus learned positional embeddings go through blocks of (pre-norm) multi-head
self-attention and a point-wise feed-forward network, each with dropout and a residual. A
position attends only to itself and earlier positions (causal), never to padding: the state at
position t reads items 1..t and predicts item t + 1, so one window trains every position at
once, as GRU4Rec does. Scores are dot products with the same (tied) item embeddings, so one
matrix multiply ranks the whole catalog and the export's index holds those embeddings.

Histories are left-padded (0), the last item at the last position; positions are counted
back from it, so an inference window and a training window of the same length agree.
Training (`NextItemModel.loss`): a full softmax over the catalog (padding excluded), or with
`sampled_negatives` the sampled softmax of models/sampled.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from models.interface import NextItemModel, window_bias_for
from models.sampled import candidate_logits, sampler_for, sparse_items


@dataclass
class SASRecConfig:
    n_items: int  # catalog size; item indices are 1..n_items, 0 is padding
    max_len: int = 50  # positions the model reads (learned positional embeddings)
    embedding_dim: int = 64  # item embedding and token width, also the output space
    num_blocks: int = 2  # self-attention blocks
    num_heads: int = 1  # attention heads per block (embedding_dim must divide by it)
    dropout: float = 0.2  # on embeddings, attention weights and block outputs
    # Training loss (models/sampled.py): 0, a full softmax over the catalog; N > 0, a sampled
    # softmax over N negatives drawn by `negative_sampler` ("uniform" or "popularity"), shared
    # by the batch or each sequence's own (`negative_scope`: "batch" or "sequence"). Chosen
    # by the catalog's size (SequenceConfig.full_softmax_max_items).
    sampled_negatives: int = 0
    negative_sampler: str = "uniform"
    negative_scope: str = "batch"
    # A learned score added to every video already in the input window (models/interface.py):
    # whether the user re-watches is one number, not something every item vector learns.
    window_bias: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


class CausalBlock(nn.Module):
    """Pre-norm self-attention, then a point-wise feed-forward network (as wide as the tokens,
    as in the paper), each added back to its input."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        if width % heads:
            raise ValueError(f"embedding_dim {width} does not divide into {heads} heads")
        self.heads, self.attention_dropout = heads, dropout
        self.attention_norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ffn_norm = nn.LayerNorm(width)
        self.ffn = nn.Sequential(
            nn.Linear(width, width), nn.GELU(), nn.Dropout(dropout), nn.Linear(width, width)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """`x` (B, L, d); `allowed` (B, 1, L, L): query t may read key s."""
        b, length, width = x.shape
        q, k, v = (
            self.qkv(self.attention_norm(x))
            .view(b, length, 3, self.heads, width // self.heads)
            .permute(2, 0, 3, 1, 4)
        )
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.attention_dropout if self.training else 0.0
        )
        x = x + self.dropout(self.proj(attended.transpose(1, 2).reshape(b, length, width)))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class SASRec(NextItemModel):
    config_class = SASRecConfig
    # Picked from a few tries on MovieLens-100K, by validation NDCG@10 (bench/train_seq.py)
    # and a CPU time budget. Patience 10, not 5: validation plateaus for several epochs and
    # then climbs again, most under a sampled softmax (MovieLens-100K, lr 1e-3, 128 popularity
    # negatives, seed 4: patience 5 kept epoch 10, test NDCG@10 0.062 masked; patience 10
    # epoch 70, 0.109, next to the full softmax's 0.118 at its epoch 55).
    trainer_defaults = {
        "epochs": 40,
        "batch_size": 64,
        "lr": 2e-3,
        "weight_decay": 1e-4,
        "patience": 10,
    }

    def __init__(self, config: SASRecConfig):
        super().__init__()
        self.config = config
        d = config.embedding_dim
        self.item_emb = nn.Embedding(
            config.n_items + 1, d, padding_idx=0, sparse=sparse_items(config)
        )
        self.pos_emb = nn.Embedding(config.max_len, d)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            CausalBlock(d, config.num_heads, config.dropout) for _ in range(config.num_blocks)
        )
        self.out_norm = nn.LayerNorm(d)
        nn.init.normal_(self.item_emb.weight, std=0.02)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        # The padding row stays 0 (padding_idx keeps it there): its score is a constant 0.
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self.sampler = sampler_for(config)
        self.window_bias = window_bias_for(config)

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """`batch["items"]` (B, L) left-padded item indices -> (B, L, embedding_dim): the
        state at each position predicts the item after it (0 at padding positions)."""
        items = batch["items"]
        length = items.shape[1]
        if length > self.config.max_len:
            raise ValueError(f"{length} positions, the model reads at most {self.config.max_len}")
        real = items > 0
        # Positions counted back from the window's end: the last item is always max_len - 1.
        positions = torch.arange(
            self.config.max_len - length, self.config.max_len, device=items.device
        )
        x = self.dropout(self.item_emb(items) + self.pos_emb(positions)) * real[..., None]
        steps = torch.arange(length, device=items.device)
        earlier = steps[None, :] <= steps[:, None]  # (query t, key s): s <= t
        # Keys are real items, and every position reads itself: a padding position (before
        # the first item) would otherwise have no key at all and its softmax would be NaN.
        allowed = earlier[None] & (
            real[:, None, :] | torch.eye(length, dtype=torch.bool, device=items.device)
        )
        for block in self.blocks:
            x = block(x, allowed[:, None]) * real[..., None]
        return self.out_norm(x)

    def score(self, hidden: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Dot products with the (tied) item embeddings: every item (column 0 is padding), or
        the item indices `items`."""
        table = self.item_emb.weight if items is None else self.item_emb(items)
        return hidden @ table.T

    def candidate_logits(
        self, hidden: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor
    ) -> torch.Tensor:
        return candidate_logits(hidden, positives, negatives, self.item_emb)

    def item_vectors(self, items: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """(n_items, embedding_dim): row j is item index j + 1, in the queries' space."""
        return self.item_emb.weight[1 : self.config.n_items + 1]
