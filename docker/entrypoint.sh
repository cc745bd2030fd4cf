#!/bin/sh
# Every container of the image starts here. A Spark driver inside a task must advertise an
# address the Spark workers can reach: lake/spark.py binds loopback unless SPARK_LOCAL_IP is
# set, which suits one machine, not a compose network.
set -e
if [ -z "${SPARK_LOCAL_IP:-}" ]; then
    SPARK_LOCAL_IP="$(python -c 'import socket; print(socket.gethostbyname(socket.gethostname()))')"
    export SPARK_LOCAL_IP
fi
exec "$@"
