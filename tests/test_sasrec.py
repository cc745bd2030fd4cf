"""SASRec (models/sasrec.py) and the sampled softmax every sequence model can train with
(models/sampled.py): it learns an order, it is causal, it round-trips through its bundle, the
sampled loss is the full one when every item is a negative, the catalog's size picks the loss,
the trainer steps a sparse item table, a student distills it, and the pipeline trains,
registers, gates and exports it.

The toy order: every user walks the catalog one item at a time (item i, then i + 1), from a
user-specific start, so the next item follows from the last one while popularity is flat.
"""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from models.bert4rec import BERT4Rec, BERT4RecConfig
from models.bundle import Bundle
from models.gru import GRU4Rec, GRU4RecConfig
from models.registry import MODELS, spec
from models.sampled import NegativeSampler, corrected_logits, sampled_softmax_loss
from models.sasrec import SASRec, SASRecConfig
from models.sequence_data import (
    SequenceBundle,
    SequenceData,
    config_dicts,
    from_frame,
    resolved_configs,
    score_items,
    softmax_choice,
    train_sequence_model,
)
from models.tracking import registered_name
from models.trainer import TrainerConfig, clip_gradients, fit, optimizers, seed_everything
from reelflow.config import CandidateConfig, Config, SequenceConfig
from reelflow.paths import REPO_ROOT
from tests.recency_pool import RecencyPoolConfig
from tests.test_model_registry import export_day  # noqa: F401 (a fixture: the export's day)
from tests.test_sequence_run import DAYS, config, lake_home  # noqa: F401 (the walks' lake)

FAST = {"epochs": 6, "batch_size": 32, "lr": 5e-3, "progress": False}


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Every test here runs torch on one thread (see conftest)."""


def successor_walks(users: int = 100, items: int = 100, length: int = 14) -> pd.DataFrame:
    """Each user views items start, start + 1, ... (mod items), start = user mod items."""
    rows = [(user, 1000 + (user + t) % items, t) for user in range(users) for t in range(length)]
    return pd.DataFrame(rows, columns=["user_id", "video_id", "event_ts"])


@pytest.fixture(scope="module")
def split():
    return from_frame(successor_walks(), max_len=10)


@pytest.fixture(scope="module")
def sasrec(split):
    return train_sequence_model("sasrec", split, trainer_overrides=FAST)


def test_sasrec_learns_the_successor(sasrec):
    m = sasrec.metrics
    assert (
        m["test_hr_at_10"] > 0.9 and m["test_ndcg_at_10"] > 3 * m["popularity_test_ndcg_at_10"]
    ), m
    assert sasrec.model_config["sampled_negatives"] == 0


def test_sasrec_learns_the_successor_with_sampled_softmax(split):
    result = train_sequence_model(
        "sasrec",
        split,
        model_overrides={"sampled_negatives": 8, "negative_sampler": "popularity"},
        trainer_overrides=FAST,
    )
    m = result.metrics
    assert (
        m["test_hr_at_10"] > 0.9 and m["test_ndcg_at_10"] > 3 * m["popularity_test_ndcg_at_10"]
    ), m
    assert result.model_config["sampled_negatives"] == 8
    assert result.model.item_emb.sparse  # the item table trained by SparseAdam


def test_an_earlier_position_never_reads_a_later_one():
    seed_everything(0)
    model = SASRec(SASRecConfig(n_items=30, max_len=8, num_heads=2)).eval()
    items = torch.tensor([[0, 0, 0, 4, 9, 2, 7, 5], [0, 0, 0, 0, 0, 0, 0, 0]])
    changed = items.clone()
    changed[0, 5] = 11
    with torch.no_grad():
        before, after = model.encode({"items": items}), model.encode({"items": changed})
    assert torch.equal(before[0, :5], after[0, :5])
    assert not torch.allclose(before[0, 5:], after[0, 5:])
    # Left padding, and a history of nothing at all: every position finite, no NaN.
    assert torch.isfinite(before).all()
    assert torch.isfinite(model.predict_next(items)[:, 1:]).all()


def test_bundle_round_trip(sasrec, split, tmp_path):
    folder = sasrec.bundle.save(tmp_path / "sasrec")
    loaded = Bundle.load(folder)
    assert isinstance(loaded, SequenceBundle) and isinstance(loaded.model, SASRec)
    assert loaded.model.config == sasrec.model.config
    val = split.stage("val")
    np.testing.assert_array_equal(
        score_items(sasrec.model, val.inputs), score_items(loaded.model, val.inputs)
    )
    # The export's space: query . item vector = the score, but for the window bias on the
    # videos the user has seen (the export masks those).
    histories = [split.vocab.raw(s[:-2]) for s in split.sequences[:3]]
    queries, scores = loaded.queries(histories), loaded.scores(histories)
    vectors = loaded.model.item_vectors().detach().numpy()
    seen = np.zeros_like(scores, dtype=bool)
    for row, history in enumerate(histories):  # the window: the last max_len views
        seen[row, split.vocab.lookup(history[-split.max_len :]) - 1] = True
    bias = loaded.model.window_bias.item()
    np.testing.assert_allclose(queries @ vectors.T + bias * seen, scores, rtol=1e-4, atol=1e-4)


def _targets(n_items: int) -> dict[str, torch.Tensor]:
    nxt = torch.randint(1, n_items + 1, (3, 6))
    nxt[:, :2] = 0  # padding positions: no target
    return {"next": nxt}


@pytest.mark.parametrize(
    ("model", "first"),
    [
        # SASRec's and GRU4Rec's full softmax has no padding class; BERT4Rec's scores column 0
        # too, so there "every item" starts at index 0.
        (lambda n: SASRec(SASRecConfig(n_items=n, max_len=6)), 1),
        (lambda n: GRU4Rec(GRU4RecConfig(n_items=n, max_len=6)), 1),
        (lambda n: BERT4Rec(BERT4RecConfig(n_items=n, max_len=6)), 0),
    ],
)
def test_sampled_loss_over_every_item_is_the_full_softmax(model, first):
    seed_everything(0)
    n = 25
    net = model(n).eval()
    targets = _targets(n)
    with torch.no_grad():
        if isinstance(net, BERT4Rec):
            torch.nn.init.normal_(net.out_bias, std=0.5)  # a bias that matters
        hidden = net.encode({"items": torch.randint(0, n + 1, (3, 6))})
        full = net.loss(hidden, targets)
        # The positive is among the negatives too: the accidental hit is masked out.
        sampled = net.loss(hidden, targets, negatives=torch.arange(first, n + 1))
    assert sampled.item() == pytest.approx(full.item(), rel=1e-5)


@pytest.mark.parametrize(
    "model",
    [
        lambda n: SASRec(SASRecConfig(n_items=n, max_len=6)),
        lambda n: GRU4Rec(GRU4RecConfig(n_items=n, max_len=6)),
        lambda n: BERT4Rec(BERT4RecConfig(n_items=n, max_len=6)),
    ],
)
def test_each_sequence_is_scored_against_its_own_negatives(model):
    """negative_scope "sequence": (B, N) negatives. Each row's target positions get what the
    shared path gives with that row's draw, and one draw copied to every row is the shared
    loss, logQ correction and accidental hits included."""
    seed_everything(0)
    n = 25
    net = model(n).eval()
    nxt = _targets(n)["next"]
    popularity = NegativeSampler(n, "popularity").fit(torch.arange(n + 1))
    with torch.no_grad():
        if isinstance(net, BERT4Rec):
            torch.nn.init.normal_(net.out_bias, std=0.5)
        hidden = net.encode({"items": torch.randint(0, n + 1, (3, 6))})
        own = torch.randint(1, n + 1, (3, 7))
        own[1, 0] = nxt[1, 3]  # an accidental hit in row 1 only
        logits = net.candidate_logits(hidden, nxt, own)
        corrected, hits = corrected_logits(logits, nxt, own, popularity)
        start = 0
        for row in range(3):
            alone = net.candidate_logits(hidden[row : row + 1], nxt[row : row + 1], own[row])
            ends = start + len(alone)
            torch.testing.assert_close(logits[start:ends], alone)
            expected, expected_hits = corrected_logits(
                alone, nxt[row : row + 1], own[row], popularity
            )
            torch.testing.assert_close(corrected[start:ends], expected)
            assert torch.equal(hits[start:ends], expected_hits)
            start = ends
        assert start == len(logits) == int((nxt > 0).sum()) and hits[4:8, 1].any()
        shared = torch.randint(1, n + 1, (7,))
        one_draw = sampled_softmax_loss(net.candidate_logits(hidden, nxt, shared), nxt, shared)
        copied = shared.expand(3, -1)
        each = sampled_softmax_loss(net.candidate_logits(hidden, nxt, copied), nxt, copied)
    assert each.item() == pytest.approx(one_draw.item(), rel=1e-6)


def test_negative_scope_decides_the_draw():
    for scope, shape in (("batch", (8,)), ("sequence", (3, 8))):
        net = SASRec(SASRecConfig(n_items=30, sampled_negatives=8, negative_scope=scope))
        drawn = net.draw_negatives(3, torch.device("cpu"))
        assert drawn.shape == shape and drawn.min() >= 1 and drawn.max() <= 30
    with pytest.raises(ValueError, match="negative_scope 'row'"):
        SASRec(SASRecConfig(n_items=30, sampled_negatives=8, negative_scope="row"))


def test_logq_correction_with_uniform_probabilities_changes_nothing():
    torch.manual_seed(0)
    n, positives = 20, torch.tensor([3, 7, 7, 1])
    negatives = torch.arange(1, n + 1)
    logits = torch.randn(len(positives), 1 + n)
    flat = NegativeSampler(n, "popularity").fit(torch.full((n + 1,), 5))
    assert flat.log_q(positives) == pytest.approx(torch.full((4,), -math.log(n)))
    plain = sampled_softmax_loss(logits, positives, negatives)
    corrected = sampled_softmax_loss(logits, positives, negatives, flat)
    assert corrected.item() == pytest.approx(plain.item(), rel=1e-6)
    # The hits: row 0's negative 3, rows 1-2's negative 7.
    _, hits = corrected_logits(logits, positives, negatives, flat)
    assert hits.sum().item() == 4 and hits[0, 3] and hits[1, 7] and not hits[:, 0].any()


def test_popularity_sampler_draws_in_proportion():
    counts = torch.tensor([0, 97, 0, 1, 0])  # items 1..4 -> weights 98, 1, 2, 1 (add-one)
    sampler = NegativeSampler(4, "popularity").fit(counts)
    torch.manual_seed(0)
    drawn = sampler.sample(20_000)
    assert drawn.min() >= 1 and drawn.max() <= 4
    share = torch.bincount(drawn, minlength=5)[1:].double() / len(drawn)
    assert share.tolist() == pytest.approx([98 / 102, 1 / 102, 2 / 102, 1 / 102], abs=0.01)
    assert sampler.log_q(torch.tensor([1])).item() == pytest.approx(math.log(98 / 102))
    uniform = NegativeSampler(4).sample(1000)
    assert set(uniform.tolist()) == {1, 2, 3, 4}
    assert NegativeSampler(4).log_q(uniform) is None  # one constant: nothing to correct


def test_catalog_size_picks_full_or_sampled(split):
    n = split.n_items
    for name in ("gru", "bert4rec", "sasrec"):
        below = SequenceData(name, split, sequence=SequenceConfig(full_softmax_max_items=n))
        assert below.model_config.sampled_negatives == 0, name
        above = SequenceData(
            name,
            split,
            sequence=SequenceConfig(
                full_softmax_max_items=n - 1, sampled_negatives=16, negative_sampler="popularity"
            ),
        )
        assert above.model_config.sampled_negatives == 16, name
        # Each sequence draws its own (SequenceConfig.negative_scope).
        assert above.model_config.negative_scope == "sequence", name
        assert above.params()["softmax"] == "sampled: 16 popularity negatives per sequence"
        assert below.params()["softmax"] == "full"
        model = spec(name).model_class()(above.model_config)
        assert model.sampler is not None and model.item_emb.sparse
        above.wrap(model)  # the popularity sampler learns the training targets' counts
        assert len(model.sampler.cdf) == n
        # AdamW for the rest, SparseAdam for the item table.
        kinds = [type(o).__name__ for o in optimizers(model, TrainerConfig())]
        assert kinds == ["AdamW", "SparseAdam"]
    # A model whose config has no loss fields keeps its full softmax.
    assert softmax_choice(RecencyPoolConfig, n, SequenceConfig(full_softmax_max_items=0)) == {}


def test_resolved_configs_are_what_a_run_trains_with(split):
    """bench/train_seq.py checks a cached unit against them: a model's changed default shows."""
    for name in ("gru", "bert4rec", "sasrec", "student"):
        run = SequenceData(
            name, split, model_overrides={"dropout": 0.3}, trainer_overrides={"lr": 1e-4}
        )
        trainer, model_config = resolved_configs(name, split, {"dropout": 0.3}, {"lr": 1e-4})
        assert config_dicts(trainer, model_config) == run.configs(), name
        defaults = spec(name).model_class().trainer_defaults
        assert trainer.lr == 1e-4 and trainer.epochs == defaults["epochs"], name
        assert model_config.dropout == 0.3 and model_config.n_items == split.n_items, name


def test_clipping_a_sparse_gradient_matches_its_dense_twin():
    grads = {}
    for sparse in (False, True):
        seed_everything(0)
        table, head = torch.nn.Embedding(10, 4, sparse=sparse), torch.nn.Linear(4, 1)
        items = torch.tensor([1, 2, 2, 7])
        # One row read twice and the table read from two places, as a tied output reads it.
        (head(table(items)).sum() + 3 * table(torch.tensor([2])).sum()).backward()
        params = [table.weight, *head.parameters()]
        clip_gradients(params, 0.5)
        grads[sparse] = [p.grad.to_dense() for p in params]
    for dense, sparse in zip(grads[False], grads[True], strict=True):
        torch.testing.assert_close(dense, sparse)
    assert torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads[True]])) <= 0.5 + 1e-5


def test_sparse_training_resumes_to_the_same_weights(split, tmp_path):
    windows = split.training_windows()
    inputs, targets = {"items": windows[:, :-1]}, {"next": windows[:, 1:]}
    cfg = SASRecConfig(n_items=split.n_items, max_len=10, sampled_negatives=8)
    trainer = TrainerConfig(epochs=3, batch_size=64, lr=5e-3, grad_clip=1.0, progress=False)

    def fresh() -> SASRec:
        seed_everything(0)
        return SASRec(cfg)

    whole = fresh()
    fit(whole, inputs, targets, trainer)
    path = tmp_path / "ckpt.pt"
    resumable = dataclasses.replace(trainer, checkpoint_path=str(path))

    def crash(epoch, metrics):
        if epoch == 2:
            raise RuntimeError("the machine went away")
        return {}

    with pytest.raises(RuntimeError):
        fit(fresh(), inputs, targets, resumable, crash)
    resumed = fresh()
    torch.manual_seed(1234)
    fit(resumed, inputs, targets, resumable)
    for key, value in whole.state_dict().items():
        assert torch.allclose(value, resumed.state_dict()[key], atol=1e-6), key


@pytest.mark.parametrize("negatives", [0, 32])
def test_student_distills_a_sasrec_teacher(split, sasrec, negatives):
    before = {k: v.clone() for k, v in sasrec.model.state_dict().items()}
    student = train_sequence_model(
        "student",
        split,
        teacher=sasrec,
        model_overrides={"sampled_negatives": negatives},
        trainer_overrides={**FAST, "epochs": 20, "patience": 20},
    )
    m = student.metrics
    assert m["test_ndcg_at_10"] > 2 * m["popularity_test_ndcg_at_10"], m
    assert all(torch.equal(v, sasrec.model.state_dict()[k]) for k, v in before.items())


def test_registered_and_selectable_as_teacher():
    assert MODELS["sasrec"].model_class() is SASRec
    assert registered_name("sasrec") == "reelflow-sasrec"
    assert MODELS["student"].teacher == "sasrec"  # the default
    # The teacher is a setting, read where the DAG reads MODELS: a fresh interpreter.
    code = "from models.registry import MODELS; print(MODELS['student'].teacher)"
    env = {**os.environ, "REELFLOW_SEQUENCE__TEACHER": "gru"}
    chosen = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert chosen.stdout.strip() == "gru", chosen.stderr[-2000:]
    # Not a model, or not a left-to-right one: refused at import.
    for wrong_name in ("ranker", "bert4rec"):
        env["REELFLOW_SEQUENCE__TEACHER"] = wrong_name
        wrong = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True
        )
        assert wrong.returncode != 0, wrong.stdout
        assert f"REELFLOW_SEQUENCE__TEACHER={wrong_name!r}" in wrong.stderr


def test_pipeline_trains_registers_gates_and_exports_sasrec(export_day):  # noqa: F811
    from jobs.export import export_candidates
    from models.training import train_and_register

    summary = train_and_register("sasrec", export_day, config=config(8))
    assert summary["model"] == "reelflow-sasrec" and summary["promoted"]
    assert (
        summary["metrics"]["test_ndcg_at_10"] > summary["popularity"]["popularity_test_ndcg_at_10"]
    )
    exported = dataclasses.replace(CandidateConfig(), embedding_model="sasrec")
    manifest = export_candidates(export_day, config=Config(candidates=exported))
    assert manifest["models"]["embeddings"]["name"] == "reelflow-sasrec"
    assert manifest["candidates"]["users"] > 0
