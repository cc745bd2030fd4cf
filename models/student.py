"""A small BERT4Rec distilled from a large model: the same inference, a fraction of the size.

The student is a BERT4Rec with a narrow, shallow config. Its teacher is any trained next-item
model (`SequenceConfig.teacher`: BERT4Rec by default, or SASRec, GRU4Rec). Training
(`Distillation`) masks each window once; the frozen teacher predicts each masked item (a
BERT4Rec from the same masked tokens, a left-to-right model from the items before it,
`NextItemModel.distill_hidden`) and the student learns from
  alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))   (soft targets)
  + (1 - alpha) * cross-entropy(student, true item)                  (hard label)
T^2 keeps the soft term's gradients on the hard term's scale as T changes (Hinton et al.).
Both terms run over the whole catalog, or, when the student samples its negatives
(models/sampled.py), over the same candidates for both models: each masked item and the
batch's shared negatives, logQ-corrected alike.
Only the student is saved; it scores exactly like a BERT4Rec (`predict_next`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from models.bert4rec import BERT4Rec, BERT4RecConfig
from models.interface import NextItemModel
from models.sampled import NegativeSampler, corrected_logits


@dataclass
class StudentConfig(BERT4RecConfig):
    # Narrower than the teacher's tokens: the item table (n_items x hidden_dim) is most of the
    # size. 32 wide, or 2 layers, scored no better on validation.
    hidden_dim: int = 24
    num_layers: int = 1  # shallower than the teacher
    num_heads: int = 1
    ffn_dim: int = 64
    # Soft term's temperature: softens both distributions so the teacher's ranking of the
    # non-target items carries signal; 1 and 4 scored alike on validation (MovieLens-100K).
    temperature: float = 2.0
    # Weight of the soft term; 1 - alpha goes to the hard label. 0.5 to 1.0 scored alike,
    # 0.5 slightly best on validation; 0 (no teacher) lost about 0.01 validation NDCG@10.
    alpha: float = 0.5


class Student(BERT4Rec):
    config: StudentConfig
    config_class = StudentConfig
    # The student runs its whole cosine schedule (patience = epochs): its validation NDCG@10
    # moves by ±0.005 from epoch to epoch and kept rising into the low-learning-rate end
    # (best epochs 44-49 of 50), where patience 5 had stopped it at epochs 13-22.
    trainer_defaults = {
        "epochs": 50,
        "batch_size": 64,
        "lr": 5e-3,
        "weight_decay": 1e-4,
        "patience": 50,
    }

    def __init__(self, config: StudentConfig):
        super().__init__(config)

    def loss(
        self,
        hidden: torch.Tensor,
        targets: dict[str, torch.Tensor],
        negatives: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """With the teacher's scores at the masked positions (`targets["teacher_logits"]`,
        what `Distillation` adds: over the catalog, or over [positive, `negatives`] when it
        sampled them): the distillation loss; without: BERT4Rec's."""
        if "teacher_logits" not in targets:
            return super().loss(hidden, targets, negatives)
        labels = targets["next"]
        cfg = self.config
        if negatives is None:
            return distillation_loss(
                self.masked_logits(hidden, labels),
                targets["teacher_logits"].float(),
                labels[labels > 0],
                cfg.temperature,
                cfg.alpha,
            )
        positives = labels[labels > 0]
        return sampled_distillation_loss(
            self.candidate_logits(hidden[labels > 0], positives, negatives),
            targets["teacher_logits"].float(),
            positives,
            negatives,
            self.sampler,
            cfg.temperature,
            cfg.alpha,
        )


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    t = temperature
    soft = F.kl_div(
        F.log_softmax(student_logits / t, dim=-1),
        F.log_softmax(teacher_logits / t, dim=-1),
        log_target=True,
        reduction="batchmean",
    )
    hard = F.cross_entropy(student_logits, labels)
    return alpha * t * t * soft + (1 - alpha) * hard


def sampled_distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    sampler: NegativeSampler | None,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """`distillation_loss` over each row's candidates (column 0 its positive, then the shared
    negatives; models/sampled.py `candidate_logits`): both models' logits logQ-corrected, the
    accidental hits out of both distributions; the hard term is the sampled softmax."""
    t = temperature
    student, hits = corrected_logits(student_logits, positives, negatives, sampler)
    teacher, _ = corrected_logits(teacher_logits, positives, negatives, sampler)
    # A hit is -inf in both; 0 in both instead makes its KL term exp(0) * (0 - 0) = 0 (-inf
    # minus -inf would be NaN), and its gradient stays zero.
    soft = F.kl_div(
        F.log_softmax(student / t, dim=-1).masked_fill(hits, 0.0),
        F.log_softmax(teacher / t, dim=-1).masked_fill(hits, 0.0),
        log_target=True,
        reduction="batchmean",
    )
    hard = F.cross_entropy(student, torch.zeros_like(positives))
    return alpha * t * t * soft + (1 - alpha) * hard


class Distillation(nn.Module):
    """What the trainer fits: the student, with the teacher frozen beside it."""

    def __init__(self, student: Student, teacher: NextItemModel):
        super().__init__()
        if teacher.config.n_items != student.config.n_items:
            raise ValueError("teacher and student must share one item vocabulary")
        self.student = student
        self.teacher = teacher.requires_grad_(False)

    def train(self, mode: bool = True) -> Distillation:
        super().train(mode)
        self.teacher.eval()  # the teacher's soft targets come without dropout
        return self

    def forward(
        self, batch: dict[str, torch.Tensor], targets: dict[str, torch.Tensor] | None = None
    ):
        if targets is None:
            return self.student(batch)
        # One masking for both: the teacher predicts the items the student is asked for.
        inputs = batch
        batch, targets = self.student.prepare(batch, targets)
        labels = targets["next"]
        negatives = None
        if self.student.sampler is not None:
            negatives = self.student.draw_negatives(labels.device)
        with torch.no_grad():
            taught = self.teacher.distill_hidden(inputs, batch, labels)
            if negatives is None:
                teacher_logits = self.teacher.score(taught)
            else:
                positives = labels[labels > 0]
                teacher_logits = self.teacher.candidate_logits(taught, positives, negatives)
        hidden = self.student.encode(batch)
        targets = {**targets, "teacher_logits": teacher_logits}
        return hidden, self.student.loss(hidden, targets, negatives)
