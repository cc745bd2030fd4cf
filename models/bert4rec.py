"""BERT4Rec: a bidirectional transformer over the item sequence, trained to fill masked items.

Training: in each window a random share of the items (`mask_prob`, at least one) is replaced
by the `[MASK]` token and the model predicts the originals from both sides, full softmax over
the catalog, logits computed only at the masked positions. In a share of the windows
(`last_mask_prob`) only the last item is masked, the exact shape of the inference task.
Inference: the history is shifted left by one and a `[MASK]` appended; the scores at that
position rank the next item (leaving it out is what broke RecBole's BERT4Rec, issue #1443).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class BERT4RecConfig:
    n_items: int  # catalog size; item indices are 1..n_items, 0 is padding, n_items+1 [MASK]
    max_len: int = 50  # positions the model reads
    hidden_dim: int = 64  # token width
    num_layers: int = 2  # transformer blocks
    num_heads: int = 2  # attention heads per block
    ffn_dim: int = 256  # feed-forward width inside a block
    dropout: float = 0.2  # on embeddings, attention and feed-forward outputs
    mask_prob: float = 0.2  # share of items masked in a training window
    last_mask_prob: float = 0.1  # share of windows where only the last item is masked

    def to_dict(self) -> dict:
        return asdict(self)


class BERT4Rec(nn.Module):
    def __init__(self, config: BERT4RecConfig):
        super().__init__()
        self.config = config
        d = config.hidden_dim
        self.mask_token = config.n_items + 1
        self.item_emb = nn.Embedding(config.n_items + 2, d, padding_idx=0)
        self.pos_emb = nn.Embedding(config.max_len, d)
        self.emb_norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(config.dropout)
        layer = nn.TransformerEncoderLayer(
            d,
            config.num_heads,
            config.ffn_dim,
            config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)
        self.out_norm = nn.LayerNorm(d)
        self.out_bias = nn.Parameter(torch.zeros(config.n_items + 1))
        nn.init.normal_(self.item_emb.weight, std=0.02)
        nn.init.normal_(self.pos_emb.weight, std=0.02)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) tokens (items, 0 padding, [MASK]) -> (B, L, hidden_dim)."""
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.dropout(self.emb_norm(self.item_emb(tokens) + self.pos_emb(positions)))
        x = self.encoder(x, src_key_padding_mask=tokens == 0)
        return self.out_norm(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores of every item (and padding, column 0), output tied to the item embeddings."""
        return hidden @ self.item_emb.weight[: self.config.n_items + 1].T + self.out_bias

    def mask(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Masked tokens and labels (0 where not masked) for a batch of windows."""
        real = seq > 0
        chosen = (torch.rand(seq.shape, device=seq.device) < self.config.mask_prob) & real
        last_only = torch.rand(seq.shape[0], device=seq.device) < self.config.last_mask_prob
        # A window with nothing masked would teach nothing: mask its last item.
        last_only |= ~chosen.any(dim=1)
        chosen[last_only] = False
        chosen[last_only, -1] = True
        tokens = torch.where(chosen, torch.full_like(seq, self.mask_token), seq)
        labels = torch.where(chosen, seq, torch.zeros_like(seq))
        return tokens, labels

    def masked_logits(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        hidden = self.encode(tokens)
        return self.logits(hidden[labels > 0])

    def forward(
        self, batch: dict[str, torch.Tensor], targets: dict[str, torch.Tensor] | None = None
    ):
        """Training reads `targets["next"]` (B, L): the window's last L items, masked here."""
        if targets is None:
            return self.logits(self.encode(batch["items"])), None
        tokens, labels = self.mask(targets["next"])
        logits = self.masked_logits(tokens, labels)
        return logits, F.cross_entropy(logits, labels[labels > 0])

    def inference_tokens(self, history: torch.Tensor) -> torch.Tensor:
        return torch.cat([history[:, 1:], torch.full_like(history[:, :1], self.mask_token)], dim=1)

    @torch.no_grad()
    def predict_next(self, history: torch.Tensor) -> torch.Tensor:
        """(users, max_len) left-padded histories -> (users, n_items + 1) scores; column 0 is
        padding and scores -inf."""
        hidden = self.encode(self.inference_tokens(history))[:, -1]
        scores = self.logits(hidden)
        scores[:, 0] = -torch.inf
        return scores
