"""One trainer for every model: AdamW, linear warm-up then cosine decay, seeded, AMP on CUDA.

A model is any `nn.Module` whose `forward(batch, targets)` returns `(output, loss)`; the
trainer only moves tensors, steps the optimizer and reports each epoch to a callback (which
logs to MLflow and may evaluate).
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class TrainerConfig:
    epochs: int = 4
    batch_size: int = 1024
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05  # share of all steps spent warming the learning rate up
    seed: int = 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(warmup_steps, 1)
        progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def fit(
    model: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    config: TrainerConfig,
    on_epoch: Callable[[int, dict[str, float]], dict[str, float]] | None = None,
) -> list[dict[str, float]]:
    """Trains in place; returns one dict of metrics per epoch."""
    seed_everything(config.seed)
    dev = device()
    model.to(dev)
    n_rows = len(next(iter(targets.values())))
    steps_per_epoch = math.ceil(n_rows / config.batch_size)
    total = steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(total, int(total * config.warmup_fraction))
    )
    use_amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    generator = torch.Generator().manual_seed(config.seed)
    history = []
    for epoch in range(1, config.epochs + 1):
        model.train()
        started = time.perf_counter()
        order = torch.randperm(n_rows, generator=generator)
        loss_sum = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            batch = {k: v[idx].to(dev, non_blocking=True) for k, v in inputs.items()}
            batch_targets = {k: v[idx].to(dev, non_blocking=True) for k, v in targets.items()}
            with torch.autocast(device_type=dev.type, enabled=use_amp):
                _, loss = model(batch, batch_targets)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            loss_sum += loss.item() * len(idx)
        metrics = {"train_loss": loss_sum / n_rows, "epoch_seconds": time.perf_counter() - started}
        if on_epoch is not None:
            model.eval()
            metrics.update(on_epoch(epoch, metrics))
        history.append(metrics)
        shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        print(f"epoch {epoch}/{config.epochs} {shown}", file=sys.stderr, flush=True)
    model.to("cpu")
    return history
