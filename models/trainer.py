"""One trainer for every model: AdamW, linear warm-up then cosine decay, seeded, AMP on CUDA.

A model is any `nn.Module` whose `forward(batch, targets)` returns `(output, loss)`; the
trainer only moves tensors, steps the optimizer and reports each epoch to a callback (which
logs to MLflow and may evaluate). One row of `inputs`/`targets` is one training example: a
(user, video) pair for the ranker, a whole window of a user's sequence for the sequence models
(which then learn from every position of it in one pass).

Item tables that give sparse gradients (`nn.Embedding(sparse=True)`: the sequence models'
when they sample their negatives, models/sampled.py) are stepped by SparseAdam, which updates
only the rows a batch touched (lazy Adam, no weight decay), so a step costs the batch, not
the catalog; every other parameter by AdamW. Without such a table the trainer is AdamW alone.

Also, all opt-in through `TrainerConfig`:
- early stopping on a metric the callback returns (`monitor`, higher is better, `patience`),
  restoring the best epoch's weights at the end;
- a wall-time budget (`max_seconds`): no new epoch once the epochs run have taken it;
- a checkpoint after every epoch (state dicts only, read back with `weights_only=True`) and
  resume from it, giving the same weights as an uninterrupted run;
- data-parallel training when `torch.distributed` is initialized (e.g. under `torchrun`):
  every rank draws the same global batch order and trains on its share of each batch,
  DistributedDataParallel averages the gradients; the callback runs on rank 0 only and its
  metrics are broadcast, so every rank takes the same early-stopping decision.

    torchrun --nproc-per-node 2 my_training_script.py   # calls init_distributed() then fit()
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class TrainerConfig:
    epochs: int = 4  # the most epochs to train; early stopping may end sooner
    batch_size: int = 1024  # rows per optimizer step, over all ranks together
    lr: float = 3e-3  # peak learning rate, reached after the warm-up
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05  # share of all steps spent warming the learning rate up
    seed: int = 0
    monitor: str | None = None  # a metric of the callback to early-stop on; None: all epochs
    patience: int = 3  # epochs without a better `monitor` before stopping
    grad_clip: float | None = None  # max global gradient norm; None: no clipping
    checkpoint_path: str | None = None  # written every epoch; resumed from when it exists
    amp: bool = True  # mixed precision, only ever on CUDA
    progress: bool = True  # a progress line on stderr within each epoch
    # At most this many rows per epoch (0: all), a fresh random draw each epoch, so that a
    # release-size training set bounds an epoch's time while later epochs see other rows.
    max_rows_per_epoch: int = 0
    # A wall-time budget in seconds (0: none): no epoch starts once the epochs so far (their
    # callback, e.g. validation, included; summed across resumes) have taken this long. The
    # best epoch is kept as with early stopping; like it, the cut leaves the cosine schedule
    # where it was. Lightning's `max_time`, at epoch granularity.
    max_seconds: float = 0.0


# Checkpoint keys of each optimizer and its schedule: AdamW's, then SparseAdam's when present.
_STATE_KEYS = (("optimizer", "schedule"), ("sparse_optimizer", "sparse_schedule"))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def device() -> torch.device:
    if not torch.cuda.is_available():
        return torch.device("cpu")
    if distributed():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cuda")


def init_distributed() -> bool:
    """Joins the process group `torchrun` describes in the environment (NCCL on GPUs, gloo on
    CPU); returns False, doing nothing, when not started by torchrun."""
    if "RANK" not in os.environ or distributed():
        return distributed()
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return True


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(warmup_steps, 1)
        progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def optimizers(model: torch.nn.Module, config: TrainerConfig) -> list[torch.optim.Optimizer]:
    """AdamW over the trainable parameters, and SparseAdam over the sparse item tables when
    the model has some (AdamW cannot take a sparse gradient). Frozen parameters (a
    distillation teacher) are not the optimizers' business."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    sparse = {
        id(m.weight)
        for m in model.modules()
        if isinstance(m, torch.nn.Embedding) and m.sparse and m.weight.requires_grad
    }
    found = [
        torch.optim.AdamW(
            [p for p in trainable if id(p) not in sparse],
            lr=config.lr,
            weight_decay=config.weight_decay,
        )
    ]
    if sparse:
        found.append(
            torch.optim.SparseAdam([p for p in trainable if id(p) in sparse], lr=config.lr)
        )
    return found


def clip_gradients(parameters: list[torch.nn.Parameter], max_norm: float) -> None:
    """Scales all gradients together to a global norm of at most `max_norm`;
    `clip_grad_norm_` itself when none is sparse (it cannot take a sparse one)."""
    grads = [p for p in parameters if p.grad is not None]
    if not any(p.grad.is_sparse for p in grads):
        torch.nn.utils.clip_grad_norm_(parameters, max_norm)
        return
    norms = []
    for p in grads:
        if p.grad.is_sparse:
            # Lookups of one row from two places (input and tied output) are two entries
            # until coalesced; the norm is of their sum.
            p.grad = p.grad.coalesce()
            norms.append(torch.linalg.vector_norm(p.grad.values()))
        else:
            norms.append(torch.linalg.vector_norm(p.grad))
    total = torch.linalg.vector_norm(torch.stack(norms))
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for p in grads:
        (p.grad.values() if p.grad.is_sparse else p.grad).mul_(scale)


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def _progress(epoch: int, step: int, steps: int, started: float) -> None:
    rate = step / max(time.perf_counter() - started, 1e-9)
    print(
        f"\repoch {epoch} {step}/{steps} steps ({rate:.1f} steps/s)",
        end="" if step < steps else "\n",
        file=sys.stderr,
        flush=True,
    )


def out_of_time(history: list[dict[str, float]], config: TrainerConfig) -> bool:
    """Whether the epochs in `history` have spent `config.max_seconds` (0: never)."""
    spent = sum(h.get("wall_seconds", h["epoch_seconds"]) for h in history)
    return config.max_seconds > 0 and spent >= config.max_seconds


def fit(
    model: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    config: TrainerConfig,
    on_epoch: Callable[[int, dict[str, float]], dict[str, float]] | None = None,
) -> list[dict[str, float]]:
    """Trains in place; returns one dict of metrics per epoch (those of the epochs run)."""
    seed_everything(config.seed)
    dev = device()
    model.to(dev)
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed() else (0, 1)
    # Under DDP the wrapper averages gradients; the callback still sees the plain module.
    trained = (
        torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None
        )
        if world > 1
        else model
    )
    n_rows = len(next(iter(targets.values())))
    epoch_rows = min(n_rows, config.max_rows_per_epoch) if config.max_rows_per_epoch > 0 else n_rows
    steps_per_epoch = math.ceil(epoch_rows / config.batch_size)
    total = steps_per_epoch * config.epochs
    steppers = optimizers(model, config)
    schedules = [
        torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_cosine(total, int(total * config.warmup_fraction))
        )
        for optimizer in steppers
    ]
    use_amp = config.amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    generator = torch.Generator().manual_seed(config.seed)
    history: list[dict[str, float]] = []
    best_value, best_state, bad_epochs, first_epoch = -math.inf, None, 0, 1

    checkpoint = Path(config.checkpoint_path) if config.checkpoint_path else None
    if checkpoint is not None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
    if checkpoint is not None and checkpoint.exists():
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["model"])
        for key, optimizer, schedule in zip(_STATE_KEYS, steppers, schedules, strict=False):
            optimizer.load_state_dict(saved[key[0]])
            schedule.load_state_dict(saved[key[1]])
        scaler.load_state_dict(saved["scaler"])
        generator.set_state(saved["generator"])
        # Dropout and masking draw from the global generator: restore it too.
        torch.set_rng_state(saved["torch_rng"])
        history, best_value, best_state = saved["history"], saved["best_value"], saved["best_state"]
        bad_epochs, first_epoch = saved["bad_epochs"], saved["epoch"] + 1
        print(f"resumed from {checkpoint} after epoch {saved['epoch']}", file=sys.stderr)
    stop = bad_epochs >= config.patience and config.monitor is not None

    for epoch in range(first_epoch, config.epochs + 1):
        if stop or out_of_time(history, config):
            break
        trained.train()
        started = time.perf_counter()
        order = torch.randperm(n_rows, generator=generator)[:epoch_rows]
        loss_sum = torch.zeros((), dtype=torch.float64)
        for step in range(steps_per_epoch):
            # Every rank draws the same order and keeps its own share of each global batch.
            idx = order[step * config.batch_size : (step + 1) * config.batch_size][rank::world]
            batch = {k: v[idx].to(dev, non_blocking=True) for k, v in inputs.items()}
            batch_targets = {k: v[idx].to(dev, non_blocking=True) for k, v in targets.items()}
            with torch.autocast(device_type=dev.type, enabled=use_amp):
                _, loss = trained(batch, batch_targets)
            for optimizer in steppers:
                optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip is not None:
                for optimizer in steppers:
                    scaler.unscale_(optimizer)
                clip_gradients(list(model.parameters()), config.grad_clip)
            for optimizer in steppers:
                scaler.step(optimizer)
            scaler.update()
            for schedule in schedules:
                schedule.step()
            loss_sum += loss.detach().double().cpu() * len(idx)
            if config.progress and rank == 0:
                _progress(epoch, step + 1, steps_per_epoch, started)
        if world > 1:
            dist.all_reduce(loss_sum)
        metrics = {
            "train_loss": float(loss_sum) / epoch_rows,
            "epoch_seconds": time.perf_counter() - started,
        }
        if on_epoch is not None:
            model.eval()
            shared = [on_epoch(epoch, dict(metrics)) if rank == 0 else None]
            if world > 1:
                dist.broadcast_object_list(shared, src=0)
            metrics.update(shared[0])
        metrics["wall_seconds"] = time.perf_counter() - started  # training and callback
        history.append(metrics)
        if rank == 0:
            shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
            print(f"epoch {epoch}/{config.epochs} {shown}", file=sys.stderr, flush=True)

        if config.monitor is not None:
            if metrics[config.monitor] > best_value:
                best_value, best_state, bad_epochs = metrics[config.monitor], _cpu_state(model), 0
            else:
                bad_epochs += 1
            stop = bad_epochs >= config.patience
        if checkpoint is not None and rank == 0:
            state = {
                "epoch": epoch,
                "model": model.state_dict(),
                **{
                    key: part.state_dict()
                    for keys, optimizer, schedule in zip(
                        _STATE_KEYS, steppers, schedules, strict=False
                    )
                    for key, part in zip(keys, (optimizer, schedule), strict=True)
                },
                "scaler": scaler.state_dict(),
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "history": history,
                "best_value": best_value,
                "best_state": best_state,
                "bad_epochs": bad_epochs,
            }
            # Written beside and renamed over, so a crash mid-write keeps the previous epoch.
            partial = checkpoint.with_suffix(checkpoint.suffix + ".partial")
            torch.save(state, partial)
            os.replace(partial, checkpoint)
        if world > 1:
            dist.barrier()

    if best_state is not None:
        model.load_state_dict(best_state)
    model.to("cpu")
    return history
