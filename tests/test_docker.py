"""docker/compose.yaml and docker/Dockerfile, checked by reading them (no Docker engine needed):
what they reference exists, ports stay on loopback, secrets come only from docker/.env, every
server has a health check that its dependants wait for."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from reelflow.paths import REPO_ROOT

DOCKER = REPO_ROOT / "docker"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|KEY|TOKEN", re.IGNORECASE)
# A reference to docker/.env, optionally with an error message; no default value.
SECRET_REFERENCE = re.compile(r"^\$\{[A-Z][A-Z0-9_]*(:?\?[^}]*)?\}$")
COMPOSE_VARIABLE = re.compile(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)")
PLACEHOLDERS = {"", "change-me"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    pairs = {}
    for line in (DOCKER / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def one_shot(service: dict) -> bool:
    return service.get("restart") == "no"


def dockerfile_copies() -> list[tuple[str, str]]:
    """(source, destination) of every COPY in docker/Dockerfile."""
    copies = []
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            *sources, destination = line.split()[1:]
            copies += [(source, destination) for source in sources if not source.startswith("--")]
    return copies


def test_every_service_has_an_image_or_a_build_that_exists(services):
    for name, service in services.items():
        assert service.get("image") or service.get("build"), name
        build = service.get("build")
        if build:
            context = (DOCKER / build["context"]).resolve()
            assert context == REPO_ROOT, name
            assert (context / build["dockerfile"]).is_file(), name


def test_every_referenced_file_exists(services):
    copied = {destination for _, destination in dockerfile_copies()}
    for name, service in services.items():
        for env_file in service.get("env_file", []):
            assert (DOCKER / env_file).is_file(), (name, env_file)
        mounted = set()
        for volume in service.get("volumes", []):
            source, _, rest = volume.partition(":")
            mounted.add(rest.split(":")[0])
            if source.startswith((".", "/")):  # a bind mount of a file in this repo
                assert (DOCKER / source).exists(), (name, source)
        # Scripts a service runs come from a bind mount or from the image.
        words = service.get("command", []) + service.get("entrypoint", [])
        for script in [w for w in words if isinstance(w, str) and w.endswith(".sh")]:
            in_image = script.startswith("/opt/reelflow/") and (
                "./" + script.removeprefix("/opt/reelflow/") in copied
            )
            assert script in mounted or in_image, (name, script)


def test_dockerfile_copies_only_what_exists_and_installs_the_cluster_extra():
    for source, _ in dockerfile_copies():
        assert (REPO_ROOT / source).exists(), source
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert '-e ".[cluster]"' in dockerfile
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    cluster = re.search(r"^cluster = \[(.*)\]$", pyproject, re.MULTILINE).group(1)
    assert "apache-airflow-providers-celery" in cluster and "boto3" in cluster
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {".venv", "var", ".git", "docker/.env"} <= set(ignored)


def test_the_image_holds_every_package_before_it_installs_them():
    """`pip install -e` in the image needs every package pyproject.toml names (lake/ was once
    missing: `import lake` failed in every container)."""
    lines = (DOCKER / "Dockerfile").read_text().splitlines()
    install = next(i for i, line in enumerate(lines) if "pip install" in line)
    copied_before = {
        source.strip("./")
        for line in lines[:install]
        if line.startswith("COPY ")
        for source in line.split()[1:-1]
    }
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    include = re.search(r"^include = \[(.*)\]$", pyproject, re.MULTILINE).group(1)
    packages = {name.strip(' "*') for name in include.split(",")}
    assert packages <= copied_before, sorted(packages - copied_before)
    # The Spark class archive is built in the image too (lake/spark.py).
    assert any("python -m lake.spark" in line for line in lines[install:])


def test_every_published_port_binds_to_loopback(services):
    published = 0
    for name, service in services.items():
        for port in service.get("ports", []):
            assert isinstance(port, str), (name, port)
            assert port.startswith(("${BIND_ADDRESS:-127.0.0.1}:", "127.0.0.1:")), (name, port)
            published += 1
    assert published >= 4  # Airflow, MLflow, MinIO's console, Spark's UI at least


def test_secrets_come_from_the_env_file_and_have_no_value_in_the_repo(services, env_example):
    for name, service in services.items():
        for key, value in environment(service).items():
            if key.endswith("_FILE"):  # where a secret is kept, by the docker convention
                assert value.startswith("/"), (name, key)
            elif SECRET_NAME.search(key):
                assert SECRET_REFERENCE.match(value), f"{name}: {key}={value!r} is not ${{VAR}}"
            # Credentials inside URLs too: postgresql://user:${PASSWORD}@host
            for password in re.findall(r"://[^:/@\s]*:([^@\s]+)@", value):
                assert SECRET_REFERENCE.match(password), f"{name}: {key} embeds {password!r}"
            assert "change-me" not in value, (name, key)
    secret_vars = [k for k in env_example if SECRET_NAME.search(k)]
    assert secret_vars
    for key in secret_vars:
        assert env_example[key] in PLACEHOLDERS, f".env.example: {key} must be a placeholder"
    server_env = (REPO_ROOT / "mlflow" / "server.env").read_text()
    for line in server_env.splitlines():
        if line and not line.startswith("#"):
            assert not SECRET_NAME.search(line.partition("=")[0]), line
            assert "${" not in line, f"compose does not expand env files: {line}"


def test_every_setting_is_in_the_env_example(env_example):
    used = set(COMPOSE_VARIABLE.findall((DOCKER / "compose.yaml").read_text()))
    assert used - set(env_example) == set()


def test_every_server_has_a_healthcheck_and_dependants_wait_for_it(services):
    for name, service in services.items():
        if not one_shot(service):
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for target, spec in depends.items():
            wanted = (
                "service_completed_successfully"
                if one_shot(services[target])
                else "service_healthy"
            )
            assert spec.get("condition") == wanted, (name, target)


def test_airflow_runs_celery_on_postgres_and_redis_with_a_gpu_worker_profile(services):
    env = environment(services["airflow-scheduler"])
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg://")
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    for role in ("apiserver", "scheduler", "dag-processor", "triggerer", "worker", "init"):
        assert f"airflow-{role}" in services
    gpu = services["airflow-worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["command"][gpu["command"].index("--queues") + 1] == "gpu"
    device = gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert gpu["build"]["args"]["TORCH_INDEX_URL"] == ""  # PyPI's CUDA torch
    # Without the GPU profile the CPU worker must also take the gpu queue, or training waits.
    cpu = environment(services["airflow-worker"])
    assert "gpu" in cpu["REELFLOW_CPU_WORKER_QUEUES"].split(":-")[-1]
    assert "airflow pools set gpu" in (DOCKER / "airflow-init.sh").read_text()


def test_feast_uses_the_redis_and_postgres_variant(services):
    env = environment(services["airflow-worker"])
    config = env["FEAST_FS_YAML_FILE_PATH"]
    assert config == "/opt/reelflow/feature_repo/feature_store.redis.yaml"
    yaml_text = (REPO_ROOT / "feature_repo" / "feature_store.redis.yaml").read_text()
    for name in ("REELFLOW_FEAST_REDIS", "REELFLOW_FEAST_REGISTRY_URL"):
        assert "${" + name + "}" in yaml_text
    assert env["REELFLOW_FEAST_REDIS"].startswith("redis:6379,db=1,password=")
    assert env["REELFLOW_FEAST_REGISTRY_URL"].startswith("postgresql+psycopg://feast:")


def test_postgres_init_creates_every_database_the_services_connect_to(services):
    script = (DOCKER / "postgres" / "init-databases.sh").read_text()
    databases = {
        m
        for service in services.values()
        for value in environment(service).values()
        for m in re.findall(r"@postgres:5432/(\w+)", value)
    }
    assert databases == {"airflow", "mlflow", "feast"}
    for database in databases:
        assert re.search(rf"^create {database} ", script, re.MULTILINE), database


def test_spark_and_mlflow_with_minio(services):
    assert "org.apache.spark.deploy.master.Master" in services["spark-master"]["command"]
    assert "spark://spark-master:7077" in " ".join(services["spark-worker"]["command"])
    mlflow_env = environment(services["mlflow"])
    assert mlflow_env["MLFLOW_ARTIFACTS_DESTINATION"].startswith("s3://")
    assert "--serve-artifacts" in services["mlflow"]["command"]
    assert services["mlflow"]["depends_on"]["minio-init"]
    assert "mc mb" in (DOCKER / "minio" / "create-buckets.sh").read_text()
    assert Path(DOCKER / "minio" / "create-buckets.sh").is_file()
