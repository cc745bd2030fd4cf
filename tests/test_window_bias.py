"""The window bias (models/interface.py): one learned score added to every video already in a
sequence model's input window. Checked against a reference computed another way (the first
position of each item in the window), on both losses, at prediction, for BERT4Rec's
bidirectional input and for the student's distillation; a model saved before it existed loads
without one; and on walks that never repeat a video, it learns to push seen videos down.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from models.bert4rec import BERT4Rec, BERT4RecConfig
from models.gru import GRU4Rec, GRU4RecConfig
from models.sasrec import SASRec, SASRecConfig
from models.student import Distillation, Student, StudentConfig
from models.trainer import seed_everything

N = 25  # items 1..N
BIAS = -1.3


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Every test here runs torch on one thread (see conftest)."""


def first_seen(items: torch.Tensor, n: int) -> torch.Tensor:
    """(B, n + 1): the first position of each item in each left-padded window (B, L), L where
    it is absent; padding (0) is never seen."""
    b, length = items.shape
    first = torch.full((b, n + 1), length, dtype=torch.long)
    first.scatter_reduce_(1, items, torch.arange(length).expand(b, length), reduce="amin")
    first[:, 0] = length
    return first


def windows_with_repeats() -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded windows (3, 6) with repeats, and their next items (0 where none)."""
    items = torch.tensor([[0, 0, 3, 5, 3, 7], [0, 4, 4, 9, 2, 9], [1, 2, 3, 4, 5, 6]])
    nxt = torch.tensor([[0, 0, 5, 3, 7, 3], [0, 4, 9, 2, 9, 4], [2, 3, 4, 5, 6, 1]])
    return items, nxt


def biased(model):
    with torch.no_grad():
        model.window_bias.fill_(BIAS)
    return model.eval()


LEFT_TO_RIGHT = [
    lambda: SASRec(SASRecConfig(n_items=N, max_len=6)),
    lambda: GRU4Rec(GRU4RecConfig(n_items=N, max_len=6)),
]


@pytest.mark.parametrize("make", LEFT_TO_RIGHT)
def test_full_loss_adds_the_bias_to_what_each_position_has_read(make):
    seed_everything(0)
    net = biased(make())
    items, nxt = windows_with_repeats()
    with torch.no_grad():
        _, loss = net({"items": items}, {"next": nxt})
        hidden = net.encode({"items": items})
        # Reference: at position t the item j is seen when its first position is <= t.
        seen = first_seen(items, N)[:, None, :] <= torch.arange(6)[None, :, None]
        logits = net.score(hidden) + BIAS * seen
        keep = nxt > 0
        expected = F.cross_entropy(logits[keep][:, 1:], nxt[keep] - 1)
        unbiased = F.cross_entropy(net.catalog_scores(hidden[keep]), nxt[keep] - 1)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert abs(loss.item() - unbiased.item()) > 1e-3  # the repeats make it matter


@pytest.mark.parametrize("make", [*LEFT_TO_RIGHT, lambda: BERT4Rec(BERT4RecConfig(N, 6))])
def test_sampled_loss_over_every_item_is_the_full_softmax_with_the_bias(make):
    seed_everything(0)
    net = biased(make())
    items, nxt = windows_with_repeats()
    if isinstance(net, BERT4Rec):
        # Its input: tokens with [MASK] where it predicts (the label there, 0 elsewhere).
        masked = nxt > 0
        masked[:, :3] = False
        items = torch.where(masked, net.mask_token, items)
        nxt = torch.where(masked, items.new_tensor([[0, 0, 0, 3, 3, 7]] * 3), 0)
    targets = {"next": nxt, "window": items}
    first = 0 if isinstance(net, BERT4Rec) else 1  # BERT4Rec's full softmax scores padding too
    with torch.no_grad():
        hidden = net.encode({"items": items})
        full = net.loss(hidden, targets)
        sampled = net.loss(hidden, targets, negatives=torch.arange(first, N + 1))
        per_sequence = net.loss(hidden, targets, negatives=torch.arange(first, N + 1).expand(3, -1))
        without = net.loss(hidden, {"next": nxt})
    assert sampled.item() == pytest.approx(full.item(), rel=1e-5)
    assert per_sequence.item() == pytest.approx(full.item(), rel=1e-5)
    assert abs(full.item() - without.item()) > 1e-3


@pytest.mark.parametrize("make", LEFT_TO_RIGHT)
def test_prediction_adds_the_bias_to_the_history_only(make):
    seed_everything(0)
    net = biased(make())
    items, _ = windows_with_repeats()
    scores = net.predict_next(items)
    with torch.no_grad():
        plain = net.score(net.next_hidden(items))
    seen = first_seen(items, N) < 6
    expected = plain + BIAS * seen
    torch.testing.assert_close(scores[:, 1:], expected[:, 1:])
    assert scores[:, 0].eq(-torch.inf).all()


def test_bert4rec_sees_both_sides_and_not_the_masked_item():
    seed_everything(0)
    net = biased(BERT4Rec(BERT4RecConfig(N, 6)))
    m = net.mask_token
    tokens = torch.tensor([[0, 8, m, 5, 8, m]])
    labels = torch.tensor([[0, 0, 11, 0, 0, 12]])
    lifted = net.with_window_bias(torch.zeros(2, N + 1), net.visible(tokens, labels > 0))
    # Both masked positions read 8 and 5, the item after them too; [MASK] is no item.
    for row in lifted:
        assert row.nonzero().flatten().tolist() == [5, 8] and row[5].item() == pytest.approx(BIAS)
    # Prediction reads the history shifted left by one: the oldest item is out.
    history = torch.tensor([[3, 4, 5, 6, 7, 8]])
    scores = net.predict_next(history)
    with torch.no_grad():
        plain = net.score(net.next_hidden(history))
    lifted = (scores - plain)[0, 1:].nonzero().flatten() + 1
    assert lifted.tolist() == [4, 5, 6, 7, 8]


def test_the_student_and_its_teacher_both_carry_their_bias():
    seed_everything(0)
    teacher = biased(SASRec(SASRecConfig(n_items=N, max_len=6)))
    student = biased(Student(StudentConfig(n_items=N, max_len=6)))
    items, nxt = windows_with_repeats()
    with torch.no_grad():
        _, loss = Distillation(student, teacher).eval()({"items": items}, {"next": nxt})
        keep = nxt > 0
        seen = (first_seen(items, N)[:, None, :] <= torch.arange(6)[None, :, None])[keep][:, 1:]
        t = teacher.catalog_scores(teacher.encode({"items": items})[keep]) + BIAS * seen
        s = student.catalog_scores(student.encode({"items": items})[keep]) + BIAS * seen
        soft = F.kl_div(
            F.log_softmax(s / 2, -1),
            F.log_softmax(t / 2, -1),
            log_target=True,
            reduction="batchmean",
        )
        expected = 0.5 * 4 * soft + 0.5 * F.cross_entropy(s, nxt[keep] - 1)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_a_model_saved_before_the_bias_loads_without_one():
    saved = SASRecConfig(n_items=N).to_dict()
    del saved["window_bias"]
    old = SASRec.config_from_dict(saved)
    assert old.window_bias is False and SASRec(old).window_bias is None
    assert Student.config_from_dict({**saved, "temperature": 2.0}).window_bias is False
    # A model without it scores exactly as before: no parameter, nothing added.
    model = SASRec(old).eval()
    assert "window_bias" not in model.state_dict()
    items, _ = windows_with_repeats()
    with torch.no_grad():
        torch.testing.assert_close(
            model.predict_next(items)[:, 1:], model.score(model.next_hidden(items))[:, 1:]
        )


@pytest.mark.parametrize("name", ["sasrec", "gru", "bert4rec"])
def test_it_learns_to_push_seen_videos_down_where_nobody_rewatches(name):
    """Successor walks never revisit a video within a window: the bias goes negative."""
    from models.sequence_data import from_frame, train_sequence_model
    from tests.test_sasrec import FAST, successor_walks

    split = from_frame(successor_walks(users=60, items=40, length=12), max_len=10)
    # Adam moves the one scalar about lr a step: 8 epochs of 8 batches.
    trainer = {**FAST, "epochs": 8, "batch_size": 8}
    result = train_sequence_model(name, split, trainer_overrides=trainer)
    assert result.model.window_bias.item() < -0.1, result.model.window_bias.item()
