"""Sampled softmax: the next-item loss of every sequence model when the catalog is too large
for a full softmax (`SequenceConfig.full_softmax_max_items`, reelflow/config.py).

A full softmax scores every target position against the whole catalog: a (positions, items)
matrix per batch, which at 4.4M videos (KuaiRand-1K) cannot even be held. Here each target
position's cross-entropy runs over [its positive, N sampled negatives]: a (positions, 1 + N)
matrix whatever the catalog. The config's `negative_scope` says who shares the N negatives:
"batch", drawn once for all the batch's positions (one (positions, d) x (d, N) product), or
"sequence", each training sequence its own (gSASRec's per-sequence negatives, Petrov &
Macdonald 2023): a batch of B sequences then sees up to B x N distinct items, at the cost of
B x N rows looked up and stepped instead of N.

- Accidental hits, a negative that is the row's own positive, are masked out of that row.
- logQ correction (as TensorFlow's `sampled_softmax_loss`; Jean et al. 2015, Yi et al. 2019):
  every candidate's logit, the positive's too, is lowered by the log of its sampling
  probability, so a popular item drawn often as a negative is not pushed down for being
  popular. Uniform sampling lowers every logit by one constant, which cancels: no correction.
- With every item of the catalog as a negative the loss is exactly the full softmax's
  cross-entropy (tests/test_sasrec.py checks the math).

A model whose config has `sampled_negatives` > 0 holds a `NegativeSampler` (`sampler_for`)
and scores candidates with `candidate_logits`; models/interface.py `NextItemModel.sampled_loss`
puts them together. Its item table is then a sparse `nn.Embedding` (`sparse_items`): a batch
touches only its rows, and the trainer (models/trainer.py) updates just those with SparseAdam.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

SAMPLERS = ("uniform", "popularity")
SCOPES = ("batch", "sequence")


class NegativeSampler(nn.Module):
    """The negatives a batch shares: uniform over items 1..n_items, or in proportion to each
    item's training count plus one (so that every item can be drawn and has a finite logQ).

    Draws use the CPU generator whatever the device: the trainer's checkpoint restores it, so
    a resumed run draws the same negatives. Popularity lives in buffers that are not saved
    (`persistent=False`): a bundle keeps the model, not how it was trained."""

    def __init__(self, n_items: int, kind: str = "uniform"):
        super().__init__()
        if kind not in SAMPLERS:
            raise ValueError(f"unknown negative sampler {kind!r}; expected one of {SAMPLERS}")
        self.n_items, self.kind = n_items, kind
        # float64: a float32 cumulative sum over millions of items loses the small ones.
        self.register_buffer("cdf", torch.zeros(0, dtype=torch.float64), persistent=False)
        self.register_buffer("log_probs", torch.zeros(0), persistent=False)

    def fit(self, counts: torch.Tensor) -> NegativeSampler:
        """`counts` (n_items + 1,): training targets per item index (index 0, padding, is
        ignored). Only popularity sampling reads them."""
        if self.kind == "popularity":
            weights = counts[1 : self.n_items + 1].double() + 1.0
            probs = weights / weights.sum()
            self.cdf = torch.cumsum(probs, 0)
            self.log_probs = torch.cat([torch.zeros(1), probs.log().float()])
        return self

    def sample(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """(n,) item indices in 1..n_items, drawn with replacement."""
        if self.kind == "uniform":
            return torch.randint(1, self.n_items + 1, (n,)).to(device)
        if len(self.cdf) == 0:
            raise RuntimeError("popularity sampler has no counts: call fit(counts) first")
        # Inverse CDF rather than torch.multinomial, which takes at most 2^24 categories.
        draws = torch.rand(n, dtype=torch.float64).to(self.cdf.device) * self.cdf[-1]
        index = torch.searchsorted(self.cdf, draws, right=True).clamp_(max=self.n_items - 1)
        return (index + 1).to(device)

    def log_q(self, items: torch.Tensor) -> torch.Tensor | None:
        """Log sampling probability of each item index; None when it is one constant (uniform),
        which cancels in the softmax."""
        if self.kind == "uniform":
            return None
        return self.log_probs.to(items.device)[items]


def scope_of(config: Any) -> str:
    """Who shares a config's sampled negatives, checked: its `negative_scope`, or "batch" for
    a config that predates the field (the only scope there was)."""
    scope = getattr(config, "negative_scope", "batch")
    if scope not in SCOPES:
        raise ValueError(f"unknown negative_scope {scope!r}; expected one of {SCOPES}")
    return scope


def draw(
    config: Any, sampler: NegativeSampler, sequences: int, device: torch.device | str
) -> torch.Tensor:
    """The negatives of one training batch of `sequences` rows: (N,) shared by the batch, or
    (sequences, N) each row's own, as the config's `negative_scope` says."""
    n = config.sampled_negatives
    if scope_of(config) == "sequence":
        return sampler.sample(sequences * n, device).view(sequences, n)
    return sampler.sample(n, device)


def sampler_for(config: Any) -> NegativeSampler | None:
    """The sampler a model's config asks for (`sampled_negatives` > 0), else None: full
    softmax. A config without the fields (a model that predates them) trains full."""
    if getattr(config, "sampled_negatives", 0) <= 0:
        return None
    scope_of(config)  # an unknown scope is refused when the model is built, not mid-training
    return NegativeSampler(config.n_items, getattr(config, "negative_sampler", "uniform"))


def sparse_items(config: Any) -> bool:
    """Whether a model's item table gives sparse gradients: only when it samples negatives
    (the full softmax reads every row anyway, and keeps its dense AdamW update unchanged)."""
    return getattr(config, "sampled_negatives", 0) > 0


def negatives_at(negatives: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """(P, N): the negatives each of the P target positions of `positives` (0: no target) is
    scored against, in row-major order: (N,) negatives shared by the batch, or (B, N) each
    sequence's own, where `positives` is (B, L)."""
    keep = positives > 0
    if negatives.dim() == 1:
        return negatives.expand(int(keep.sum()), -1)
    return negatives[:, None, :].expand(-1, positives.shape[1], -1)[keep]


def candidate_logits(
    hidden: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    table: nn.Embedding,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """(P, 1 + N) for the P target positions of `positives` (B, L) (item indices, 0 where a
    position has no target), in row-major order: column 0 each position's positive, then its
    N negatives, (N,) shared by the batch or (B, N) its sequence's own. Dot products of
    `hidden` (B, L, d) with rows of the item `table`, looked up (a sparse table then gets
    sparse gradients), plus a per-item `bias` when the model has one."""
    keep = positives > 0
    targets, states = positives[keep], hidden[keep]
    positive = (states * table(targets)).sum(-1, keepdim=True)
    if negatives.dim() == 1:
        negative = states @ table(negatives).T
    else:
        # (B, L, d) x (B, d, N), each sequence against its own negatives; padding positions
        # are scored too and dropped, cheaper than gathering N rows for each position.
        negative = torch.bmm(hidden, table(negatives).transpose(1, 2))[keep]
    logits = torch.cat([positive, negative], dim=1)
    if bias is not None:
        logits = logits + torch.cat(
            [bias[targets][:, None], bias[negatives_at(negatives, positives)]], 1
        )
    return logits


def corrected_logits(
    logits: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    sampler: NegativeSampler | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`candidate_logits` with accidental hits at -inf and the logQ correction applied; also
    the (P, 1 + N) mask of the hits (never column 0)."""
    targets, drawn = positives[positives > 0], negatives_at(negatives, positives)
    hits = torch.cat(
        [torch.zeros_like(targets, dtype=torch.bool)[:, None], drawn == targets[:, None]], dim=1
    )
    log_q_positive = None if sampler is None else sampler.log_q(targets)
    if log_q_positive is not None:
        log_q = torch.cat([log_q_positive[:, None], sampler.log_q(drawn)], dim=1)
        logits = logits - log_q.to(logits.dtype)
    return logits.masked_fill(hits, -math.inf), hits


def sampled_softmax_loss(
    logits: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    sampler: NegativeSampler | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of each target position's positive (column 0 of `candidate_logits`)
    against its negatives, accidental hits masked, logQ-corrected."""
    corrected, _ = corrected_logits(logits, positives, negatives, sampler)
    return F.cross_entropy(corrected, corrected.new_zeros(len(corrected), dtype=torch.long))
