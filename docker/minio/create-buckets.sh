#!/bin/sh
# One-shot (compose.yaml `minio-init`): the bucket MLflow's server writes artifacts to.
set -eu
mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "local/$MLFLOW_BUCKET"
