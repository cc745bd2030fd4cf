#!/bin/bash
# Runs once, on an empty data volume (docker-entrypoint-initdb.d): one login role and one
# database each for Airflow's metadata, MLflow's backend store and Feast's registry.
set -euo pipefail

create() {
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        -v name="$1" -v password="$2" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
SQL
}

create airflow "$AIRFLOW_DB_PASSWORD"
create mlflow "$MLFLOW_DB_PASSWORD"
create feast "$FEAST_DB_PASSWORD"
