"""What every training run leaves in MLflow next to its model: the resolved configuration,
the evaluation report as JSON and a PNG of the learning curves (artifact folder `report/`)."""

from __future__ import annotations

import json
import tempfile
from itertools import cycle
from pathlib import Path
from typing import Any

import numpy as np


def learning_curves_png(
    history: list[dict[str, float]],
    path: Path,
    metric: str,
    baseline: float | None = None,
    label: str = "model",
    baselines: dict[str, float] | None = None,
) -> None:
    """Train loss and validation `metric` per epoch; the popularity baseline (`baseline`) and
    any other (`baselines`, name -> value) as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(history) + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, [h["train_loss"] for h in history], marker="o")
    left.set(title="train loss", xlabel="epoch")
    right.plot(epochs, [h.get(metric, np.nan) for h in history], marker="o", label=label)
    if baseline is not None:
        right.axhline(baseline, ls="--", color="grey", label="popularity")
    for (name, value), style in zip((baselines or {}).items(), cycle((":", "-.")), strict=False):
        right.axhline(value, ls=style, color="grey", label=name)
    right.set(title=f"validation {metric}", xlabel="epoch")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def log_report(
    report: dict[str, Any],
    config: dict[str, Any],
    history: list[dict[str, float]],
    metric: str,
    baseline: float | None = None,
    label: str = "model",
    baselines: dict[str, float] | None = None,
) -> None:
    """Logs evaluation.json, config.json and learning_curves.png into the active run."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "evaluation.json").write_text(json.dumps(report, indent=2, default=float))
        (folder / "config.json").write_text(json.dumps(config, indent=2, default=str))
        learning_curves_png(
            history, folder / "learning_curves.png", metric, baseline, label, baselines
        )
        mlflow.log_artifacts(str(folder), artifact_path="report")
