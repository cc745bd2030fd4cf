"""Which dataset a reelflow home holds. One home holds one dataset: ids would collide."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reelflow.paths import Paths


def read_state(paths: Paths) -> dict[str, Any]:
    return json.loads(paths.state_file.read_text()) if paths.state_file.exists() else {}


def claim_home(paths: Paths, dataset: str, raw: str | Path) -> dict[str, Any]:
    """Records dataset and raw folder; refuses a home that already holds another dataset."""
    state = read_state(paths)
    if state.get("dataset") not in (None, dataset):
        raise SystemExit(
            f"{paths.home} already holds dataset {state['dataset']!r}; use another REELFLOW_HOME "
            f"for {dataset!r} (ids of two datasets would collide)"
        )
    state.update(dataset=dataset, raw=str(Path(raw).resolve()))
    paths.home.mkdir(parents=True, exist_ok=True)
    paths.state_file.write_text(json.dumps(state, indent=2))
    return state
