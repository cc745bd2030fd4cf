"""The promotion gate, one for every model: a registered version becomes `@champion` only when
it beats the popularity baseline and the current champion on the challenger's own validation
split, both scored there now (never an old logged metric), by a configurable margin.

The decision, the split and both scores are written as tags on the version, so the registry
keeps the history of every decision; `force` promotes anyway and is recorded as forced.

Who set `@champion` is kept on the registered model (`champion_version`, `champion_set_by`,
`champion_set_at`). An alias moved by hand (the MLflow UI, its API) leaves no such record, and
MLflow keeps no user or time for alias changes; `champion_origin` finds the difference and
records it (`gate=manual` in the version's `gate_history`, at the time it was detected). The
export and `reelflow promote` call it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from models.bundle import Bundle, load_version
from models.tracking import CHAMPION, champion_version, registered_name
from reelflow.config import Config

HISTORY_LINES = 30  # decisions kept per version (an MLflow tag holds a few thousand characters)


@dataclass
class GateSplit:
    """The split a version is gated on, its own validation split: how to score any version
    there (`score(bundle)` -> `ndcg@10`, ...) and popularity's metrics there. `challenger`:
    the version's metrics when training just computed them (scoring again gives the same)."""

    description: str
    score: Callable[[Bundle], dict[str, float]]
    popularity: dict[str, float]
    challenger: dict[str, float] | None = None


def gate(
    name: str, version: int, bundle: Bundle, split: GateSplit, config: Config, force: bool = False
) -> dict[str, Any]:
    """The gate for version `version` (its `bundle`) of `reelflow-<name>` on `split`; the
    champion is loaded and scored there now."""
    challenger = split.challenger if split.challenger is not None else split.score(bundle)
    return gate_version(
        registered_name(name),
        version,
        split.description,
        challenger,
        split.popularity,
        lambda champion: split.score(load_version(name, champion)),
        config,
        force=force,
    )


def promotion_gate(
    challenger: float, baseline: float, champion: float | None, min_improvement: float
) -> tuple[bool, str]:
    """The challenger must beat the popularity baseline and strictly improve on the champion,
    on the same holdout: challenger > champion and challenger - champion >= min_improvement.
    A tie is no improvement, whatever the margin."""
    if challenger <= baseline:
        return (
            False,
            f"challenger {challenger:.4f} does not beat the popularity baseline {baseline:.4f}",
        )
    if champion is not None and challenger == champion:
        return False, f"challenger {challenger:.4f} ties the champion {champion:.4f}"
    if champion is not None and (challenger < champion or challenger - champion < min_improvement):
        return (
            False,
            f"challenger {challenger:.4f} does not beat the champion {champion:.4f} by "
            f"at least {min_improvement}",
        )
    against = "no champion yet" if champion is None else f"champion {champion:.4f}"
    return True, f"challenger {challenger:.4f} beats baseline {baseline:.4f} and {against}"


def gate_version(
    model_name: str,
    version: int,
    split: str,
    challenger: dict[str, float],
    popularity: dict[str, float],
    score_champion: Callable[[int], dict[str, float]],
    config: Config,
    force: bool = False,
) -> dict[str, Any]:
    """`challenger` / `popularity`: metrics (`ndcg@10`, ...) on `split`, the challenger's
    validation split; `score_champion(version)` scores another registered version there."""
    from mlflow import MlflowClient

    metric = config.gate.metric
    challenger_score = challenger[metric]
    baseline = popularity[metric]
    current = champion_version(model_name)
    champion = None
    if current is not None and int(current.version) != version:
        champion = score_champion(int(current.version))[metric]
    promoted, reason = promotion_gate(
        challenger_score, baseline, champion, config.gate.min_improvement
    )
    decision = "promoted" if promoted else "rejected"
    if force and not promoted:
        promoted, decision, reason = True, "forced", f"forced by hand over: {reason}"
    tags = {
        "gate": decision,
        "gate_reason": reason,
        "gate_metric": metric,
        "gate_split": split,
        "gate_margin": str(config.gate.min_improvement),
        "gate_challenger_score": f"{challenger_score:.6f}",
        "gate_popularity_score": f"{baseline:.6f}",
        "gate_champion_score": "none" if champion is None else f"{champion:.6f}",
        "gate_champion_version": "none" if current is None else str(current.version),
    }
    client = MlflowClient()
    # Each decision overwrites the tags above; `gate_history` keeps every decision, one line each.
    now = _now()
    line = (
        f"{now} {decision} {metric} "
        f"{tags['gate_challenger_score']} vs champion {tags['gate_champion_score']} "
        f"(v{tags['gate_champion_version']}) on {split}"
    )
    _append_history(client, model_name, str(version), {**tags, "line": line})
    if promoted:
        client.set_registered_model_alias(model_name, CHAMPION, str(version))
        _record_champion(client, model_name, version, decision, now)
    return {
        "model": model_name,
        "version": version,
        "promoted": promoted,
        "decision": decision,
        "reason": reason,
        "metric": metric,
        "split": split,
        "challenger_score": challenger_score,
        "champion_score": champion,
        "popularity_score": baseline,
        "champion_version": version
        if promoted
        else (int(current.version) if current is not None else None),
    }


def _now() -> str:
    return f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"


def _record_champion(client: Any, model_name: str, version: int, set_by: str, at: str) -> None:
    """The registered model's record of who set `@champion` on `version`, and when."""
    for key, value in (
        ("champion_version", str(version)),
        ("champion_set_by", set_by),
        ("champion_set_at", at),
    ):
        client.set_registered_model_tag(model_name, key, value)


def _append_history(client: Any, model_name: str, version: str, tags: dict[str, str]) -> None:
    """Sets a version's `gate`/`gate_reason` tags and appends `tags["line"]` to its history."""
    previous = client.get_model_version(model_name, version).tags.get("gate_history", "")
    history = "\n".join([*previous.splitlines(), tags.pop("line")][-HISTORY_LINES:])
    for key, value in {**tags, "gate_history": history}.items():
        client.set_model_version_tag(model_name, version, key, value)


def champion_origin(model_name: str, current: Any = None) -> dict[str, Any] | None:
    """Who put `@champion` of the registered model `model_name` where it is: `{"version",
    "set_by": "promoted" | "forced" | "manual", "set_at", "detected": bool}`; None without a
    champion. A champion the gate did not set is recorded here, once: the version's tags say
    `gate=manual` with a `gate_history` line, the version it replaced gets a `demoted` line,
    and `set_at` is the time of this detection (MLflow keeps no user or time for an alias
    change: the move happened at or before it). `current` is the champion's ModelVersion when
    the caller already read it: the record then describes exactly the version it uses, even if
    the alias moves in between."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    current = current if current is not None else champion_version(model_name)
    if current is None:
        return None
    client = MlflowClient()
    record = client.get_registered_model(model_name).tags
    version = str(current.version)
    if record.get("champion_version") == version:
        return {
            "version": int(version),
            "set_by": record.get("champion_set_by", "promoted"),
            "set_at": record.get("champion_set_at", "unknown"),
            "detected": False,
        }
    tags = current.tags
    if "champion_version" not in record and tags.get("gate") in ("promoted", "forced"):
        # A registry from before this record: the gate's last decision on the champion stands.
        history = tags.get("gate_history", "").splitlines()
        at = history[-1].split(" ", 1)[0] if history else "unknown"
        _record_champion(client, model_name, int(version), tags["gate"], at)
        return {"version": int(version), "set_by": tags["gate"], "set_at": at, "detected": False}
    now, replaced = _now(), record.get("champion_version")
    reason = (
        f"@champion set on v{version} outside the gate (the gate's champion was "
        f"v{replaced or 'none'}); found at {now}, MLflow keeps no user or time for alias changes"
    )
    _append_history(
        client,
        model_name,
        version,
        {"gate": "manual", "gate_reason": reason, "line": f"{now} manual {reason}"},
    )
    if replaced is not None:
        try:
            _append_history(
                client,
                model_name,
                replaced,
                {
                    "gate": "demoted",
                    "gate_reason": f"@champion moved to v{version} outside the gate",
                    "line": f"{now} demoted @champion moved to v{version} outside the gate",
                },
            )
        except MlflowException:  # the replaced version was deleted: nothing left to mark
            pass
    _record_champion(client, model_name, int(version), "manual", now)
    return {"version": int(version), "set_by": "manual", "set_at": now, "detected": True}


def run_params(model_name: str, version: int) -> dict[str, str]:
    """The params of the run that logged a registered version (its split, its config)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    mv = client.get_model_version(model_name, str(version))
    return client.get_run(mv.run_id).data.params
