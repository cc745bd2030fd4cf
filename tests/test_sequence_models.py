"""Sequence models (GRU4Rec, BERT4Rec, the student distilled from GRU4Rec), their data split and evaluation;
SASRec and the sampled softmax have their own file, tests/test_sasrec.py.

Two tiny data sets. The generated KuaiRec log (big_matrix.csv read with pandas, no Spark) checks
that the whole path runs on the pipeline's data; its simulated views carry almost no order
signal beyond popularity (a GRU lands within noise of the baseline there), so it cannot show
that a model learns sequences. `walk_interactions` can: each user steps through the catalog
with a user-specific stride, plus noise, so the next item follows from the last ones while
popularity is flat. Every model must beat popularity there by full-ranking NDCG@10.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from models.evaluate import next_item_metrics
from models.sequence_data import (
    SequenceBundle,
    SequenceData,
    from_frame,
    score_items,
    train_sequence_model,
)
from models.vocab import Vocabulary
from synthetic.kuairec import generate_kuairec

FAST = {"epochs": 8, "batch_size": 32, "lr": 5e-3, "progress": False}


def walk_interactions(users: int = 150, items: int = 60, length: int = 30, seed: int = 0):
    """Users walking the catalog: next item = last + stride (1, 2 or 3 by user) mod items,
    replaced by a random item 10% of the time."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(users):
        stride, item = 1 + user % 3, int(rng.integers(items))
        for t in range(length):
            rows.append((user, 1000 + item, t))
            item = int(rng.integers(items)) if rng.random() < 0.1 else (item + stride) % items
    return pd.DataFrame(rows, columns=["user_id", "video_id", "event_ts"])


def tiny_interactions(out_dir) -> pd.DataFrame:
    """(user_id, video_id, event_ts) of the tiny generated KuaiRec log, bad rows dropped."""
    generate_kuairec(out_dir, scale="tiny", seed=0)
    raw = pd.read_csv(out_dir / "big_matrix.csv", dtype=str)
    frame = pd.DataFrame(
        {
            "user_id": pd.to_numeric(raw["user_id"], errors="coerce"),
            "video_id": pd.to_numeric(raw["video_id"], errors="coerce"),
            "event_ts": pd.to_numeric(raw["timestamp"], errors="coerce"),
        }
    ).dropna()
    return frame.astype({"user_id": "int64", "video_id": "int64"})


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Every test here runs torch on one thread (see conftest)."""


@pytest.fixture(scope="module")
def split():
    return from_frame(walk_interactions(), max_len=20)


@pytest.fixture(scope="module")
def bert(split):
    return train_sequence_model("bert4rec", split, trainer_overrides=FAST)


@pytest.fixture(scope="module")
def gru(split):
    return train_sequence_model("gru", split, trainer_overrides=FAST)


def test_split_by_hand():
    # User 7: a(t=1) b(t=2) c(t=3) d(t=4) -> train [a, b], val c, test d. User 9: too short.
    frame = pd.DataFrame(
        {
            "user_id": [7, 7, 9, 7, 7, 9],
            "video_id": [30, 10, 10, 20, 40, 30],
            "event_ts": [3, 1, 5, 2, 4, 6],
        }
    )
    s = from_frame(frame, max_len=2)
    idx = {raw: int(s.vocab.lookup(np.array([raw]))[0]) for raw in (10, 20, 30, 40)}
    val, test = s.stage("val"), s.stage("test")
    assert val.user_ids.tolist() == [7] and val.targets.tolist() == [idx[30]]
    assert val.inputs.tolist() == [[idx[10], idx[20]]]
    assert test.targets.tolist() == [idx[40]]
    assert test.inputs.tolist() == [[idx[20], idx[30]]]  # the last max_len items, val included
    assert sorted(test.history[0].tolist()) == sorted([idx[10], idx[20], idx[30]])
    # Training windows: user 7's [a, b] and user 9's whole [10, 30], left-padded to 3.
    assert s.training_windows().tolist() == [[0, idx[10], idx[20]], [0, idx[10], idx[30]]]
    # Test popularity counts training items and the validation item, never the test item.
    assert test.popularity[idx[30]] == 2 and test.popularity[idx[40]] == 0
    roles = s.split_frame().query("user_id == 7")["split"].tolist()
    assert roles == ["train", "train", "val", "test"]


def test_overlapping_windows_by_hand():
    # One user, items 1..9 in order: train part 1..7 (8 val, 9 test). max_len 4: width 5.
    frame = pd.DataFrame({"user_id": [1] * 9, "video_id": range(1, 10), "event_ts": range(9)})
    s = from_frame(frame, max_len=4)

    def raw(windows):  # raw ids, padding as 0
        return [[int(s.vocab.raw(i)) if i else 0 for i in row] for row in windows.tolist()]

    # Disjoint (stride max_len): every transition once, the oldest window left-padded.
    assert raw(s.training_windows()) == [[3, 4, 5, 6, 7], [0, 0, 1, 2, 3]]
    # Stride 1: a window ends at every item, back to the first one that starts the sequence.
    assert raw(s.training_windows(stride=1)) == [
        [3, 4, 5, 6, 7],
        [2, 3, 4, 5, 6],
        [1, 2, 3, 4, 5],
    ]
    with pytest.raises(ValueError, match="window stride 5"):
        s.training_windows(stride=5)
    # BERT4Rec trains on overlapping windows (its stride, 10, capped at max_len), the others
    # on disjoint ones.
    bert, gru = SequenceData("bert4rec", s), SequenceData("gru", s)
    assert bert.train["items"].shape[0] == 2 and gru.train["items"].shape[0] == 2
    views = pd.DataFrame({"user_id": [1] * 60, "video_id": range(60), "event_ts": range(60)})
    long = from_frame(views, max_len=20)  # a training part of 58 items
    assert SequenceData("bert4rec", long).train["items"].shape[0] == 5  # ends 58, 48, ..., 18
    assert SequenceData("gru", long).train["items"].shape[0] == 3  # ends 58, 38, 18


def test_vocabulary_only_grows(tmp_path):
    vocab = Vocabulary.build(np.array([5, 3, 9]))
    grown = vocab.extend(np.array([9, 42, 1]))
    assert grown.lookup(np.array([3, 5, 9])).tolist() == vocab.lookup(np.array([3, 5, 9])).tolist()
    assert grown.lookup(np.array([42, 1, 77])).tolist() == [4, 5, 0]
    grown.save(tmp_path / "vocab.json")
    assert Vocabulary.load(tmp_path / "vocab.json").ids.tolist() == [3, 5, 9, 42, 1]


def test_next_item_metrics_by_hand():
    # Row 0: item 0 masked, ranking 1, 2, 3 -> target 2 at rank 2. Row 1: target 0 at rank 4.
    scores = np.array([[9.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    m = next_item_metrics(scores, np.array([2, 0]), [np.array([0]), np.array([], int)], ks=(2, 4))
    assert m["ndcg@2"] == pytest.approx((1 / math.log2(3)) / 2)
    assert m["hr@2"] == m["recall@2"] == pytest.approx(0.5)
    assert m["mrr@4"] == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert m["ndcg@4"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / 2)


def test_gru_beats_popularity(gru):
    result = gru
    m = result.metrics
    assert m["test_ndcg_at_10"] > m["popularity_test_ndcg_at_10"], m
    assert {"val_ndcg_at_10", "test_recall_at_10", "test_mrr_at_10", "test_ndcg_at_20"} <= set(m)
    assert all(isinstance(v, float) for v in m.values())
    assert [set(h) >= {"train_loss", "val_ndcg_at_10"} for h in result.history] == [True] * len(
        result.history
    )


def test_bert4rec_beats_popularity(bert):
    m = bert.metrics
    assert m["test_ndcg_at_10"] > m["popularity_test_ndcg_at_10"], m


def test_student_is_small_and_beats_popularity(split, gru):
    before = {k: v.clone() for k, v in gru.model.state_dict().items()}
    student = train_sequence_model("student", split, teacher=gru.bundle, trainer_overrides=FAST)
    m = student.metrics
    assert m["teacher_parameters"] >= 4 * m["parameters"], m
    assert m["test_ndcg_at_10"] > m["popularity_test_ndcg_at_10"], m
    # Distillation trains the student only: the teacher's weights are untouched.
    assert all(torch.equal(v, gru.model.state_dict()[k]) for k, v in before.items())


def test_bert4rec_cannot_teach_the_student(split, bert):
    """Its state at a position reads the item after it, the student's label there."""
    with pytest.raises(ValueError, match="BERT4Rec cannot teach the student.*sasrec or gru"):
        train_sequence_model("student", split, teacher=bert.bundle, trainer_overrides=FAST)


def test_bundle_round_trip(split, bert, tmp_path):
    folder = bert.bundle.save(tmp_path / "bert4rec")
    loaded = SequenceBundle.load(folder)
    val = split.stage("val")
    assert np.allclose(score_items(bert.model, val.inputs), score_items(loaded.model, val.inputs))
    history = [split.vocab.raw(split.train_part(i)) for i in range(3)]
    top = loaded.recommend(history, k=5)
    assert top.shape == (3, 5)
    assert not any(set(top[i]) & set(history[i].tolist()) for i in range(3))


def test_runs_on_generated_kuairec(tmp_path):
    kuairec = from_frame(tiny_interactions(tmp_path), max_len=20)
    result = train_sequence_model("gru", kuairec, trainer_overrides={**FAST, "epochs": 2})
    assert result.metrics["val_users"] == result.metrics["test_users"] > 100
    assert 0.0 < result.metrics["test_ndcg_at_10"] <= 1.0
    assert result.metrics["test_videos"] == kuairec.n_items


def test_unknown_model_is_rejected(split):
    with pytest.raises(ValueError, match="unknown sequence model"):
        train_sequence_model("caser", split)
    with pytest.raises(ValueError, match="unknown sequence model"):
        train_sequence_model("ranker", split)
