"""Shared fixtures: one Spark session per test run, a private REELFLOW_HOME per test module,
and one end-to-end pipeline run (through Airflow) shared by every end-to-end assertion."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def service_available(host: str, port: int, name: str) -> None:
    """Skips (or fails, where CI sets REELFLOW_REQUIRE_SERVICES=1) when a server is absent."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        reason = f"{name} not reachable on {host}:{port} ({exc})"
        if os.environ.get("REELFLOW_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason}; REELFLOW_REQUIRE_SERVICES=1 requires it")
        pytest.skip(reason)


def reelflow_cli(*args: str, env: dict | None = None, timeout: float = 1500):
    """Runs `reelflow ARGS` in a child process, as a person would, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "reelflow.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def spark():
    from jobs.spark import spark_session

    session = spark_session()
    yield session
    session.stop()


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """A fresh REELFLOW_HOME for one test."""
    monkeypatch.setenv("REELFLOW_HOME", str(tmp_path / "home"))
    from reelflow.paths import Paths

    return Paths.from_env()


@pytest.fixture(scope="session")
def tiny_raw(tmp_path_factory):
    from jobs.synthetic import generate_kuairec

    out = tmp_path_factory.mktemp("raw") / "KuaiRec 2.0" / "data"
    manifest = generate_kuairec(out, scale="tiny", seed=0)
    return out, manifest


@pytest.fixture(scope="session")
def pipeline_run(tiny_raw, tmp_path_factory):
    """`reelflow run` on tiny generated data: every DAG through Airflow, once per test session."""
    raw, manifest = tiny_raw
    home = tmp_path_factory.mktemp("e2e") / "home"
    env = {**os.environ, "REELFLOW_HOME": str(home)}
    # The release folder as unpacked (its data/ is found by the reader).
    result = reelflow_cli(
        "run", "--dataset", "kuairec", "--raw", str(raw.parent), "--json", env=env
    )
    assert result.returncode == 0, (
        f"reelflow run failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    )
    return {"home": home, "raw": raw, "manifest": manifest, "stdout": result.stdout, "env": env}
