"""A small SASRec distilled from a large left-to-right model: the same inference, a fraction
of the size.

The student is a SASRec (models/sasrec.py) with a narrow, shallow config. Its teacher is a
trained left-to-right next-item model (`SequenceConfig.teacher`: SASRec by default, or
GRU4Rec), the kind the student itself is: at every position of a training window both read
the same items up to it and predict the one after it, so the frozen teacher labels every
position the student learns from, not only a few masked ones. The student learns from
  alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))   (soft targets)
  + (1 - alpha) * cross-entropy(student, true item)                  (hard label)
T^2 keeps the soft term's gradients on the hard term's scale as T changes (Hinton et al.).
Both terms run over the whole catalog (padding is no class), or, when the student samples its
negatives (models/sampled.py), over the same candidates for both models: each target and the
batch's shared negatives, logQ-corrected alike.

BERT4Rec cannot teach it: its state at a position reads the items after it too, the very item
the student is asked for. The student was a small BERT4Rec until issue 14; on the demo's data
(session and creator order, what a next-item model must read left to right) that student
scored below the transition baseline whatever its teacher, and a small SASRec does not.
Only the student is saved; it scores exactly like a SASRec (`predict_next`), its own window
bias (models/interface.py) included; a teacher's window bias is in the soft targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from models.interface import NextItemModel
from models.sampled import NegativeSampler, corrected_logits
from models.sasrec import SASRec, SASRecConfig


@dataclass
class StudentConfig(SASRecConfig):
    # Narrower than the teacher's tokens: the item table (n_items x embedding_dim) is most of
    # the size (16 wide: a quarter of SASRec's table).
    embedding_dim: int = 16
    num_blocks: int = 1  # shallower than the teacher
    # Soft term's temperature: softens both distributions so the teacher's ranking of the
    # non-target items carries signal.
    temperature: float = 2.0
    # Weight of the soft term; 1 - alpha goes to the hard label.
    alpha: float = 0.5


class Student(SASRec):
    config: StudentConfig
    config_class = StudentConfig
    # SASRec's settings with a longer budget and a higher peak rate for the narrow model: on
    # the demo (3 seeds) its best validation epochs were 14-23, stopped by patience at 22-31.
    trainer_defaults = {
        "epochs": 60,
        "batch_size": 64,
        "lr": 5e-3,
        "weight_decay": 1e-4,
        "patience": 8,
    }

    @classmethod
    def config_from_dict(cls, saved: dict[str, Any]) -> StudentConfig:
        if "hidden_dim" in saved:
            raise ValueError(
                "this student was saved when the student was a small BERT4Rec (its config has "
                "hidden_dim); the student is now a small SASRec and cannot read it. Train a new "
                "one (reelflow train --model student); if it is the registered @champion, remove "
                "that alias first (MLflow UI, or MlflowClient().delete_registered_model_alias("
                "'reelflow-student', 'champion'))"
            )
        return super().config_from_dict(saved)

    def loss(
        self,
        hidden: torch.Tensor,
        targets: dict[str, torch.Tensor],
        negatives: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """With the teacher's scores at the target positions (`targets["teacher_logits"]`,
        what `Distillation` adds: over items 1..n_items, or over [target, `negatives`] when it
        sampled them): the distillation loss; without: SASRec's."""
        if "teacher_logits" not in targets:
            return super().loss(hidden, targets, negatives)
        nxt = targets["next"]
        keep = nxt > 0
        cfg = self.config
        window = targets.get("window")
        if negatives is None:
            return distillation_loss(
                self.biased_catalog_logits(self.catalog_scores(hidden[keep]), window, keep),
                targets["teacher_logits"].float(),
                nxt[keep] - 1,
                cfg.temperature,
                cfg.alpha,
            )
        return sampled_distillation_loss(
            self.biased_candidate_logits(hidden, nxt, negatives, window),
            targets["teacher_logits"].float(),
            nxt,
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
    """`distillation_loss` over each target position's candidates (column 0 its positive, then
    its negatives; models/sampled.py `candidate_logits`, `positives` (B, L) with 0 where there
    is no target): both models' logits logQ-corrected, the accidental hits out of both
    distributions; the hard term is the sampled softmax."""
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
    hard = F.cross_entropy(student, student.new_zeros(len(student), dtype=torch.long))
    return alpha * t * t * soft + (1 - alpha) * hard


class Distillation(nn.Module):
    """What the trainer fits: the student, with the teacher frozen beside it."""

    def __init__(self, student: Student, teacher: NextItemModel):
        super().__init__()
        if teacher.config.n_items != student.config.n_items:
            raise ValueError("teacher and student must share one item vocabulary")
        if not teacher.left_to_right:
            raise ValueError(
                f"a {type(teacher).__name__} cannot teach the student: its state at a position "
                "reads the items after it, the one the student predicts there; distill a "
                "left-to-right model (sequence.teacher: sasrec or gru)"
            )
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
        labels = targets["next"]
        negatives = None
        if self.student.sampler is not None:
            negatives = self.student.draw_negatives(len(labels), labels.device)
        window = batch["items"]
        with torch.no_grad():
            # Both read the same items: the teacher's state at each position predicts the
            # item after it, the student's label there; its window bias, if it has one, is in
            # its soft targets as in its predictions.
            taught = self.teacher.encode(batch)
            keep = labels > 0
            if negatives is None:
                teacher_logits = self.teacher.biased_catalog_logits(
                    self.teacher.catalog_scores(taught[keep]), window, keep
                )
            else:
                teacher_logits = self.teacher.biased_candidate_logits(
                    taught, labels, negatives, window
                )
        hidden = self.student.encode(batch)
        # The student's own bias reads the window too (none: its loss ignores it).
        targets = {**targets, "teacher_logits": teacher_logits, "window": window}
        return hidden, self.student.loss(hidden, targets, negatives)
