"""Which dataset a reelflow home holds (one home holds one dataset: ids would collide), and the
one way every JSON state or summary file is written: atomically.

A home records its dataset only once a landing of it succeeded: `check_home` refuses a home
that holds another dataset before any work, `record_home` writes the claim after the work.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from reelflow.paths import Paths


def write_text(path: Path, text: str) -> Path:
    """Writes TEXT to PATH atomically: a temporary file in the same folder, then os.replace,
    so a reader (or a crash) sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path, data: Any) -> Path:
    """`write_text` of DATA as indented JSON (non-JSON values as their str)."""
    return write_text(path, json.dumps(data, indent=2, default=str))


def read_state(paths: Paths) -> dict[str, Any]:
    return json.loads(paths.state_file.read_text()) if paths.state_file.exists() else {}


def check_home(paths: Paths, dataset: str) -> dict[str, Any]:
    """Refuses a home that already holds another dataset; writes nothing."""
    state = read_state(paths)
    if state.get("dataset") not in (None, dataset):
        raise SystemExit(
            f"{paths.home} already holds dataset {state['dataset']!r}; use another REELFLOW_HOME "
            f"for {dataset!r} (ids of two datasets would collide)"
        )
    return state


def record_home(paths: Paths, dataset: str, raw: str | Path) -> dict[str, Any]:
    """Records dataset and raw folder, once their landing succeeded (refusing another dataset)."""
    state = check_home(paths, dataset)
    state.update(dataset=dataset, raw=str(Path(raw).resolve()))
    write_json(paths.state_file, state)
    return state


def claim_home(paths: Paths, dataset: str, raw: str | Path) -> dict[str, Any]:
    """`record_home`, kept for callers that claim a home outright."""
    return record_home(paths, dataset, raw)
