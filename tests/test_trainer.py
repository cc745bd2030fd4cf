"""The shared trainer: checkpoint/resume, early stopping, and 2-process data parallelism (gloo)."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from models.gru import GRU4Rec, GRU4RecConfig
from models.sequence_data import from_frame
from models.trainer import TrainerConfig, fit, seed_everything
from tests.conftest import free_port
from tests.test_sequence_models import tiny_interactions


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Every test here runs torch on one thread (see conftest)."""


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    split = from_frame(tiny_interactions(tmp_path_factory.mktemp("kuairec")), max_len=20)
    return split.n_items, split.training_windows()


def _gru(n_items: int) -> GRU4Rec:
    seed_everything(0)
    return GRU4Rec(GRU4RecConfig(n_items=n_items, max_len=20, embedding_dim=16, hidden_dim=16))


def _fit(model, windows, config, on_epoch=None):
    return fit(model, {"items": windows[:, :-1]}, {"next": windows[:, 1:]}, config, on_epoch)


class Crash(RuntimeError):
    pass


def test_resume_matches_uninterrupted_run(windows, tmp_path):
    n_items, rows = windows
    config = TrainerConfig(epochs=4, batch_size=32, lr=5e-3, progress=False)
    whole = _gru(n_items)
    whole_history = _fit(whole, rows, config)

    checkpoint = tmp_path / "ckpt" / "gru.pt"
    resumable = TrainerConfig(**{**config.__dict__, "checkpoint_path": str(checkpoint)})

    def crash_in_epoch_3(epoch, metrics):
        if epoch == 3:
            raise Crash("the machine went away")
        return {}

    with pytest.raises(Crash):
        _fit(_gru(n_items), rows, resumable, crash_in_epoch_3)
    assert checkpoint.exists()
    resumed = _gru(n_items)
    torch.manual_seed(1234)  # a fresh process would not share the first run's RNG position
    resumed_history = _fit(resumed, rows, resumable)
    assert [h["train_loss"] for h in resumed_history] == pytest.approx(
        [h["train_loss"] for h in whole_history], rel=1e-6
    )
    for key, value in whole.state_dict().items():
        assert torch.allclose(value, resumed.state_dict()[key], atol=1e-6), key


def test_early_stopping_restores_the_best_epoch(windows):
    n_items, rows = windows
    scripted = {1: 0.1, 2: 0.3, 3: 0.2, 4: 0.25, 5: 0.9, 6: 0.95}
    states = {}

    model = _gru(n_items)

    def on_epoch(epoch, metrics):
        states[epoch] = {k: v.clone() for k, v in model.state_dict().items()}
        return {"val": scripted[epoch]}

    config = TrainerConfig(epochs=6, batch_size=32, monitor="val", patience=2, progress=False)
    history = _fit(model, rows, config, on_epoch)
    assert len(history) == 4  # epochs 3 and 4 did not beat epoch 2
    assert all(torch.equal(v, states[2][k]) for k, v in model.state_dict().items())


def test_an_epoch_trains_on_a_fresh_bounded_draw_of_rows(windows):
    """`max_rows_per_epoch` bounds every epoch's rows; each epoch draws other rows."""
    n_items, rows = windows
    assert len(rows) > 40
    seen: list[set] = []
    model = _gru(n_items)
    forward = model.forward

    def counting(batch, targets):
        seen[-1].update(map(tuple, batch["items"].tolist()))
        return forward(batch, targets)

    model.forward = counting
    config = TrainerConfig(epochs=3, batch_size=16, max_rows_per_epoch=40, progress=False)

    def on_epoch(epoch, metrics):
        seen.append(set())
        return {}

    seen.append(set())
    history = _fit(model, rows, config, on_epoch)
    draws = seen[:3]
    assert len(history) == 3 and all(0 < len(d) <= 40 for d in draws)
    assert draws[0] != draws[1] or draws[1] != draws[2]


def test_no_epoch_starts_once_the_time_budget_is_spent(windows):
    """`max_seconds`: training stops after the epoch that spent the budget (its callback's
    time included), and the best epoch's weights are the model's."""
    import time

    n_items, rows = windows
    model = _gru(n_items)
    states = {}

    def on_epoch(epoch, metrics):
        time.sleep(0.3)  # a validation pass
        states[epoch] = {k: v.clone() for k, v in model.state_dict().items()}
        return {"val": [0.1, 0.3, 0.2, 0.25, 0.2, 0.2, 0.2, 0.2][epoch - 1]}

    config = TrainerConfig(
        epochs=8, batch_size=32, monitor="val", patience=8, max_seconds=0.7, progress=False
    )
    history = _fit(model, rows, config, on_epoch)
    spent = [h["wall_seconds"] for h in history]
    assert all(s >= 0.3 for s in spent)
    assert 1 <= len(history) <= 3 and sum(spent) >= 0.7 > sum(spent[:-1])
    best = max(states, key=lambda e: [0.1, 0.3, 0.2][e - 1])
    assert all(torch.equal(v, states[best][k]) for k, v in model.state_dict().items())


def _ddp_worker(rank: int, world: int, port: int, rows: torch.Tensor, n_items: int, out: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        config = TrainerConfig(epochs=3, batch_size=32, lr=5e-3, progress=False)
        history = _fit(_gru_no_dropout(n_items), rows, config)
        if rank == 0:
            with open(out, "w") as f:
                json.dump([h["train_loss"] for h in history], f)
    finally:
        dist.destroy_process_group()


def _gru_no_dropout(n_items: int) -> GRU4Rec:
    seed_everything(0)
    config = GRU4RecConfig(
        n_items=n_items, max_len=20, embedding_dim=16, hidden_dim=16, dropout=0.0
    )
    return GRU4Rec(config)


def test_two_gloo_processes_follow_the_single_process_loss_curve(windows, tmp_path):
    n_items, rows = windows
    single = _fit(
        _gru_no_dropout(n_items),
        rows,
        TrainerConfig(epochs=3, batch_size=32, lr=5e-3, progress=False),
    )
    out = tmp_path / "ddp.json"
    mp.spawn(_ddp_worker, args=(2, free_port(), rows, n_items, str(out)), nprocs=2, join=True)
    ddp = json.loads(out.read_text())
    # Each rank averages its loss over its own share of positions, so the averaged gradient
    # differs from the one-process gradient by that weighting only: the curves agree closely.
    assert ddp == pytest.approx([h["train_loss"] for h in single], rel=0.01)
    assert ddp[-1] < ddp[0]
