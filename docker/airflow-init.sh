#!/bin/sh
# One-shot before the Airflow services start (compose.yaml `airflow-init`); safe to re-run.
set -eu
airflow db migrate
# The training tasks' pool: a task in a missing pool never runs.
airflow pools set gpu "${REELFLOW_GPU_POOL_SLOTS:-1}" "reelflow training tasks"
# The UI's login (SimpleAuthManager): the password from docker/.env, never a generated one
# printed to the logs.
python - <<'PY'
import json
import os

path = os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
user = os.environ.get("AIRFLOW_ADMIN_USER", "admin")
with open(path, "w") as fh:
    json.dump({user: os.environ["AIRFLOW_ADMIN_PASSWORD"]}, fh)
os.chmod(path, 0o600)
PY
mkdir -p "$REELFLOW_HOME"
