"""Shared fixtures: one Spark session per test run, a private REELFLOW_HOME per test module,
and one end-to-end pipeline run (through Airflow) shared by every end-to-end assertion."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Fuzz profiles (tests/test_fuzz_readers.py): `ci` is what `make test` runs (derandomized,
# bounded); `long` is run by hand: HYPOTHESIS_PROFILE=long pytest tests/test_fuzz_readers.py
_FUZZ = dict(deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
settings.register_profile("ci", max_examples=30, derandomize=True, **_FUZZ)
settings.register_profile("long", max_examples=1000, **_FUZZ)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The slowest modules, slowest first, and within a module its slowest tests first (`make test
# --durations` on a fresh clone). Under `make test`'s two workers a module goes whole to the
# next free worker (--dist loadscope --no-loadscope-reorder keeps this order), and a worker is
# handed its next module once two of its tests are left: a long test left for last would hold
# that next module back while the other worker runs dry.
SLOWEST_FIRST = (
    "test_backfill.py::test_backfill_through_the_scheduler_reprocesses_to_the_same_partitions",
    "test_e2e.py::test_a_failed_gate_stops_the_dag_run_before_features",
    "test_distributed.py",
    "test_events_e2e.py",
    "test_spark_submit.py",
    "test_fuzz_readers.py",
    "test_cli_input.py",
)


def pytest_collection_modifyitems(config, items):
    modules = [entry.split("::")[0] for entry in SLOWEST_FIRST]

    def rank(item) -> tuple[int, int]:
        module = item.path.name
        named = f"{module}::{getattr(item, 'originalname', item.name)}" in SLOWEST_FIRST
        return (modules.index(module) if module in modules else len(modules), 0 if named else 1)

    # sort is stable: the rest keep their collection order, after the slow ones.
    items.sort(key=rank)


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


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reelflow_cli(*args: str, env: dict | None = None, timeout: float = 1500):
    """Runs `reelflow ARGS` in a child process, as a person would, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "reelflow.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def feast_online_over_http(home: Path, request: dict, timeout: float = 120) -> dict:
    """Starts Feast's own feature server (`feast serve`) on loopback against the repo as it is,
    posts one /get-online-features request, stops the server and returns the answer."""
    from reelflow.paths import FEATURE_REPO

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    feast = os.path.join(os.path.dirname(sys.executable), "feast")
    server = subprocess.Popen(
        [feast, "--chdir", str(FEATURE_REPO), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, "REELFLOW_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    post = urllib.request.Request(
        f"http://127.0.0.1:{port}/get-online-features",
        data=json.dumps(request).encode(),
        headers={"Content-Type": "application/json"},
    )
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                with urllib.request.urlopen(post, timeout=10) as response:
                    return json.load(response)
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    server.kill()
                    raise AssertionError(
                        f"feast serve did not answer: {server.stderr.read().decode()[-3000:]}"
                    ) from None
                time.sleep(1)
    finally:
        server.terminate()
        server.wait(timeout=30)


def feature_values(answer: dict) -> dict[str, list]:
    """`feast serve`'s answer as {feature name: values per entity row}."""
    names = answer["metadata"]["feature_names"]
    return {n: r["values"] for n, r in zip(names, answer["results"], strict=True)}


@pytest.fixture(scope="module")
def one_torch_thread():
    # Tiny models on a shared 2-core machine: a second intra-op thread only adds contention.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def spark():
    from lake.spark import spark_session

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
    from synthetic.kuairec import generate_kuairec

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
